"""Entry point for ``python -m dynamight_core``."""

from dynamight_core.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
