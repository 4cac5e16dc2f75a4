"""The daemon's and the rendezvous node's log format (README, "Logs").

One line per record, on stderr and (for the daemon) in ``logs/daemon.log``::

    2026-12-06T01:02:03.456Z INFO p2pos.rendezvous registered with p2pos1abc...; it sees us at 127.0.0.1:41000

UTC time with milliseconds, the level (DEBUG, INFO, WARNING, ERROR), the component
(``p2pos.daemon``, ``p2pos.rendezvous``, ``p2pos.api``, ``p2pos.plugins``, ``p2pos.relay``),
then the message.  A traceback, if any, follows on its own lines, each indented by two spaces.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path


class LineFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"

    def formatException(self, ei: object) -> str:
        text = super().formatException(ei)  # type: ignore[arg-type]
        return "\n".join("  " + line for line in text.splitlines())


def setup(level: str, file: Path | None = None) -> None:
    """Log ``p2pos.*`` at ``level`` to stderr and, if given, to ``file`` (appended)."""
    logger = logging.getLogger("p2pos")
    logger.setLevel(level.upper())
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        handlers.append(logging.FileHandler(file))
    for handler in handlers:
        handler.setFormatter(LineFormatter())
        logger.addHandler(handler)
