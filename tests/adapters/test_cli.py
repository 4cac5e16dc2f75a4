"""The p2pos command: identity creation, clear errors, peer id checking, which core runs."""

from __future__ import annotations

import os
import platform
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import COMPILED_CORE

import p2pos.proto
from p2pos.adapters import build_info, cli, keystore
from p2pos.adapters.home import Home
from p2pos.proto import Identity, PeerId


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "p2pos.adapters.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_id_creates_key_file_0600_and_shows_same_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    assert cli.main(["id", "--home", str(home)]) == 0
    first = capsys.readouterr()
    assert "created a new identity" in first.err
    path = home / "identity.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    peer = PeerId.parse(first.out.strip())
    assert cli.main(["id", "--home", str(home)]) == 0
    second = capsys.readouterr()
    assert second.out.strip() == str(peer)
    assert "created" not in second.err
    assert Identity.from_key_file(path.read_bytes()).peer_id == peer


def test_id_uses_environment_home(tmp_path: Path) -> None:
    result = run_cli("id", env={"P2POS_HOME": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "identity.key").exists()
    PeerId.parse(result.stdout.strip())


def test_id_shows_the_identity_the_daemon_uses(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "P2POS_HOME"}
    env["XDG_CONFIG_HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "p2pos.adapters.cli", "id", "--show-key-path"],
        capture_output=True, text=True, timeout=60, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1] == str(Home.default(env).identity) == str(tmp_path / "p2pos" / "identity.key")


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\xff garbage",
        b"-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n",
        b"p2pos-identity-v1\nseed zz\npublic 00\n",
        b"p2pos-identity-v1\npublic " + b"00" * 32 + b"\n",
        b"",
    ],
)
def test_corrupt_or_foreign_key_file_is_one_clear_line(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "identity.key").write_bytes(content)
    result = run_cli("id", "--home", str(tmp_path))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "identity.key" in lines[0]
    assert "not a p2pos identity file" in lines[0]
    assert (tmp_path / "identity.key").read_bytes() == content  # never overwritten


def test_mismatched_public_key_is_reported(tmp_path: Path) -> None:
    a, b = Identity.from_seed(bytes(32)), Identity.from_seed(bytes([1]) * 32)
    forged = a.to_key_file().replace(a.peer_id.public_key.hex().encode(), b.peer_id.public_key.hex().encode())
    (tmp_path / "identity.key").write_bytes(forged)
    result = run_cli("id", "--home", str(tmp_path))
    assert result.returncode == 2
    assert "does not match" in result.stderr


def test_unreadable_home_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = run_cli("id", "--home", str(blocker / "sub"))
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "p2pos:" in result.stderr


def test_group_readable_key_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keystore.create_identity(tmp_path / "identity.key")
    (tmp_path / "identity.key").chmod(0o644)
    assert cli.main(["id", "--home", str(tmp_path)]) == 0
    assert "readable by other users" in capsys.readouterr().err


def test_create_never_overwrites(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    keystore.create_identity(path)
    before = path.read_bytes()
    with pytest.raises(keystore.KeyStoreError, match="already exists"):
        keystore.create_identity(path)
    assert path.read_bytes() == before


def test_check_id(capsys: pytest.CaptureFixture[str]) -> None:
    good = str(Identity.from_seed(bytes(range(32))).peer_id)
    assert cli.main(["check-id", good.upper()]) == 0
    typo = good[:10] + ("b" if good[10] != "b" else "c") + good[11:]
    assert cli.main(["check-id", typo]) == 1
    assert "typo" in capsys.readouterr().err


def test_console_script_help() -> None:
    result = run_cli("--help")
    assert result.returncode == 0
    commands = ["id", "check-id", "demo", "version", "relay", "up", "status", "serve", "pipe", "expose", "forward"]
    commands += ["verify", "path", "plugin", "events", "stop"]
    for command in commands:
        assert command in result.stdout


@pytest.mark.parametrize(
    "command", ["up", "status", "serve", "pipe", "expose", "forward", "verify", "path", "plugin", "stop"]
)
def test_every_daemon_command_has_help(command: str) -> None:
    result = run_cli(command, "--help")
    assert result.returncode == 0 and "--home" in result.stdout, result.stderr


def test_client_commands_without_a_daemon_say_so_in_one_line(tmp_path: Path) -> None:
    result = run_cli("status", "--home", str(tmp_path))
    assert result.returncode == 3
    assert result.stderr.startswith("p2pos: the daemon is not running") and result.stderr.count("\n") == 1


def test_path_pins_only_to_a_known_carrier_and_not_both_ways(tmp_path: Path) -> None:
    peer = str(Identity.from_seed(bytes(range(32))).peer_id)
    result = run_cli("path", peer, "--pin", "pigeon", "--home", str(tmp_path))
    assert result.returncode == 2 and "invalid choice: 'pigeon'" in result.stderr
    result = run_cli("path", peer, "--pin", "relay", "--unpin", "--home", str(tmp_path))
    assert result.returncode == 2 and "not allowed with" in result.stderr
    result = run_cli("path", peer, "--pin", "relay", "--home", str(tmp_path))
    assert result.returncode == 3 and result.stderr.startswith("p2pos: the daemon is not running")


def test_serve_without_an_allow_list_is_refused(tmp_path: Path) -> None:
    result = run_cli("serve", "echo", "--home", str(tmp_path), "--", "cat")
    assert result.returncode == 2 and "--allow PEER" in result.stderr and "Traceback" not in result.stderr
    result = run_cli("serve", "echo", "--home", str(tmp_path), "--allow-any")
    assert result.returncode == 2 and "give the command to run after --" in result.stderr


# This suite runs twice (tests/conftest.py): on the pure core, and with the compiled one first on
# PYTHONPATH (make test-compiled); `p2pos version` must tell them apart.
EXPECTED_CORE = "compiled (mypyc)" if COMPILED_CORE else "pure Python"


def test_core_build_tells_compiled_from_pure() -> None:
    assert build_info.core_build() == ("compiled" if COMPILED_CORE else "pure")


def test_version_says_which_core_runs_and_from_where(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["version"]) == 0
    lines = capsys.readouterr().out.splitlines()
    core_dir = Path(str(p2pos.proto.__file__)).parent
    assert lines == [
        f"p2pos {p2pos.proto.__version__}",
        f"python {platform.python_implementation()} {platform.python_version()} "
        f"({platform.system()} {platform.machine()})",
        f"core {EXPECTED_CORE}, loaded from {core_dir}",
    ]


def test_version_command_in_a_new_process() -> None:
    # What a user sees: the core the console script imports (PYTHONPATH carries over, so the
    # compiled run's subprocess loads the compiled core too).
    result = run_cli("version")
    assert result.returncode == 0, result.stderr
    assert f"core {EXPECTED_CORE}, loaded from " in result.stdout


def test_a_bootstrap_the_daemon_cannot_reach_is_one_line_before_it_starts(tmp_path: Path) -> None:
    result = run_cli("up", "--home", str(tmp_path), "--listen", "[::1]:0", "--bootstrap", "127.0.0.1:3478")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "p2pos: bootstrap '127.0.0.1:3478': no address this daemon can reach (it listens on IPv6)"
    )
    assert not (tmp_path / "run" / "api.sock").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--relay", "ws://user:pass@127.0.0.1:8080"), "no credentials in a URL"),
        (("--relay", "ftp://127.0.0.1"), "expected ws://, wss://, turn: or turns:"),
        (("--relay", "turn:127.0.0.1:3478"), "needs turn_username and turn_password, or turn_secret"),
        (("--proxy", "socks5://127.0.0.1:1080"), "expected http://HOST:PORT"),
    ],
)
def test_bad_relay_and_proxy_flags_are_one_line_before_the_daemon_starts(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    result = run_cli("up", "--home", str(tmp_path), "--listen", "127.0.0.1:0", *args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("p2pos: ") and message in line, line
    assert not (tmp_path / "run" / "api.sock").exists()


def test_path_text_shows_the_pin_and_says_when_the_peer_chooses() -> None:
    from p2pos.adapters.cli_apps import _pin_text

    path = {"path_id": 2, "via": "relay", "kind": "stream", "address": "relay:X", "state": "validated"}
    path |= {"active": True, "why": "better", "srtt_ms": 3.1, "bytes_sent": 10, "bytes_received": 9}
    answer = {"peer_id": "P", "pin": "relay", "controlling": True, "paths": [path]}
    assert _pin_text(answer).splitlines() == [
        "peer      P pinned to relay",
        "  path 2 relay (stream) relay:X validated active (better) rtt 3.1 ms, 10 B out, 9 B in",
    ]
    text = _pin_text({**answer, "controlling": False})
    assert "the peer opened this session and picks its paths" in text
    assert _pin_text({"peer_id": "P", "pin": None, "paths": []}) == "peer      P not pinned"
