"""The published snapshot: readers (notebooks) hold it, never the live warehouse, so a refresh is not blocked."""

import subprocess
import sys
import time

import pytest

from conftest import run_quarter
from shequ import snapshot
from shequ.warehouse import connect

READER = """
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
n = con.execute("SELECT count(*) FROM fact_ranking").fetchall()[0][0]
print(n, flush=True)
sys.stdin.readline()           # hold the connection until the test says so
print(con.execute("SELECT count(*) FROM fact_ranking").fetchall()[0][0], flush=True)
"""


def _reader(path):
    p = subprocess.Popen([sys.executable, "-c", READER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    first = p.stdout.readline().strip()
    assert first.isdigit(), first
    return p, int(first)


def test_refresh_publishes_a_snapshot_equal_to_the_warehouse(built):
    wh = built["warehouse"]
    snap = snapshot.snapshot_path(wh)
    assert snap == wh.with_name("snapshot.duckdb") and snap.exists()
    tables = ["dim_community", "fact_indicator_value", "agg_indicator_value", "fact_ranking", "fact_score",
              "check_result"]
    with connect(wh, read_only=True) as a, snapshot.read_only(snap) as b:
        for t in tables:
            assert a.execute(f"SELECT count(*) FROM {t}").fetchall() == b.execute(f"SELECT count(*) FROM {t}").fetchall()
        assert b.execute("SELECT count(DISTINCT period_key) FROM fact_ranking").fetchall()[0][0] == 3


def test_reader_default_is_the_snapshot(built, monkeypatch):
    monkeypatch.setenv("SHEQU_WAREHOUSE", str(built["warehouse"]))
    assert snapshot.source_path() == built["warehouse"].with_name("snapshot.duckdb")
    df = snapshot.query("SELECT count(*) AS n FROM fact_ranking WHERE period_key = $q", {"q": "2024Q2"})
    assert df["n"][0] > 0


def test_reader_holding_the_snapshot_does_not_block_a_refresh(tmp_path, built):
    wh, inbox = tmp_path / "warehouse.duckdb", built["inbox"]
    assert run_quarter(wh, inbox, "2024Q1").success          # a new warehouse; publishes tmp/snapshot.duckdb
    snap = snapshot.snapshot_path(wh)
    inode = snap.stat().st_ino
    reader, before = _reader(snap)
    try:
        t0 = time.perf_counter()
        res = run_quarter(wh, inbox, "2024Q2")                 # writes the warehouse and republishes
        took = time.perf_counter() - t0
        assert res.success
        assert took < 25, f"刷新被阻塞 {took:.1f}s"
        assert snap.stat().st_ino != inode                    # a new file was renamed over the snapshot
        out, _ = reader.communicate("\n", timeout=10)          # the reader still reads its own (old) file
        assert int(out.strip()) == before
    finally:
        reader.kill()
    with snapshot.read_only(snap) as con:                      # the next reader sees both quarters
        assert con.execute("SELECT count(*) FROM fact_ranking").fetchall()[0][0] > before


def test_reader_holding_the_live_warehouse_would_block(workspace):
    """The reason for the snapshot: a read-only connection on the live file stops a writer."""
    reader, _ = _reader(workspace["warehouse"])
    try:
        with pytest.raises(RuntimeError, match="无法打开仓库"):
            with connect(workspace["warehouse"], retries=1.0):
                pass
    finally:
        reader.kill()
        reader.wait()
