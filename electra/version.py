"""The toolkit's version (pyproject.toml's; a test checks they agree), importable without the package's API."""

__version__ = "0.1.0"
