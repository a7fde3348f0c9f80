"""``python -m pophealth`` runs the CLI."""

import sys

from pophealth.interrupted import INTERRUPTED, INTERRUPTED_MESSAGE

try:
    from pophealth.cli import main
except KeyboardInterrupt:  # Ctrl-C while the CLI loads (a second or more on a busy machine)
    print(INTERRUPTED_MESSAGE, file=sys.stderr)
    sys.exit(INTERRUPTED)

main()
