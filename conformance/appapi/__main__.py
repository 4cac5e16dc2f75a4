"""Entry point of ``python -m conformance.appapi``."""

from .cli import main

raise SystemExit(main())
