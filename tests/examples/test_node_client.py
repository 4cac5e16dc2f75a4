"""The Node.js examples (examples/node/, examples/plugins/echo-node/) against real daemons.

Issue 11 items 3 and 5: a program in another language needs only the app API's socket
(spec/appapi.md), and a plugin need not be Python (§7).  A rendezvous node and two daemons run
as processes on loopback for the whole module; daemon 2 has the echo-node plugin (Node.js) in its
home before it starts.  The Node.js ``pipe.js`` on daemon 1 sends 1 MB through echo-node and gets
it back; the Node.js client's ``status()`` and ``events()`` answer over the Unix socket and over
TCP with the token; a plugin that exits at once is restarted while the daemon keeps serving; and
``p2pos plugin stop|start`` stop and start echo-node.  A Node.js app's ``accept`` takes a channel
from an allowed peer, and each side of a channel half-closes on its own.

``node`` missing: the tests skip and say so, except in CI (``CI`` set), where they fail.  Every
process started here is ended at the module's end, passed or failed (plugins run in their own
sessions, so those whose working folder is in this module's temporary folder are killed too).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from conftest import REPO_ROOT

EXAMPLES = REPO_ROOT / "examples"
CLIENT_JS = EXAMPLES / "node" / "p2pos.js"
PIPE_JS = EXAMPLES / "node" / "pipe.js"
ECHO_PLUGIN = EXAMPLES / "plugins" / "echo-node"
#: How long a daemon may take to start and register, or a plugin to (re)start.
SETTLE = 20.0

T = TypeVar("T")


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node (Node.js) is not installed: CI must run the Node.js example tests", pytrace=False)
        pytest.skip("node (Node.js) is not installed: the Node.js examples are not tested here")
    return node


def _p2pos() -> list[str]:
    """The ``p2pos`` console script of the Python running the tests (the venv's), else ``-m``."""
    script = Path(sys.executable).parent / "p2pos"
    return [str(script)] if script.exists() else [sys.executable, "-m", "p2pos.adapters.cli"]


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = SETTLE, logs: Callable[[], str] = str) -> T:
    """Call ``probe`` until it returns something other than None (or fail, saying ``what``)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{logs()}", pytrace=False)
        time.sleep(0.2)


@dataclass
class Daemon:
    home: Path
    process: subprocess.Popen[bytes]
    output: Path
    peer_id: str = ""

    @property
    def socket(self) -> Path:
        return self.home / "run" / "api.sock"


@dataclass
class Net:
    base: Path
    node: str
    relay: subprocess.Popen[bytes]
    daemons: list[Daemon] = field(default_factory=list)

    def p2pos(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [*_p2pos(), *args], capture_output=True, text=True, timeout=30, check=False, cwd=REPO_ROOT
        )
        if check and result.returncode != 0:
            pytest.fail(f"p2pos {' '.join(args)} exited {result.returncode}: {result.stderr}\n{self.logs()}")
        return result

    def status(self, daemon: Daemon) -> dict[str, Any] | None:
        """``p2pos status --json``; None while the daemon does not answer yet."""
        result = self.p2pos("status", "--home", str(daemon.home), "--json", check=False)
        if result.returncode != 0:
            if daemon.process.poll() is not None:
                pytest.fail(f"the daemon in {daemon.home} exited {daemon.process.returncode}\n{self.logs()}")
            return None
        answer: dict[str, Any] = json.loads(result.stdout)
        return answer

    def plugin(self, daemon: Daemon, name: str) -> dict[str, Any] | None:
        status = self.status(daemon)
        found = [p for p in status["plugins"] if p["name"] == name] if status is not None else []
        return found[0] if found else None

    def pipe(self, daemon: Daemon, peer: str, service: str, data: bytes) -> subprocess.CompletedProcess[bytes]:
        """``node pipe.js PEER SERVICE`` on ``daemon`` with ``data`` as its stdin."""
        env = {**os.environ, "P2POS_API_SOCKET": str(daemon.socket)}
        try:
            return subprocess.run(
                [self.node, str(PIPE_JS), peer, service],
                input=data,
                capture_output=True,
                timeout=30,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            got = len(exc.stdout or b"")
            pytest.fail(f"pipe.js hung: {got} of {len(data)} bytes back after 30 s\n{self.logs()}", pytrace=False)

    def node_script(self, source: str, *args: str) -> Any:
        """Run a Node.js script that prints one JSON document; its ``require`` finds p2pos.js."""
        script = self.base / "script.js"
        script.write_text(source)
        result = subprocess.run(
            [self.node, str(script), str(CLIENT_JS), *args], capture_output=True, text=True, timeout=30, check=False
        )
        assert result.returncode == 0, f"{result.stderr}\n{self.logs()}"
        return json.loads(result.stdout)

    def logs(self) -> str:
        """The daemons' and plugins' output, for a failure's message."""
        parts = []
        for path in sorted(self.base.rglob("*.log")) + sorted(self.base.glob("*.out")):
            text = path.read_text(errors="replace")[-3000:]
            parts.append(f"--- {path.relative_to(self.base)}\n{text}")
        return "\n".join(parts)


def _start_daemon(base: Path, name: str, bootstrap: str) -> Daemon:
    home = base / name
    output = base / f"{name}.out"
    with output.open("wb") as out:
        process = subprocess.Popen(
            [*_p2pos(), "up", "--home", str(home), "--listen", "127.0.0.1:0", "--bootstrap", bootstrap],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    return Daemon(home, process, output)


def _install_echo_node(plugins: Path) -> None:
    """As examples/node/README.md says: the folder, with the client library beside echo.js."""
    target = plugins / "echo-node"
    shutil.copytree(ECHO_PLUGIN, target)
    shutil.copy(CLIENT_JS, target / "p2pos.js")


def _end(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _kill_strays(base: Path) -> None:
    """Kill what still runs in a folder under ``base`` (plugins the daemons did not end)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = (entry / "cwd").readlink()
        except OSError:
            continue
        if cwd.is_relative_to(base):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    node = _node()
    base = tmp_path_factory.mktemp("nodeexample")
    relay_out = base / "relay.out"
    with relay_out.open("wb") as out:
        relay = subprocess.Popen(
            [*_p2pos(), "relay", "--listen", "127.0.0.1:0", "--home", str(base / "relay")],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO_ROOT,
        )
    net = Net(base, node, relay)
    try:

        def bootstrap_line() -> str | None:
            for line in relay_out.read_text(errors="replace").splitlines():
                if line.startswith("bootstrap: "):
                    return line.removeprefix("bootstrap: ").strip()
            if relay.poll() is not None:
                pytest.fail(f"the relay exited {relay.returncode}\n{net.logs()}")
            return None

        bootstrap = wait_for("the relay's bootstrap line", bootstrap_line, logs=net.logs)
        _install_echo_node(base / "two" / "plugins")  # before the daemon starts: autostart
        for name in ("one", "two"):
            net.daemons.append(_start_daemon(base, name, bootstrap))
        for daemon in net.daemons:

            def registered(daemon: Daemon = daemon) -> dict[str, Any] | None:
                status = net.status(daemon)
                if status is None or not status["registrations"]:
                    return None
                return status if status["registrations"][0]["state"] == "registered" else None

            daemon.peer_id = wait_for(f"{daemon.home.name} to register", registered, logs=net.logs)["peer_id"]
        yield net
    finally:
        for daemon in net.daemons:
            _end(daemon.process)
        _end(relay)
        _kill_strays(base)


def _plugin_in(net: Net, name: str, states: tuple[str, ...]) -> dict[str, Any] | None:
    """Daemon 2's plugin ``name`` if it is in one of ``states`` (else None, for ``wait_for``)."""
    plugin = net.plugin(net.daemons[1], name)
    return plugin if plugin is not None and plugin["state"] in states else None


def _echo_node_serving(net: Net) -> None:
    """Wait until echo-node runs on daemon 2 and has registered its service."""

    def serving() -> bool | None:
        status = net.status(net.daemons[1])
        if status is None:
            return None
        running = any(p["name"] == "echo-node" and p["state"] == "running" for p in status["plugins"])
        registered = any(s["name"] == "echo-node" for s in status["services"])
        return True if running and registered else None

    wait_for("echo-node to run and register its service", serving, logs=net.logs)


def test_pipe_js_sends_a_megabyte_through_the_node_plugin_and_back(net: Net) -> None:
    one, two = net.daemons
    _echo_node_serving(net)
    data = os.urandom(1 << 20)
    result = net.pipe(one, two.peer_id, "echo-node", data)
    assert result.returncode == 0, f"{result.stderr.decode(errors='replace')}\n{net.logs()}"
    assert len(result.stdout) == len(data), net.logs()
    assert result.stdout == data
    log = two.home / "logs" / "plugin-echo-node.log"
    wait_for("echo-node to log the channel", lambda: True if f"{len(data)} bytes" in log.read_text() else None)


def test_node_client_status_and_events_over_socket_and_tcp(net: Net) -> None:
    one, two = net.daemons
    _echo_node_serving(net)
    run = two.home / "run"
    answer = net.node_script(
        """
        const fs = require('node:fs');
        const { Client, P2posError } = require(process.argv[2]);
        const run = process.argv[3];
        const port = fs.readFileSync(`${run}/api.port`, 'utf8').trim();
        const token = fs.readFileSync(`${run}/api.token`, 'utf8').trim();
        const refusal = (promise) => promise.then(
          () => null, (e) => ({ status: e.status, code: e.code, typed: e instanceof P2posError }));
        (async () => {
          const unix = new Client({ socketPath: `${run}/api.sock` });
          const tcp = new Client({ url: `http://127.0.0.1:${port}`, token });
          const events = [];
          const stream = await unix.events(0, (event) => events.push(event));
          const out = {
            unix: await unix.status(),
            tcp: await tcp.status(),
            badToken: await refusal(new Client({ url: `http://127.0.0.1:${port}`, token: 'wrong' }).status()),
            noService: await refusal(unix.deleteService('no-such-service')),
            noDaemon: await refusal(new Client({ socketPath: `${run}/nothing.sock` }).status()),
          };
          while (!events.some((e) => e.type === 'plugin')) await new Promise((ok) => setTimeout(ok, 50));
          stream.close();
          await stream.done;
          out.events = events;
          process.stdout.write(JSON.stringify(out));
        })().catch((e) => { console.error(e); process.exit(1); });
        """,
        str(run),
    )
    for status in (answer["unix"], answer["tcp"]):
        assert status["peer_id"] == two.peer_id
        assert status["registrations"][0]["state"] == "registered"
        assert [p["state"] for p in status["plugins"] if p["name"] == "echo-node"] == ["running"]
        assert "echo-node" in [s["name"] for s in status["services"]]
    assert answer["badToken"] == {"status": 401, "code": "unauthorized", "typed": True}
    assert answer["noService"] == {"status": 404, "code": "not_found", "typed": True}
    assert answer["noDaemon"] == {"status": 0, "code": "daemon_not_running", "typed": True}
    events = answer["events"]
    assert {"seq": 1, "type": "started", "peer_id": two.peer_id}.items() <= events[0].items()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert {"name": "echo-node", "state": "running"}.items() <= next(e for e in events if e["type"] == "plugin").items()
    assert one.peer_id != two.peer_id


def test_a_crashing_plugin_is_restarted_and_the_daemon_keeps_serving(net: Net) -> None:
    one, two = net.daemons
    _echo_node_serving(net)
    crasher = two.home / "plugins" / "crasher"
    crasher.mkdir()
    (crasher / "plugin.toml").write_text(
        'name = "crasher"\ncommand = ["sh", "-c", "echo crashing; exit 1"]\nautostart = true\n'
    )
    net.p2pos("plugin", "start", "crasher", "--home", str(two.home))  # the daemon finds the new folder
    try:
        # Restarted after 1 s, then 2 s: two restarts within ~3 s.
        def restarted_twice() -> dict[str, Any] | None:
            plugin = net.plugin(two, "crasher")
            return plugin if plugin is not None and plugin["restarts"] >= 2 else None

        seen = wait_for("crasher to be restarted twice", restarted_twice, logs=net.logs)
        assert seen["last_exit"] == 1
        assert seen["state"] in ("waiting", "running")
        assert (two.home / "logs" / "plugin-crasher.log").read_text().count("crashing") >= 2
        echo = net.plugin(two, "echo-node")
        assert echo is not None and echo["state"] == "running"
        data = b"still serving\n" * 1000
        result = net.pipe(one, two.peer_id, "echo-node", data)
        assert result.returncode == 0 and result.stdout == data, result.stderr.decode(errors="replace")
    finally:
        net.p2pos("plugin", "stop", "crasher", "--home", str(two.home), check=False)
    stopped = wait_for("crasher to stop", lambda: _plugin_in(net, "crasher", ("stopped",)), logs=net.logs)
    assert stopped["pid"] is None


def test_plugin_stop_and_start(net: Net) -> None:
    one, two = net.daemons
    _echo_node_serving(net)
    home = str(two.home)
    net.p2pos("plugin", "stop", "echo-node", "--home", home)
    plugin = net.plugin(two, "echo-node")
    assert plugin is not None and plugin["state"] == "stopped" and plugin["pid"] is None
    assert plugin["last_exit"] == 0  # echo.js removed its service on SIGTERM and exited 0
    status = net.status(two)
    assert status is not None and "echo-node" not in [s["name"] for s in status["services"]]
    refused = net.pipe(one, two.peer_id, "echo-node", b"anyone?")
    assert refused.returncode == 1 and b"pipe.js: service_refused: " in refused.stderr, refused.stderr
    again = net.p2pos("plugin", "stop", "echo-node", "--home", home, check=False)
    assert again.returncode == 1 and "not running" in again.stderr

    net.p2pos("plugin", "start", "echo-node", "--home", home)
    _echo_node_serving(net)
    data = b"back again\n"
    result = net.pipe(one, two.peer_id, "echo-node", data)
    assert result.returncode == 0 and result.stdout == data, result.stderr.decode(errors="replace")


def test_node_accept_with_an_allow_list_and_each_side_half_closing_first(net: Net) -> None:
    """A Node.js app on daemon 2 takes a channel (``accept``) from daemon 1's pipe.js only: it
    sends first and half-closes; pipe.js still delivers its stdin, written after that."""
    one, two = net.daemons
    app = net.base / "greeter.js"
    app.write_text(
        """
        const { Client } = require(process.argv[2]);
        (async () => {
          const client = Client.fromEnv();
          await client.putService('greet', { allow: [process.argv[3]] });
          process.stdout.write('ready\\n');
          const { peer, socket } = await client.accept('greet');
          socket.end(Buffer.alloc(100000, 'g'));  // all we send, then our half-close
          const chunks = [];
          socket.on('data', (chunk) => chunks.push(chunk));
          socket.on('end', async () => {
            await client.deleteService('greet');
            const received = Buffer.concat(chunks).toString();
            process.stdout.write(JSON.stringify({ peer, received }) + '\\n');
          });
        })().catch((e) => { console.error(e); process.exit(1); });
        """
    )
    processes: list[subprocess.Popen[bytes]] = []

    def kill_all() -> None:  # the reads below block: a hang ends in short reads, not in a stuck run
        for process in processes:
            process.kill()

    watchdog = threading.Timer(30, kill_all)
    watchdog.start()
    try:
        env = {**os.environ, "P2POS_API_SOCKET": str(two.socket)}
        greeter = subprocess.Popen(
            [net.node, str(app), str(CLIENT_JS), one.peer_id], stdout=subprocess.PIPE, env=env, cwd=net.base
        )
        processes.append(greeter)
        assert greeter.stdout is not None
        assert greeter.stdout.readline() == b"ready\n"  # the service is registered
        env = {**os.environ, "P2POS_API_SOCKET": str(one.socket)}
        pipe = subprocess.Popen(
            [net.node, str(PIPE_JS), two.peer_id, "greet"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=net.base,
        )
        processes.append(pipe)
        assert pipe.stdin is not None and pipe.stdout is not None
        greeting = pipe.stdout.read(100000)
        assert greeting == b"g" * 100000, f"pipe.js gave {len(greeting)} bytes\n{net.logs()}"
        pipe.stdin.write(b"after your end\n")
        pipe.stdin.close()
        assert pipe.wait(timeout=30) == 0, pipe.stderr.read() if pipe.stderr else b""
        assert pipe.stdout.read() == b""
        assert json.loads(greeter.stdout.readline()) == {"peer": one.peer_id, "received": "after your end\n"}
        assert greeter.wait(timeout=10) == 0
    finally:
        watchdog.cancel()
        for process in processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=10)
            for stream in (process.stdin, process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
