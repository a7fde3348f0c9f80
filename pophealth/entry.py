"""The ``pophealth`` command and ``python -m pophealth``: the CLI loaded inside a guard, so
that Ctrl-C while it loads (its imports take a second, more on a busy machine) says what a
Ctrl-C in a command says, not a traceback from whichever module was loading."""

import sys

from pophealth.interrupted import INTERRUPTED, INTERRUPTED_MESSAGE


def main() -> None:
    try:
        from pophealth.cli import main as run
    except KeyboardInterrupt:
        print(INTERRUPTED_MESSAGE, file=sys.stderr)
        sys.exit(INTERRUPTED)
    run()
