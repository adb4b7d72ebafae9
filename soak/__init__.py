"""The soak: every channel and calls both ways at a fixed rate for minutes, with faults injected,
checked for loss, unexplained duplicates and leaks. ``python -m soak --help``; README.md here."""
