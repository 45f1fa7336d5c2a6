"""A one-minute soak: clients through random cuts under steady writes lose nothing, and no
worker's memory, open files or greenlets keep growing."""

import os

from .faults.soak import soak

SECONDS = float(os.environ.get("SOAK_TEST_SECONDS", "60"))
# Per minute, per worker, after the first quarter. A leak of one file or greenlet per cut
# (about 300 a minute here) or of 1 KB per delivered event (about 100 MiB a minute) breaks
# them; steady state stays well inside.
RSS_MIB_PER_MINUTE = 24
FILES_PER_MINUTE = 30
GREENLETS_PER_MINUTE = 60


def test_a_minute_of_cuts_and_writes_loses_nothing_and_leaks_nothing(start_server):
    server = start_server(workers=2, HEARTBEAT_SECONDS="2")
    result = soak(server, SECONDS, clients=100, writes=30, cuts=5)
    print(result.report())
    assert result.lost == 0, result.report()
    assert result.checked > 10_000
    assert result.faults.keys() == {"rst", "fin", "mid_frame"}
    assert len(result.slopes["greenlets"]) == 2, "no greenlet figures from /metrics"
    for pid, value in result.slopes["rss_mib"].items():
        assert value < RSS_MIB_PER_MINUTE, (pid, result.report())
    for pid, value in result.slopes["files"].items():
        assert value < FILES_PER_MINUTE, (pid, result.report())
    for pid, value in result.slopes["greenlets"].items():
        assert value < GREENLETS_PER_MINUTE, (pid, result.report())
