"""What the namespace tests share: the skip rule, the ``ip`` command, and namespaces that go away.

    pytestmark = netns_lab.MARKS
    with netns_lab.lab("p2pt") as lab:
        a, b = lab.namespaces("a", "b")         # p2pt-a-XXXX, p2pt-b-XXXX
        lab.ip("link", "add", ...)              # fails the test with ip's own message
        ...

Every namespace a lab made is deleted when the ``with`` ends, however it ends, and the test
fails if one is still listed afterwards.  Addresses in these labs come from 198.18.0.0/15
and 2001:2::/48 only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

#: Root is needed; CI runs as root and never skips.
MARKS = [
    pytest.mark.netns,
    pytest.mark.skipif(
        os.geteuid() != 0 and "CI" not in os.environ,
        reason="creating network namespaces needs root (CI runs as root and never skips this)",
    ),
]


def ip_command() -> str:
    found = shutil.which("ip") or next((p for p in ("/usr/sbin/ip", "/sbin/ip") if Path(p).exists()), None)
    if found is None:
        pytest.fail("the `ip` command (iproute2) is needed for the namespace tests", pytrace=False)
    return found


def listed_namespaces(ip: str) -> set[str]:
    listed = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, check=False).stdout
    return {line.split()[0] for line in listed.splitlines() if line.strip()}


class Lab:
    """Namespaces named ``<tag>-<role>-<suffix>``, and ``ip`` commands that fail the test clearly."""

    def __init__(self, tag: str) -> None:
        self.ip_path = ip_command()
        self.tag = tag
        self.suffix = secrets.token_hex(3)
        self.created: list[str] = []

    def ip(self, *args: str) -> None:
        result = subprocess.run([self.ip_path, *args], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.fail(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}", pytrace=False)

    def namespaces(self, *roles: str) -> list[str]:
        names = [f"{self.tag}-{role}-{self.suffix}" for role in roles]
        for name in names:
            self.ip("netns", "add", name)
            self.created.append(name)
        return names

    def close(self) -> None:
        for name in self.created:  # deleting a namespace deletes its ends of the veth pairs
            subprocess.run([self.ip_path, "netns", "del", name], capture_output=True, check=False)
        left = listed_namespaces(self.ip_path) & set(self.created)
        if left:
            pytest.fail(f"namespaces left behind: {sorted(left)}", pytrace=False)


@contextlib.contextmanager
def lab(tag: str) -> Iterator[Lab]:
    made = Lab(tag)
    try:
        yield made
    finally:
        made.close()
