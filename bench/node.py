#!/usr/bin/env python3
"""Node-to-node transfer and connection set-up, each stack's two ends in separate processes.

Run ``python bench/node.py`` (about a minute and a half; the first run also makes
``bench/.peers-venv`` for py-libp2p, about 30 s more), ``--quick`` for a smoke run.
bench/README.md says what every figure means.  The last line of stdout is one JSON
object: ``{"bench": "node", "figures": {...}, "ratios": {...}, ...}``.

Every stack is a pair of peer programs in bench/peers/, a server (the receiver) and
a client (the sender), started as separate processes on 127.0.0.1.  In each round
every stack runs one session, the stacks interleaved and their order rotated from
round to round; a figure is the median over the rounds (set-up times: over all
set-ups of all rounds).

The peer protocol
=================

Adding a stack is adding a ``Stack`` to ``STACKS`` and one script to bench/peers/
that follows this protocol (bench/peers/_peer.py parses the command line and
prints the lines; it is standard library only, so a peer in another virtualenv
can import it too).

Command lines (``PYTHON`` is the stack's interpreter, ``SCRIPT`` its file)::

    PYTHON SCRIPT server
    PYTHON SCRIPT client --server READY --bytes N --setups K --warmup W

stdout carries JSON objects only, one per line; anything else goes to stderr (it is
shown if the session fails).

1. The server binds to 127.0.0.1 (never another address), port 0, and prints its
   **ready line**, at least ``{"port": P}``, plus anything its client needs (the
   libp2p server adds ``"addr"``, its multiaddr with the peer id).
2. The orchestrator starts the client with ``--server`` set to that ready line,
   verbatim.  The client does ``W + K`` **set-ups** one after the other, each a new
   connection with nothing cached from earlier ones (no session resumption): a
   set-up is timed on the client from the moment it starts to connect until it
   has back the server's echo of 1 byte that it sent on a new stream of that
   connection; the connection is then closed outside the timing.  The first ``W``
   are warm-up and not reported.  Then one **bulk transfer**: a new connection,
   one stream, ``N`` payload bytes, end of stream.
3. The client prints one **result line** and exits 0::

       {"bytes": N_SENT, "seconds": S, "setup_ms": [K numbers], "connect_ms": [K numbers]}

   ``seconds`` is the client's own view of the bulk transfer (informational);
   ``connect_ms`` is optional: per set-up, the time until the stack said the
   connection was up, before the first stream.  Other keys are kept as details.
4. The server prints its **result line** once the bulk transfer is over::

       {"bytes": N_RECEIVED, "seconds": S}

   ``seconds`` is measured on the server: from the first payload byte it received
   to the last.  **Goodput** is ``N_RECEIVED / S``.  After this line the server may
   exit or linger: the orchestrator terminates it once the client has exited.

A reliable stack must deliver every byte (``N_RECEIVED == N_SENT == N``, or the
session fails); a datagram stack may lose some, and its loss is reported.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from pathlib import Path

from _common import Contender, Result, emit_json, print_figures, print_ratios, say

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers"
#: The virtualenv of the peers whose dependencies cannot live in the project's own (py-libp2p).
PEERS_VENV = HERE / ".peers-venv"
#: What goes into it; pinned so that figures from different runs compare.
LIBP2P_REQUIREMENT = "libp2p==0.8.1"

MIB = 1 << 20
#: Seconds a server has to print its ready line (py-libp2p imports a lot).
STARTUP_TIMEOUT = 60.0
#: Seconds a whole client run may take before the session counts as failed.
SESSION_TIMEOUT = 180.0
#: Seconds between the client's exit and the server's result line.
RESULT_TIMEOUT = 15.0

#: ratio key -> minimum it should reach (issue 9: p2pos against the baselines, measured in the same run).
TARGETS: dict[str, float] = {
    "p2pos_1200_vs_aioquic_goodput": 5.0,
    "p2pos_1200_vs_trio_udp_goodput": 1.0,
    "p2pos_pmtu_vs_libp2p_goodput": 2.0,
    "aioquic_vs_p2pos_setup": 1.0,
}
#: (ratio key, numerator figure, denominator figure), computed when both figures exist.
RATIOS: tuple[tuple[str, str, str], ...] = (
    ("p2pos_1200_vs_aioquic_goodput", "p2pos_1200_goodput_MBps", "aioquic_goodput_MBps"),
    ("p2pos_1200_vs_trio_udp_goodput", "p2pos_1200_goodput_MBps", "trio_udp_goodput_MBps"),
    ("p2pos_pmtu_vs_libp2p_goodput", "p2pos_pmtu_goodput_MBps", "libp2p_goodput_MBps"),
    ("aioquic_vs_p2pos_setup", "aioquic_setup_ms", "p2pos_1200_setup_ms"),
    ("aioquic_vs_trio_udp_goodput", "aioquic_goodput_MBps", "trio_udp_goodput_MBps"),
    ("libp2p_vs_trio_udp_goodput", "libp2p_goodput_MBps", "trio_udp_goodput_MBps"),
    ("libp2p_vs_aioquic_goodput", "libp2p_goodput_MBps", "aioquic_goodput_MBps"),
)


class Unavailable(Exception):
    """A stack cannot run here; the message says why, and the report lists it as missing."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    rounds: int
    #: Set-ups measured per stack and round.
    setups: int
    warmup: int
    quick: bool
    stacks: tuple[str, ...]
    peers_venv: Path
    install: bool


def own_python(options: Options) -> str:
    """The interpreter running this benchmark (the project's virtualenv)."""
    return sys.executable


def libp2p_python(options: Options) -> str:
    """The peers virtualenv's interpreter, made on first use with ``LIBP2P_REQUIREMENT`` in it."""
    venv = options.peers_venv
    python = venv / "bin" / "python"
    wanted = LIBP2P_REQUIREMENT.partition("==")[2]
    installed = _installed_version(python, "libp2p")
    if installed == wanted:
        return str(python)
    if not options.install:
        raise Unavailable(f"{venv} has no {LIBP2P_REQUIREMENT} (found {installed}) and --no-install was given")
    if not python.exists():
        say(f"  making {venv} for py-libp2p (first run only)")
        _run_setup_step([sys.executable, "-m", "venv", str(venv)], "python -m venv")
    say(f"  installing {LIBP2P_REQUIREMENT} into {venv} (first run only, about 30 s)")
    _run_setup_step([str(python), "-m", "pip", "install", "--quiet", LIBP2P_REQUIREMENT], "pip install")
    installed = _installed_version(python, "libp2p")
    if installed != wanted:
        raise Unavailable(f"{LIBP2P_REQUIREMENT} installed into {venv} but cannot be imported (found {installed})")
    return str(python)


def _installed_version(python: Path, package: str) -> str | None:
    if not python.exists():
        return None
    probe = f"import importlib.metadata as m, {package}; print(m.version({package!r}))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, timeout=120, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def _run_setup_step(argv: list[str], what: str) -> None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        raise Unavailable(f"{what} failed: {error}") from error
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise Unavailable(f"{what} exited with {done.returncode}: {tail}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Stack:
    """One stack under test: its peer script and how to run it."""

    #: Prefix of its figures (``<name>_goodput_MBps`` ...).
    name: str
    label: str
    #: The peer program, a file in bench/peers/.
    script: str
    #: Payload bytes of one bulk transfer (a few seconds at the stack's speed), and with ``--quick``.
    bulk_bytes: int
    quick_bulk_bytes: int = 4 * MIB
    #: A datagram stack may lose bytes: its loss is reported instead of failing the session.
    lossy: bool = False
    #: Its interpreter; raises ``Unavailable`` if it cannot be had.
    python: Callable[[Options], str] = own_python
    #: What its ``setup_ms`` is, in the figures' labels.
    setup_label: str = "connect to 1st echoed byte"
    #: Arguments before the role (``server`` / ``client``).
    args: tuple[str, ...] = ()


STACKS: tuple[Stack, ...] = (
    Stack(
        name="trio_udp",
        label="trio UDP",
        script="trio_udp.py",
        bulk_bytes=256 * MIB,
        lossy=True,
        setup_label="new socket, 1-byte echo",
    ),
    Stack(
        name="p2pos_1200",
        label="p2pos, 1200-B datagrams",
        script="p2pos_peer.py",
        bulk_bytes=128 * MIB,
        args=("--mtu", "fixed"),
    ),
    Stack(
        name="p2pos_pmtu",
        label="p2pos, discovered MTU",
        script="p2pos_peer.py",
        bulk_bytes=256 * MIB,
        args=("--mtu", "discover"),
    ),
    Stack(name="aioquic", label="aioquic", script="aioquic_peer.py", bulk_bytes=32 * MIB),
    Stack(name="libp2p", label="py-libp2p", script="libp2p_peer.py", bulk_bytes=128 * MIB, python=libp2p_python),
)


class SessionFailed(Exception):
    pass


class Peer:
    """One peer process: its stdout lines come through a queue, its stderr is kept for errors."""

    def __init__(self, argv: Sequence[str], role: str) -> None:
        self.role = role
        self.process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=PEERS,
            env=_peer_environment(),
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        assert self.process.stdout is not None and self.process.stderr is not None
        threading.Thread(target=self._pump, args=(self.process.stdout,), daemon=True).start()
        threading.Thread(target=self._stderr.extend, args=(self.process.stderr,), daemon=True).start()

    def _pump(self, stream: Iterable[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def next_json(self, timeout: float) -> dict[str, object]:
        """The next line of stdout, a JSON object; ``SessionFailed`` on EOF, timeout or garbage."""
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise SessionFailed(f"{self.role}: no line in {timeout:.0f} s{self.stderr_tail()}") from None
        if line is None:
            self.process.wait(5)
            raise SessionFailed(f"{self.role} exited ({self.process.returncode}) early{self.stderr_tail()}")
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            raise SessionFailed(f"{self.role} printed a line that is not JSON: {line.strip()[:200]!r}") from None
        if not isinstance(value, dict):
            raise SessionFailed(f"{self.role} printed JSON that is not an object: {line.strip()[:200]!r}")
        return value

    def stderr_tail(self) -> str:
        lines = "".join(self._stderr).strip().splitlines()[-8:]
        return ("; stderr: " + " | ".join(lines)) if lines else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclasses.dataclass(frozen=True, slots=True)
class Session:
    goodput_MBps: float
    #: Fraction of the payload sent that did not arrive (0 on a reliable stack).
    loss: float
    setup_ms: tuple[float, ...]
    connect_ms: tuple[float, ...]
    client: dict[str, object]
    server: dict[str, object]


def _number(result: dict[str, object], key: str, role: str) -> float:
    value = result.get(key)
    if not isinstance(value, int | float):
        raise SessionFailed(f"{role}'s result has no number {key!r}: {result}")
    return float(value)


def _numbers(result: dict[str, object], key: str) -> tuple[float, ...]:
    value = result.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, int | float) for v in value):
        raise SessionFailed(f"client's {key!r} is not a list of numbers: {value!r}")
    return tuple(float(v) for v in value)


def run_session(stack: Stack, python: str, options: Options) -> Session:
    """One server and one client of ``stack``: set-ups, then one bulk transfer."""
    bulk_bytes = stack.quick_bulk_bytes if options.quick else stack.bulk_bytes
    script = str(PEERS / stack.script)
    server = Peer([python, script, *stack.args, "server"], f"{stack.name} server")
    client: Peer | None = None
    try:
        ready = server.next_json(STARTUP_TIMEOUT)
        client = Peer(
            [
                python,
                script,
                *stack.args,
                "client",
                "--server",
                json.dumps(ready),
                "--bytes",
                str(bulk_bytes),
                "--setups",
                str(options.setups),
                "--warmup",
                str(options.warmup),
            ],
            f"{stack.name} client",
        )
        client_result = client.next_json(SESSION_TIMEOUT)
        try:
            code = client.process.wait(30)
        except subprocess.TimeoutExpired:
            raise SessionFailed(f"{stack.name} client did not exit after its result") from None
        if code != 0:
            raise SessionFailed(f"{stack.name} client exited with {code}{client.stderr_tail()}")
        server_result = server.next_json(RESULT_TIMEOUT)
    finally:
        if client is not None:
            client.stop()
        server.stop()

    sent = _number(client_result, "bytes", "client")
    received = _number(server_result, "bytes", "server")
    seconds = _number(server_result, "seconds", "server")
    setup_ms = _numbers(client_result, "setup_ms")
    if len(setup_ms) != options.setups:
        raise SessionFailed(f"{stack.name} client reported {len(setup_ms)} set-ups, not {options.setups}")
    if stack.lossy:
        if not 0 < received <= sent:
            raise SessionFailed(f"{stack.name}: {received:.0f} bytes received of {sent:.0f} sent")
    elif not received == sent == bulk_bytes:
        raise SessionFailed(f"{stack.name}: {received:.0f} bytes received, {sent:.0f} sent, {bulk_bytes} asked")
    if seconds <= 0:
        raise SessionFailed(f"{stack.name} server measured {seconds} s")
    return Session(
        goodput_MBps=received / seconds / 1e6,
        loss=1 - received / sent,
        setup_ms=setup_ms,
        connect_ms=_numbers(client_result, "connect_ms"),
        client=client_result,
        server=server_result,
    )


def _nothing() -> None:
    """The ``op`` of the figure records: nothing is run in-process here."""


@dataclasses.dataclass(slots=True)
class Samples:
    """What one stack's sessions gave, round after round."""

    goodput: list[float] = dataclasses.field(default_factory=list)
    loss: list[float] = dataclasses.field(default_factory=list)
    setup_ms: list[float] = dataclasses.field(default_factory=list)
    connect_ms: list[float] = dataclasses.field(default_factory=list)
    sessions: list[dict[str, object]] = dataclasses.field(default_factory=list)

    def add(self, session: Session) -> None:
        self.goodput.append(session.goodput_MBps)
        self.loss.append(session.loss * 100)
        self.setup_ms.extend(session.setup_ms)
        self.connect_ms.extend(session.connect_ms)
        lists = ("setup_ms", "connect_ms")
        client = {k: v for k, v in session.client.items() if k not in lists}
        self.sessions.append({"client": client, "server": session.server})

    def results(self, stack: Stack) -> list[Result]:
        def record(suffix: str, label: str, unit: str, samples: Sequence[float]) -> Result:
            contender = Contender(key=f"{stack.name}_{suffix}", label=f"{stack.label}: {label}", op=_nothing, unit=unit)
            return Result(contender, tuple(samples))

        out = [record("goodput_MBps", "bulk goodput, 1 stream", "MB/s", self.goodput)]
        if stack.lossy:
            out.append(record("loss_pct", "bulk loss", "%", self.loss))
        out.append(record("setup_ms", stack.setup_label, "ms", self.setup_ms))
        if self.connect_ms:
            out.append(record("connect_ms", "connect (handshake) only", "ms", self.connect_ms))
        return out


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description="Node-to-node bulk transfer and set-up: baselines (bench/README.md).")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 MiB transfers, 1 round, 3 set-ups")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 5; 1 with --quick)")
    parser.add_argument("--setups", type=int, default=None, help="set-ups per stack and round (default 4; 3 quick)")
    parser.add_argument("--warmup", type=int, default=1, help="unreported set-ups at the start of each session")
    parser.add_argument(
        "--stacks", default=",".join(s.name for s in STACKS), help="comma-separated stacks to run (default: all)"
    )
    parser.add_argument("--peers-venv", type=Path, default=PEERS_VENV, help="virtualenv for py-libp2p")
    parser.add_argument(
        "--no-install", action="store_true", help="do not make the peers virtualenv: report libp2p as missing instead"
    )
    args = parser.parse_args(argv)
    rounds = args.rounds if args.rounds is not None else (1 if args.quick else 5)
    setups = args.setups if args.setups is not None else (3 if args.quick else 4)
    names = tuple(n for n in args.stacks.split(",") if n)
    unknown = set(names) - {s.name for s in STACKS}
    if unknown:
        parser.error(f"unknown stacks: {', '.join(sorted(unknown))}")
    if rounds < 1 or setups < 1 or args.warmup < 0:
        parser.error("--rounds and --setups must be at least 1, --warmup at least 0")
    return Options(
        rounds=rounds,
        setups=setups,
        warmup=args.warmup,
        quick=args.quick,
        stacks=names,
        peers_venv=args.peers_venv.resolve(),
        install=not args.no_install,
    )


def print_ranges(results: Sequence[Result], *, width: int) -> None:
    say("")
    say(f"{'figure':<{width}} {'median':>9} {'min':>9} {'max':>9}  unit   n")
    for r in results:
        low, high = min(r.samples), max(r.samples)
        say(
            f"{r.contender.label:<{width}} {r.median:>9.2f} {low:>9.2f} {high:>9.2f}  "
            f"{r.contender.unit:<5} {len(r.samples):>3}"
        )


def _versions(pythons: dict[str, str]) -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for package in ("trio", "aioquic", "cryptography"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    if "libp2p" in pythons:
        versions["libp2p"] = _installed_version(Path(pythons["libp2p"]), "libp2p")
    return versions


def _peer_environment() -> dict[str, str]:
    """This process's environment, with ``PYTHONPATH`` made absolute: the peers run in bench/peers/,
    and ``PYTHONPATH=build/compiled`` (how ``make bench`` picks the compiled core) must still hold."""
    env = dict(os.environ)
    paths = [os.path.abspath(p) for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    return env


def run_part(name: str, argv: list[str]) -> dict[str, object] | None:
    """Run bench/NAME.py with this interpreter (the same core) and return its JSON summary.

    The endpoint's cost per datagram at 10 / 1,000 / 10,000 sessions and the memory per idle
    session are sans-IO figures of one process; they are reported here beside the node's.
    """
    say("")
    say(f"-- bench/{name}.py --")
    done = subprocess.run(
        [sys.executable, str(HERE / f"{name}.py"), *argv], capture_output=True, text=True, timeout=900, check=False
    )
    lines = done.stdout.strip().splitlines()
    for line in lines[:-1]:
        say(line)
    if done.returncode != 0 or not lines:
        say(done.stderr[-2000:])
        return None
    summary = json.loads(lines[-1])
    return summary if isinstance(summary, dict) else None


def _prefixed(name: str, part: dict[str, object], kind: str) -> dict[str, float]:
    table = part.get(kind)
    if not isinstance(table, dict):
        return {}
    return {f"{name}.{key}": float(value) for key, value in table.items() if isinstance(value, int | float)}


def main(argv: Sequence[str] | None = None) -> None:
    options = parse_options(argv)
    started = time.perf_counter()
    say("node: bulk transfer and set-up between two processes on 127.0.0.1 (bench/README.md)")
    stacks = [s for s in STACKS if s.name in options.stacks]
    missing: dict[str, str] = {}
    pythons: dict[str, str] = {}
    for stack in stacks:
        try:
            pythons[stack.name] = stack.python(options)
        except Unavailable as error:
            missing[stack.name] = str(error)
            say(f"  {stack.name}: MISSING: {error}")
    samples = {name: Samples() for name in pythons}
    for r in range(options.rounds):
        round_started = time.perf_counter()
        active = [s for s in stacks if s.name in pythons and s.name not in missing]
        notes = []
        for i in range(len(active)):
            stack = active[(i + r) % len(active)]
            try:
                session = run_session(stack, pythons[stack.name], options)
            except SessionFailed as error:
                missing[stack.name] = f"round {r + 1}: {error}"
                say(f"  {stack.name}: FAILED, dropped from the run: {error}")
                continue
            samples[stack.name].add(session)
            loss = f" (loss {session.loss:.1%})" if stack.lossy else ""
            setup = statistics.median(session.setup_ms)
            notes.append(f"{stack.name} {session.goodput_MBps:.1f} MB/s{loss}, set-up {setup:.1f} ms")
        elapsed = time.perf_counter() - round_started
        say(f"  round {r + 1}/{options.rounds} in {elapsed:.1f} s: " + "; ".join(notes))

    results: list[Result] = []
    for stack in stacks:
        if stack.name in pythons and stack.name not in missing:
            results.extend(samples[stack.name].results(stack))
    figures = {r.contender.key: round(r.median, 3) for r in results}
    width = max([len(r.contender.label) for r in results] + [30])
    print_figures(results, width=width, value_width=9, digits=2)
    print_ranges(results, width=width)
    ratios = {
        name: round(figures[top] / figures[bottom], 3)
        for name, top, bottom in RATIOS
        if top in figures and bottom in figures and figures[bottom]
    }
    # A target whose stacks did not run (--stacks, or missing) is not judged.
    judged = {name: minimum for name, minimum in TARGETS.items() if name in ratios}
    met = print_ratios(ratios, judged, width=max([len(n) for n in ratios] + [30]), digits=3)
    targets: dict[str, float] = dict(TARGETS)
    for name, argv in (
        ("endpoint", ["--quick"] if options.quick else []),
        ("memory", ["--quick"] if options.quick else []),
    ):
        part = run_part(name, argv)
        if part is None:
            missing[name] = f"bench/{name}.py did not finish (see above)"
            continue
        figures.update(_prefixed(name, part, "figures"))
        ratios.update(_prefixed(name, part, "ratios"))
        targets.update(_prefixed(name, part, "targets"))
        met.update({key: bool(value) for key, value in _prefixed(name, part, "targets_met").items()})
    for name, reason in missing.items():
        say(f"MISSING {name}: {reason}")
    total = time.perf_counter() - started
    say(f"total {total:.0f} s")
    emit_json(
        {
            "bench": "node",
            "figures": figures,
            "ratios": ratios,
            "targets": targets,
            "targets_met": met,
            "missing": missing,
            "details": {
                r.contender.key: {
                    "min": round(min(r.samples), 3),
                    "max": round(max(r.samples), 3),
                    "samples": [round(v, 3) for v in r.samples],
                }
                for r in results
            },
            "sessions": {name: samples[name].sessions for name in samples if name not in missing},
            "settings": {
                "rounds": options.rounds,
                "setups_per_round": options.setups,
                "warmup_setups": options.warmup,
                "quick": options.quick,
                "bulk_bytes": {s.name: s.quick_bulk_bytes if options.quick else s.bulk_bytes for s in stacks},
                "versions": _versions(pythons),
                "python": platform.python_version(),
                "machine": platform.machine(),
                "cpus": os.cpu_count(),
                "elapsed_s": round(total, 1),
            },
        }
    )


if __name__ == "__main__":
    main()
