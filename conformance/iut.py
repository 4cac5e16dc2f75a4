"""The implementation under test, a process spoken to in JSON lines.

The runner starts the IUT command with ``P2POS_TESTCASE`` set to the case id.
An IUT that does not support the case exits with status 127 before answering;
``Iut.call`` then raises ``Unsupported``.  Every answer must arrive before the
case's deadline; a hang fails the case.  Stderr is kept for the report.

Normally there is one process per case.  ``LongLived`` keeps one process for
many cases instead, sending the optional ``reset`` command (spec/conformance.md
§3.5) between them; the mutation driver (conformance/mutation.py) uses it, since
starting a process per case would not fit its budget.  An IUT without ``reset``
gets one process per case there too.
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
#: Seconds an IUT has to answer ``reset`` before the runner starts a new process instead.
_RESET_TIMEOUT = 5.0


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

    def reset(self, case_id: str, timeout: float) -> bool:
        """Long-lived mode: ask the IUT to forget every state and run ``case_id`` next.

        True when it did (the deadline, transcript and stderr then start afresh); False when it
        cannot (no ``reset`` command, it exited, or it did not answer in time): start a new
        process for the case instead.
        """
        self.case_id = case_id
        self.deadline = time.monotonic() + min(timeout, _RESET_TIMEOUT)
        self._answered = 0
        try:
            answer = self.call("reset", case=case_id)
        except (CaseFailed, Unsupported):
            return False
        if answer.get("ok") is not True:
            return False
        self.deadline = time.monotonic() + timeout
        self.transcript = []
        self._answered = 0
        del self._stderr[:]
        return True

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self._proc.poll() is None

    def exit_status(self, timeout: float) -> int | None:
        """The process's exit status, waiting up to ``timeout`` seconds for it to exit; None if it has not."""
        try:
            return self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

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


class LongLived:
    """One IUT process for many cases, reset between them (spec/conformance.md §3.5).

    ``acquire`` hands out the process for the next case (a new one when there is none, when it
    exited, or when it does not take ``reset``); ``release`` keeps it for the next case, or ends
    it (``keep=False``: after a failed case, whose state nobody knows).
    """

    def __init__(self, command: Sequence[str], env: dict[str, str] | None = None) -> None:
        self.command = list(command)
        self.env = env
        self._iut: Iut | None = None
        #: Processes started, and cases run in a reused process (for the report).
        self.started = 0
        self.reused = 0

    def acquire(self, case_id: str, timeout: float) -> Iut:
        iut, self._iut = self._iut, None
        if iut is not None:
            if iut.alive() and iut.reset(case_id, timeout):
                self.reused += 1
                return iut
            iut.finish()
        self.started += 1
        return Iut(self.command, case_id, timeout, self.env)

    def release(self, iut: Iut, *, keep: bool) -> None:
        if keep and iut.alive():
            self._iut = iut
        else:
            iut.finish()

    def close(self) -> None:
        if self._iut is not None:
            self._iut.finish()
            self._iut = None
