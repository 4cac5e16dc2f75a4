"""Plugins: programs in ``HOME/plugins/NAME/`` that the daemon starts, restarts and stops
(spec/appapi.md §7).

Each folder holds ``plugin.toml`` (``name``, ``command``, ``services``, ``autostart``).  A plugin
runs in its folder with the app API's address and token in its environment, its output in
``logs/plugin-NAME.log``.  One that exits is started again after a back-off (1 s doubling to
60 s, reset once it ran for 60 s); ``stop`` and the daemon's exit send SIGTERM, then SIGKILL
after 5 s.  Nothing a plugin does (a bad manifest, a crash, a missing program) reaches the
daemon beyond a log line and an event.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import trio

from .home import Home
from .httpapi import ApiError

if TYPE_CHECKING:
    from .daemon import Daemon

log = logging.getLogger("p2pos.plugins")

BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
#: A plugin that ran this long before it exited starts again after ``BACKOFF_FIRST``.
HEALTHY_AFTER = 60.0
STOP_GRACE = 5.0


@dataclasses.dataclass(frozen=True)
class Manifest:
    name: str
    command: tuple[str, ...]
    services: tuple[str, ...]
    autostart: bool
    folder: Path

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """``folder/plugin.toml``; ValueError with one line when it is wrong."""
        path = folder / "plugin.toml"
        try:
            data = tomllib.loads(path.read_text())
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        name = data.get("name")
        command = data.get("command")
        services = data.get("services", [])
        autostart = data.get("autostart", True)
        if name != folder.name:
            raise ValueError(f"{path}: name = {name!r} must be the folder's name {folder.name!r}")
        if isinstance(command, str):
            command = [command]
        if not (isinstance(command, list) and command and all(isinstance(c, str) and c for c in command)):
            raise ValueError(f"{path}: command must be a non-empty list of strings")
        if not (isinstance(services, list) and all(isinstance(s, str) for s in services)):
            raise ValueError(f"{path}: services must be a list of strings")
        if not isinstance(autostart, bool):
            raise ValueError(f"{path}: autostart must be true or false")
        return cls(name, tuple(command), tuple(services), autostart, folder)


@dataclasses.dataclass(eq=False)
class Plugin:
    manifest: Manifest
    wanted: bool = False
    state: str = "stopped"  # stopped, starting, running, waiting (to restart), failed (cannot start)
    process: trio.Process | None = None
    restarts: int = 0
    last_exit: int | None = None
    error: str = ""
    wake: trio.Event = dataclasses.field(default_factory=trio.Event)

    def is_wanted(self) -> bool:
        return self.wanted

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.manifest.name,
            "state": self.state,
            "pid": self.process.pid if self.process is not None and self.state == "running" else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
            "services": list(self.manifest.services),
            "error": self.error or None,
        }


class Plugins:
    def __init__(self, home: Home, *, notify: Callable[..., None]) -> None:
        self.home, self._notify = home, notify
        self.plugins: dict[str, Plugin] = {}
        self._nursery: trio.Nursery | None = None
        self._env: dict[str, str] = {}

    def scan(self) -> None:
        """Read the manifests (new folders are added; a broken one is logged and skipped)."""
        if not self.home.plugins.is_dir():
            return
        for folder in sorted(self.home.plugins.iterdir()):
            if not folder.is_dir() or folder.name in self.plugins:
                continue
            try:
                manifest = Manifest.read(folder)
            except ValueError as exc:
                log.warning("plugin skipped: %s", exc)
                self._notify("error", message=f"plugin {folder.name}: {exc}")
                continue
            self.plugins[manifest.name] = Plugin(manifest)

    def status(self) -> list[dict[str, Any]]:
        return [p.describe() for p in self.plugins.values()]

    async def run(self, daemon: Daemon, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        home = self.home
        self._env = {
            "P2POS_API_SOCKET": str(home.api_socket),
            "P2POS_PEER_ID": str(daemon.peer_id),
            "P2POS_HOME": str(home.config),
        }
        if daemon.settings.api_port >= 0 and home.api_port.exists():
            self._env["P2POS_API_URL"] = f"http://127.0.0.1:{home.api_port.read_text().strip()}"
            self._env["P2POS_API_TOKEN"] = home.api_token.read_text().strip()
        self.scan()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for plugin in self.plugins.values():
                if plugin.manifest.autostart:
                    self._start(plugin)
            task_status.started()
            await trio.sleep_forever()

    async def start(self, name: str) -> Plugin:
        """Start a plugin; returns once it runs (or could not be started), within 2 s."""
        self.scan()
        plugin = self._get(name)
        if plugin.wanted:
            raise ApiError(409, "conflict", f"plugin {name!r} is already {plugin.state}")
        self._start(plugin)
        with trio.move_on_after(2):
            while plugin.state == "starting":
                await trio.sleep(0.01)
        return plugin

    async def stop(self, name: str) -> Plugin:
        plugin = self._get(name)
        if not plugin.wanted:
            raise ApiError(409, "conflict", f"plugin {name!r} is not running")
        plugin.wanted = False
        plugin.wake.set()
        await self._terminate(plugin)
        return plugin

    async def stop_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for plugin in self.plugins.values():
                if plugin.wanted:
                    plugin.wanted = False
                    plugin.wake.set()
                    nursery.start_soon(self._terminate, plugin)

    def _get(self, name: str) -> Plugin:
        plugin = self.plugins.get(name)
        if plugin is None:
            raise ApiError(404, "not_found", f"no plugin {name!r} in {self.home.plugins}")
        return plugin

    def _start(self, plugin: Plugin) -> None:
        assert self._nursery is not None
        plugin.wanted = True
        plugin.state = "starting"
        plugin.wake = trio.Event()
        self._nursery.start_soon(self._supervise, plugin)

    async def _supervise(self, plugin: Plugin) -> None:
        """Run the plugin again and again while it is wanted, with back-off."""
        manifest = plugin.manifest
        delay = BACKOFF_FIRST
        logs = self.home.logs
        logs.mkdir(parents=True, exist_ok=True, mode=0o700)
        while plugin.wanted:
            command = list(manifest.command)
            program = shutil.which(command[0], path=f"{manifest.folder}{os.pathsep}{os.environ.get('PATH', '')}")
            if program is None:
                plugin.state, plugin.error = "failed", f"{command[0]!r} not found (in the plugin's folder or PATH)"
            else:
                command[0] = program
                env = {**os.environ, **self._env, "P2POS_PLUGIN": manifest.name}
                started = trio.current_time()
                with open(logs / f"plugin-{manifest.name}.log", "ab") as output:
                    try:
                        plugin.process = await trio.lowlevel.open_process(
                            command,
                            cwd=manifest.folder,
                            env=env,
                            stdin=subprocess.DEVNULL,
                            stdout=output,
                            stderr=output,
                            start_new_session=True,
                        )
                    except OSError as exc:
                        plugin.state, plugin.error = "failed", f"cannot start: {exc}"
                    else:
                        plugin.state, plugin.error = "running", ""
                        log.info("plugin %s started (pid %d)", manifest.name, plugin.process.pid)
                        self._notify("plugin", name=manifest.name, state="running", code=None)
                        code = await plugin.process.wait()
                        plugin.last_exit = code
                        plugin.state = "stopped" if not plugin.wanted else "waiting"
                        log.log(
                            logging.INFO if not plugin.wanted else logging.WARNING,
                            "plugin %s exited with %s",
                            manifest.name,
                            code,
                        )
                        stopped = not plugin.is_wanted()
                        self._notify("plugin", name=manifest.name, state="stopped" if stopped else "exited", code=code)
                        if trio.current_time() - started >= HEALTHY_AFTER:
                            delay = BACKOFF_FIRST
            if plugin.state == "failed":
                log.warning("plugin %s: %s", manifest.name, plugin.error)
                self._notify("plugin", name=manifest.name, state="failed", code=None)
            if not plugin.is_wanted():  # (a method: stop() changes it while we awaited)
                break
            plugin.restarts += 1
            with trio.move_on_after(delay):
                await plugin.wake.wait()
            delay = min(delay * 2, BACKOFF_MAX)
        plugin.state = "stopped"

    async def _terminate(self, plugin: Plugin) -> None:
        process = plugin.process
        if process is None or process.returncode is not None:
            return
        with trio.CancelScope(shield=True):
            _signal_group(process, signal.SIGTERM)
            with trio.move_on_after(STOP_GRACE):
                await process.wait()
                return
            log.warning("plugin %s ignored SIGTERM for %.0f s: killing it", plugin.manifest.name, STOP_GRACE)
            _signal_group(process, signal.SIGKILL)
            await process.wait()


def _signal_group(process: trio.Process, sig: int) -> None:
    """Signal the plugin and what it started (it leads its own process group)."""
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            process.send_signal(sig)
        except ProcessLookupError:
            pass
