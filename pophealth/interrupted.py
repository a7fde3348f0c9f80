"""What a command stopped by Ctrl-C says, and its exit status: kept apart from the CLI so
that ``python -m pophealth`` can say it while the CLI is still loading."""

#: Exit status of a command stopped by Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED = 130
INTERRUPTED_MESSAGE = (
    "interrupted: nothing is left half-written (a store changes only when a write is "
    "complete, an output file only once it is written in full)"
)
