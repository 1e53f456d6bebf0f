"""The command-line front end: `python -m sqlfix lint | render | check`."""

# The exit codes of every command (docs/cli.md); 130 is 128 + SIGINT, as shells report Ctrl-C.
EXIT_OK, EXIT_FINDINGS, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130
