"""``python -m pophealth`` runs the CLI."""

from pophealth.cli import main

main()
