"""adapters/malloc_tuning.py: with the thresholds set, a 256 KiB buffer comes from the heap and
costs no page faults; without them glibc maps fresh pages for each (the faults are counted, not
timed).  A user's own GLIBC_TUNABLES / MALLOC_* settings are left alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from p2pos.adapters.malloc_tuning import tune_malloc

PROBE = """
import json, resource, sys
from p2pos.adapters.malloc_tuning import tune_malloc
tuned = tune_malloc() if sys.argv[1] == "tune" else False
data = bytes(262144)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    copy = bytes(bytearray(data))  # two 256 KiB buffers made and freed
    del copy
after = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
print(json.dumps({"tuned": tuned, "faults_per_round": (after - before) / 200}))
"""


def _probe(mode: str) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GLIBC_TUNABLES", "MALLOC_"))}
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, env=env, check=True)
    result: dict[str, float] = json.loads(out.stdout)
    return result


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt thresholds are glibc's")
def test_tuned_buffers_come_from_the_heap() -> None:
    plain, tuned = _probe("plain"), _probe("tune")
    assert tuned["tuned"] == 1.0  # json true
    assert plain["faults_per_round"] > 32  # fresh pages (mapped, or the heap regrown) each round
    assert tuned["faults_per_round"] < 2


def test_a_users_own_settings_win() -> None:
    assert tune_malloc({"GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=65536"}) is False
    assert tune_malloc({"MALLOC_TRIM_THRESHOLD_": "0"}) is False
