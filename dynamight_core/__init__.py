"""DynaMight re-implemented as an importable library.

Importing the package is cheap on purpose: it imports neither torch nor numpy, so that
the Snakefile can read the version and the configuration schema without heavy imports.
"""

from dynamight_core._version import __version__

__all__ = ["__version__"]
