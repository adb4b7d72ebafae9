"""The version of bothways: the one place it is kept for Python (pyproject.toml reads it from here).

js/package.json carries the same string for npm; ``scripts/set-version`` changes both and
tests/unit/test_version.py fails when they differ.
"""

__version__ = "0.1.0"
