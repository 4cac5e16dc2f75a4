"""Cases against the daemon's TCP listener (``--tcp-port``, ``--token-file``): the bearer token."""

from __future__ import annotations

import contextlib
import os
import socket
import stat

from ..checks import CaseFailed, expect, expect_eq
from . import expect as check
from .cases_local import refused_before_the_body
from .registry import Target, case


@case(
    "api/tcp/1",
    section="§2",
    title="on TCP, no token or a wrong one is 401 unauthorized",
    requirements=("API-2.8", "API-2.1.1", "API-2.1.2"),
    needs="tcp",
)
def _(t: Target) -> str | None:
    token = t.token()
    check.error(t.tcp(None).request("GET", "/v1/status"), 401, "unauthorized", "no Authorization")
    for wrong in ("x" + token[1:], token[:-1], token + "x", "Bearer", token.upper()):
        if wrong == token:
            continue
        reply = t.tcp(wrong).request("GET", "/v1/status")
        check.error(reply, 401, "unauthorized", f"a wrong token ({len(wrong)} characters)")
    basic = t.tcp(None).request("GET", "/v1/status", headers=[("Authorization", f"Basic {token}")])
    check.error(basic, 401, "unauthorized", "the token as Basic")
    unknown = t.tcp(None).request("GET", "/v1/nothing")
    check.error(unknown, 401, "unauthorized", "no token on a path that names nothing")
    return None


@case(
    "api/tcp/2",
    section="§1",
    title="on TCP, the token of the token file is accepted",
    requirements=("API-1.4",),
    needs="tcp",
)
def _(t: Target) -> str | None:
    over_tcp = check.ok(t.tcp(t.token()).request("GET", "/v1/status"), "GET /v1/status with the token")
    over_unix = check.ok(t.api.request("GET", "/v1/status"), "GET /v1/status on the Unix socket")
    expect_eq(over_tcp.get("peer_id"), over_unix.get("peer_id"), "the peer id over TCP")
    return None


@case(
    "api/tcp/3",
    section="§1",
    title="the token file is one line with mode 0600; api.port beside the socket names the port",
    requirements=("API-1.4", "API-1.3"),
    needs="tcp",
)
def _(t: Target) -> str | None:
    assert t.token_file is not None
    info = os.stat(t.token_file)
    mode = stat.S_IMODE(info.st_mode)
    expect(mode == 0o600, f"{t.token_file} has mode {mode:04o}, expected 0600")
    lines = t.token_file.read_text().splitlines()
    expect(len(lines) == 1 and bool(lines[0].strip()), f"{t.token_file} holds {len(lines)} lines, expected one")
    port_file = t.socket_path.parent / "api.port"
    expect(port_file.exists(), f"no {port_file} beside the socket")
    text = port_file.read_text()
    expect(text.strip().isdigit() and len(text.splitlines()) == 1, f"{port_file} holds {text!r}, expected one number")
    expect_eq(int(text), t.tcp_port, f"the port in {port_file}")
    return None


def _own_address() -> str | None:
    """This host's address on its default route (no packet is sent), or None without one."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        address = str(probe.getsockname()[0])
    except OSError:
        return None
    finally:
        probe.close()
    return None if address.startswith("127.") else address


@case(
    "api/tcp/4",
    section="§1",
    title="the TCP port is on 127.0.0.1 only",
    requirements=("API-1.3",),
    needs="tcp",
)
def _(t: Target) -> str | None:
    address = _own_address()
    if address is None:
        return "this host has no address besides loopback: nothing else to try"
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect((address, t.tcp_port))
        except OSError:
            return f"refused on {address}"
    raise CaseFailed(f"the API port {t.tcp_port} also answers on {address}")


@case(
    "api/tcp/5",
    section="§2",
    title="on TCP, a head without the token is refused at once, before its body is read",
    requirements=("API-2.5", "API-2.8"),
    needs="tcp",
)
def _(t: Target) -> str | None:
    answer = refused_before_the_body(t.tcp(None), [])
    expect(answer.startswith(b"HTTP/1.1 401"), f"no token, a body still coming: {answer[:60]!r} within 3 s")
    return None
