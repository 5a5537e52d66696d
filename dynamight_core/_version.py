"""Single source of the package version (read as text by the workflow)."""

__version__ = "0.1.0"
