"""Staging a large inbox in several reading processes (shequ/ingest.py `_ingest_parallel`) writes exactly what a
serial run writes: the same raw_file rows in the same ingest order, the same staged values and the same quarantine,
file for file, including a file whose bytes another file of the same run already loaded ("unchanged"). The run is
started from a script WITHOUT an `if __name__ == "__main__"` guard, as an analyst writes one: the reading
processes must not run it again."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from staging_digest import staging_rows

from shequ import config

SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from shequ import ingest, pipeline
    from shequ.warehouse import connect

    db, inbox, marker = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    with marker.open("a") as f:          # one line per time this script body runs
        f.write("ran\\n")
    with connect(db) as con:
        pipeline.stage_dimensions(con)
        out = ingest.ingest_inbox(con, inbox)
    print(json.dumps([[s.source_file, s.status, s.reason_code] for s in out], ensure_ascii=False))
""")

def _run(tmp: Path, name: str, inbox: Path, workers: str) -> tuple[dict, list, int]:
    script = tmp / "stage_unguarded.py"
    script.write_text(SCRIPT, encoding="utf-8")
    marker = tmp / f"{name}.ran"
    env = os.environ | {"SHEQU_STAGE_WORKERS": workers, "SHEQU_STAGE_PARALLEL_MIN_MB": "0",
                        "PYTHONPATH": str(config.ROOT)}
    res = subprocess.run([sys.executable, str(script), str(tmp / f"{name}.duckdb"), str(inbox), str(marker)],
                         env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    import json
    return staging_rows(tmp / f"{name}.duckdb"), json.loads(res.stdout.strip().splitlines()[-1]), \
        len(marker.read_text().splitlines())


def test_parallel_staging_writes_what_serial_staging_writes(tmp_path):
    inbox = tmp_path / "inbox"
    shutil.copytree(config.DEFAULT_INBOX, inbox)
    # the same bytes twice in one run: the later copy is "unchanged" whichever process read it
    first = sorted(p for p in inbox.rglob("*.xlsx"))[0]
    twin = first.with_name("重复提交_" + first.name)
    shutil.copy2(first, twin)
    os.utime(twin, (first.stat().st_mtime + 5, first.stat().st_mtime + 5))
    # files that cannot be read are rejected with their reason by a reading process as they are here
    (first.parent / "填报说明.pdf").write_bytes(b"%PDF-1.4\n% not a survey\n")
    (first.parent / "损坏的报表.xlsx").write_bytes(b"PK\x03\x04" + b"\x00" * 200)

    serial, serial_files, serial_runs = _run(tmp_path, "serial", inbox, "1")
    parallel, parallel_files, parallel_runs = _run(tmp_path, "parallel", inbox, "2")

    assert serial_runs == parallel_runs == 1           # the unguarded script ran once, not once per process
    assert parallel_files == serial_files
    statuses = {f[1] for f in serial_files}
    assert {"loaded", "rejected", "unchanged"} <= statuses, statuses
    assert [f for f in parallel_files if f[0].endswith(twin.name)][0][1] == "unchanged"
    for table in ("raw_file", "stg_value", "quarantine"):
        assert len(parallel[table]) == len(serial[table]), table
        assert parallel[table] == serial[table], table
    assert len(serial["stg_value"]) > 10_000 and serial["quarantine"]
