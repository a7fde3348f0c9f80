"""Command-line command groups; each module is registered in :mod:`pophealth.cli`."""
