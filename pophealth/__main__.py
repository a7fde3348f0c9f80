"""``python -m pophealth`` runs the CLI (as the ``pophealth`` command does)."""

from pophealth.entry import main

main()
