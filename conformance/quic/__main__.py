"""Entry point of ``python -m conformance.quic``."""

from .cli import main

raise SystemExit(main())
