"""Commands: to be written (see the CLI issue)."""
