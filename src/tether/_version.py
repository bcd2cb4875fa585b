"""The version of tether: written here only (``pyproject.toml`` reads it at build time)."""

__version__ = "0.1.0.dev0"
