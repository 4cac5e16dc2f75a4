"""Entry point of ``python -m conformance.relay``."""

from .cli import main

raise SystemExit(main())
