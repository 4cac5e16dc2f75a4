"""``p2pos demo`` (adapters/netdemo.py): a rendezvous node and two daemons, each its own process,
move a file through ``pipe``/``serve`` with its SHA-256 checked by the receiving side."""

from __future__ import annotations

from p2pos.adapters.netdemo import run_network_demo


def test_the_network_demo_moves_a_file_between_two_daemons() -> None:
    lines: list[str] = []
    summary = run_network_demo(lines.append, file_size=2_000_000)
    assert summary["bytes"] == 2_000_000
    assert summary["peers"]["alice"] != summary["peers"]["bob"]
    assert any("matches" in line for line in lines), lines
    assert any("they match" in line for line in lines), lines
