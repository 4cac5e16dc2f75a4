"""Entry point of ``python -m conformance``."""

from .cli import main

raise SystemExit(main())
