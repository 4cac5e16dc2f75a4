"""adapters/portmap.py: the default gateway read from /proc/net/route's text."""

from __future__ import annotations

from pathlib import Path

from p2pos.adapters.portmap import default_gateway, gateway_from_route_table

HEAD = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"


def test_the_default_route_s_gateway() -> None:
    table = HEAD + (
        "eth0\t0000010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n"  # 10.1.0.0/24, on link
        "eth0\t00000000\t0100010A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"  # default via 10.1.0.1
    )
    assert gateway_from_route_table(table) == "10.1.0.1"


def test_no_usable_default_route() -> None:
    down = HEAD + "eth0\t00000000\t0100010A\t0002\t0\t0\t0\t00000000\t0\t0\t0\n"  # not RTF_UP
    on_link = HEAD + "eth0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n"  # no gateway
    junk = HEAD + "eth0\tzz\t0100010A\t0003\n\n"
    assert [gateway_from_route_table(t) for t in (down, on_link, junk, "")] == [None] * 4


def test_an_unreadable_table(tmp_path: Path) -> None:
    assert default_gateway(tmp_path / "missing") is None
    (tmp_path / "route").write_text(HEAD + "eth0\t00000000\t0112A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n")
    assert default_gateway(tmp_path / "route") == "192.168.18.1"
