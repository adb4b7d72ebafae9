"""``python -m soak``: see run.py."""

from .run import main

raise SystemExit(main())
