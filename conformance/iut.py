"""One implementation-under-test process per case, spoken to in JSON lines.

The runner starts the IUT command with ``P2POS_TESTCASE`` set to the case id.
An IUT that does not support the case exits with status 127 before answering;
``Iut.call`` then raises ``Unsupported``.  Every answer must arrive before the
case's deadline; a hang fails the case.  Stderr is kept for the report.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import threading
import time
from collections.abc import Sequence
from typing import IO, Any

from .checks import CaseFailed, Unsupported, short

UNSUPPORTED_STATUS = 127
_STDERR_LIMIT = 4000


def _jsonable(value: Any) -> Any:
    """Bytes become lowercase hex; containers are converted recursively."""
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


class Iut:
    """A running IUT.  ``call`` sends one command and returns its answer."""

    def __init__(self, command: Sequence[str], case_id: str, timeout: float, env: dict[str, str] | None = None) -> None:
        self.case_id = case_id
        self.deadline = time.monotonic() + timeout
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env["P2POS_TESTCASE"] = case_id
        self._proc = subprocess.Popen(
            list(command),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=full_env,
            text=True,
            bufsize=1,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self.transcript: list[str] = []
        self._answered = 0
        if self._proc.stdout is None or self._proc.stderr is None:
            raise RuntimeError("Popen without pipes")
        threading.Thread(target=self._pump, args=(self._proc.stdout, self._lines), daemon=True).start()
        self._err_thread = threading.Thread(target=self._collect, args=(self._proc.stderr,), daemon=True)
        self._err_thread.start()

    @staticmethod
    def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
        for line in stream:
            lines.put(line)
        lines.put(None)

    def _collect(self, stream: IO[str]) -> None:
        for line in stream:
            self._stderr.append(line)

    def _ended(self, during: str) -> Exception:
        """The IUT stopped answering: unsupported (127) or a failure."""
        try:
            status = self._proc.wait(timeout=max(0.1, min(2.0, self.deadline - time.monotonic())))
        except subprocess.TimeoutExpired:
            return CaseFailed(f"the IUT closed its stdout during {during} but did not exit")
        if status == UNSUPPORTED_STATUS and not self._answered:
            return Unsupported(f"the IUT exited with status {UNSUPPORTED_STATUS}")
        return CaseFailed(f"the IUT exited with status {status} during {during}")

    def call(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Send ``{"cmd": cmd, **fields}`` (bytes as hex) and return the IUT's answer."""
        request = json.dumps({"cmd": cmd, **_jsonable(fields)}, separators=(",", ":"))
        stdin = self._proc.stdin
        if stdin is None:
            raise CaseFailed("the IUT's stdin is closed")
        try:
            stdin.write(request + "\n")
            stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._ended(f"{cmd!r}") from None
        self.transcript.append(f"> {request}")
        remaining = self.deadline - time.monotonic()
        try:
            line = self._lines.get(timeout=max(0.0, remaining))
        except queue.Empty:
            raise CaseFailed(f"timeout: no answer to {cmd!r} before the case deadline") from None
        if line is None:
            raise self._ended(f"{cmd!r}")
        self._answered += 1
        self.transcript.append(f"< {line.rstrip()}")
        try:
            answer = json.loads(line)
        except ValueError:
            raise CaseFailed(f"answer to {cmd!r} is not JSON: {short(line)}") from None
        if not isinstance(answer, dict):
            raise CaseFailed(f"answer to {cmd!r} is not a JSON object: {short(answer)}")
        return answer

    def ok(self, cmd: str, **fields: Any) -> dict[str, Any]:
        """Like ``call`` but fail the case unless the answer has ``"ok": true``."""
        answer = self.call(cmd, **fields)
        if answer.get("ok") is not True:
            raise CaseFailed(f"{cmd!r} failed: {answer.get('error')} {answer.get('message', '')}".rstrip())
        return answer

    def error(self, cmd: str, **fields: Any) -> str:
        """Call ``cmd`` expecting ``"ok": false``; return the error name."""
        answer = self.call(cmd, **fields)
        if answer.get("ok") is not False:
            raise CaseFailed(f"{cmd!r} should have failed, got {short(answer)}")
        error = answer.get("error")
        if not isinstance(error, str):
            raise CaseFailed(f"{cmd!r} failed without an error name: {short(answer)}")
        return error

    def finish(self) -> None:
        """Ask the IUT to quit, then make sure the process is gone."""
        proc = self._proc
        if proc.poll() is None:
            try:
                if proc.stdin is not None:
                    proc.stdin.write('{"cmd":"quit"}\n')
                    proc.stdin.flush()
                    proc.stdin.close()
            except (BrokenPipeError, OSError):
                pass
            try:
                proc.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._err_thread.join(timeout=1.0)

    def stderr(self) -> str:
        """What the IUT wrote to stderr (the end of it, if long)."""
        text = "".join(self._stderr)
        return text if len(text) <= _STDERR_LIMIT else "..." + text[-_STDERR_LIMIT:]
