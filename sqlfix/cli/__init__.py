"""The command-line front end: `python -m sqlfix lint | render | check`."""
