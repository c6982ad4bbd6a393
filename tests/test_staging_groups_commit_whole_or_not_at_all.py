"""Parallel staging commits files in groups (shequ/ingest.py `_ingest_parallel`, `Ingestor.commit_group`): a
group lands whole or not at all, and a reading process killed mid-run loses nothing: the files read before are
committed, the rest are read in the parent, and the warehouse holds exactly what a serial run writes."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

from staging_digest import staging_rows

from shequ import config, pipeline
from shequ.ingest import GROUP_FILES, Ingestor, inventory
from shequ.warehouse import connect

def test_a_group_whose_write_fails_leaves_nothing_and_earlier_groups_stay(tmp_path):
    files = [p for p in inventory(config.DEFAULT_INBOX)][:5]
    with connect(tmp_path / "w.duckdb") as con:
        pipeline.stage_dimensions(con)
        ing = Ingestor(con, config.DEFAULT_INBOX)
        prepared = [ing.prepare(p) for p in files]
        assert all(w is not None and w["staged"].height for _, w in prepared)
        first = ing.commit_group(prepared[:2])
        assert [s.status for s in first] == ["loaded", "loaded"]
        before = {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                  for t in ("raw_file", "stg_value", "quarantine")}
        # the third group's last file carries a row the table refuses (a role outside value/numerator/denominator)
        summary, bad = prepared[4]
        import polars as pl
        bad = dict(bad, staged=bad["staged"].with_columns(
            pl.when(pl.int_range(pl.len()) == 7).then(pl.lit("bogus")).otherwise(pl.col("role")).alias("role")))
        with pytest.raises(duckdb.ConstraintException):
            ing.commit_group([prepared[2], prepared[3], (summary, bad)])
        after = {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
                 for t in ("raw_file", "stg_value", "quarantine")}
        assert after == before                       # nothing of the failed group, the first group intact
        assert not {w["file_id"] for _, w in prepared[2:]} & set(ing.known)   # not remembered as read either
        # the same files, written again without the bad row, land with the next ingest_seq numbers
        again = ing.commit_group(prepared[2:])
        assert [s.status for s in again] == ["loaded"] * 3
        seqs = [r[0] for r in con.execute("SELECT ingest_seq FROM raw_file ORDER BY ingest_seq").fetchall()]
        assert seqs == [1, 2, 3, 4, 5]
        assert con.execute("SELECT count(DISTINCT file_id) FROM stg_value").fetchall()[0][0] == 5


KILLER = textwrap.dedent("""
    import json, os, signal, sys
    from pathlib import Path
    import psutil
    from shequ import ingest, pipeline
    from shequ.warehouse import connect

    db, inbox, kill = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] == "kill"
    killed = []

    def on_file(summary):
        # after the first committed file, a reading process dies (as the kernel's OOM killer would end it)
        if kill and not killed:
            kids = [k for k in psutil.Process().children()   # the readers, not the resource tracker
                    if "spawn_main" in " ".join(k.cmdline()) and "resource_tracker" not in " ".join(k.cmdline())]
            if kids:
                os.kill(kids[0].pid, signal.SIGKILL)
                killed.append(kids[0].pid)

    if __name__ == "__main__":
        with connect(db) as con:
            pipeline.stage_dimensions(con)
            out = ingest.ingest_inbox(con, inbox, on_file=on_file)
        print(json.dumps({"killed": len(killed), "files": [[s.source_file, s.status] for s in out]},
                         ensure_ascii=False))
""")


def test_a_reader_killed_mid_run_loses_nothing(tmp_path):
    inbox = tmp_path / "inbox"
    shutil.copytree(config.DEFAULT_INBOX, inbox)
    n_files = len(inventory(inbox))
    assert n_files > 3 * GROUP_FILES           # groups remain to be read when the reader dies
    script = tmp_path / "killer.py"
    script.write_text(KILLER, encoding="utf-8")
    env = os.environ | {"SHEQU_STAGE_WORKERS": "2", "SHEQU_STAGE_PARALLEL_MIN_MB": "0",
                        "PYTHONPATH": str(config.ROOT)}
    import json
    runs = {}
    for mode, workers in (("serial", "1"), ("kill", "2")):
        res = subprocess.run([sys.executable, str(script), str(tmp_path / f"{mode}.duckdb"), str(inbox), mode],
                             env=env | {"SHEQU_STAGE_WORKERS": workers}, capture_output=True, text=True,
                             timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        runs[mode] = (json.loads(res.stdout.strip().splitlines()[-1]), res.stderr)
    (serial, _), (killed, log) = runs["serial"], runs["kill"]
    assert killed["killed"] == 1 and "读取进程意外退出" in log     # the fallback path really ran
    assert killed["files"] == serial["files"] and len(serial["files"]) == n_files
    a, b = staging_rows(tmp_path / "serial.duckdb"), staging_rows(tmp_path / "kill.duckdb")
    for table in ("raw_file", "stg_value", "quarantine"):
        assert a[table] == b[table], table
    assert len(a["stg_value"]) > 10_000
