"""A script or notebook holding a read-only connection on the live warehouse does not break a refresh: the refresh
waits for it, says which process holds the file (PID and command line) and how long it will wait
(SHEQU_LOCK_WAIT), and succeeds once the reader lets go. Readers that use shequ.snapshot never hold it.

The hold time is SHEQU_TEST_READER_HOLD seconds (default 120, the case issue 13 describes).
"""
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest

HOLD = float(os.environ.get("SHEQU_TEST_READER_HOLD", "120"))

READER = r"""
import sys, time, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
con.execute("SELECT count(*) FROM raw_file").fetchall()
print("held", flush=True)
time.sleep(float(sys.argv[2]))
con.close()
print("released", time.time(), flush=True)
"""


def _reader(path: Path, hold: float) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", READER, str(path), str(hold)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


def _empty_warehouse(path: Path) -> None:
    from shequ.warehouse import connect, ensure_schema

    with connect(path) as con:
        ensure_schema(con)


@pytest.mark.slow
def test_refresh_waits_for_a_reader_and_names_it(tmp_path):
    from shequ.sample import write_sample_inbox

    inbox, wh = tmp_path / "inbox", tmp_path / "warehouse.duckdb"
    write_sample_inbox(inbox, ["2024Q1"])
    _empty_warehouse(wh)
    reader = _reader(wh, HOLD)
    try:
        t0 = time.time()
        shequ = Path(sys.executable).with_name("shequ")
        env = dict(os.environ, SHEQU_NO_DATADOCS="1", SHEQU_LOCK_WAIT=str(HOLD * 3 + 120))
        r = subprocess.run([str(shequ), "refresh", "--inbox", str(inbox), "--warehouse", str(wh)], env=env,
                           capture_output=True, text=True, timeout=HOLD * 3 + 600)
        done = time.time()
        out = r.stdout + r.stderr
        released = float(reader.stdout.readline().split()[1])
    finally:
        reader.kill()
        reader.wait()
    assert r.returncode == 0, out[-3000:]
    assert f"正被进程 {reader.pid}" in out and "SHEQU_LOCK_WAIT" in out and "等待其关闭" in out, out[-3000:]
    assert "是否有其他进程正在写入" not in out
    assert done > released                       # it finished after the reader let go, having waited for it
    print(f"\n读者占用 {HOLD:.0f} 秒；刷新总耗时 {done - t0:.0f} 秒（读者释放后 {done - released:.0f} 秒完成）")
    with duckdb.connect(str(wh), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM fact_ranking WHERE period_key = '2024Q1'").fetchall()[0][0] > 0


def test_wait_has_a_limit_and_the_message_names_the_holder(tmp_path):
    from shequ.warehouse import connect, open_connection

    wh = tmp_path / "warehouse.duckdb"
    _empty_warehouse(wh)
    reader = _reader(wh, 60)
    try:
        said = []
        t0 = time.monotonic()
        with pytest.raises(RuntimeError) as e:
            open_connection(wh, retries=1.5, report=said.append)
        assert 1.5 <= time.monotonic() - t0 < 10
        assert said and f"进程 {reader.pid}" in said[0] and "最多等待 2 秒" in said[0]
        msg = str(e.value)
        assert "无法打开仓库" in msg and f"进程 {reader.pid}" in msg and "SHEQU_LOCK_WAIT" in msg
        with connect(wh, read_only=True, retries=0) as con:   # other readers are never refused
            assert con.execute("SELECT count(*) FROM raw_file").fetchall() == [(0,)]
    finally:
        reader.kill()
        reader.wait()
    with connect(wh, retries=5):                                # the writer gets in once the reader is gone
        pass
