"""Distributed ingestion with 1 and 2 celery workers (docs/lake.md "实测"): a synthetic quarter of N communities
(shequ.sample.write_synthetic_set, the generator of `shequ bench`; 200 communities per district file), staged by
`shequ lake workers` through the lake_ingest job, merged, appraised and published into the lake.

    SHEQU_HOME=data/service/lake-tests .venv/bin/python scripts/lake_workers_bench.py [N] [--workers 1,2]

Needs the lake components running (scripts/install_lake.sh for that SHEQU_HOME). Each worker count gets a fresh
Iceberg namespace and a fresh local warehouse (nothing is reused between the runs); both are dropped afterwards.
Prints wall times (whole job; staging = first file task started -> last file task finished; merge + appraisal +
publish) with the machine's load before and after.
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def load() -> str:
    return open("/proc/loadavg").read().split(" ", 3)[:3].__str__()


def phases(instance, run_id: str) -> dict:
    from dagster import DagsterEventType

    t = {}
    for kind in (DagsterEventType.STEP_START, DagsterEventType.STEP_SUCCESS):
        for rec in instance.all_logs(run_id, of_type=kind):
            t.setdefault((kind, rec.dagster_event.step_key.split("[")[0]), []).append(rec.timestamp)
    stage = max(t[(DagsterEventType.STEP_SUCCESS, "stage_file")]) - min(t[(DagsterEventType.STEP_START, "stage_file")])
    merge = (max(t[(DagsterEventType.STEP_SUCCESS, "merge_and_publish")])
             - min(t[(DagsterEventType.STEP_START, "merge_and_publish")]))
    return {"staging_s": round(stage, 1), "merge_publish_s": round(merge, 1)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int, nargs="?", default=20000)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--quarter", default="2024Q3")
    ap.add_argument("--data", help="folder for the generated set (kept and reused when it exists)")
    args = ap.parse_args()

    from dagster import DagsterInstance

    from shequ import lake, workers as w
    from shequ.sample import write_synthetic_set

    data = Path(args.data) if args.data else Path(tempfile.gettempdir()) / f"shequ_lake_bench_{args.n}"
    if not (data / "inbox").is_dir():
        t0 = time.perf_counter()
        info = write_synthetic_set(data, args.n, [args.quarter])
        print(f"generated {info} in {time.perf_counter() - t0:.1f} s -> {data}")
    n_files = sum(1 for p in (data / "inbox").rglob("*") if p.is_file())
    (data / "reviews").mkdir(exist_ok=True)
    instance = DagsterInstance.from_config(str(w.dagster_home()))
    rows = []
    for k in [int(x) for x in args.workers.split(",")]:
        w.stop(out=lambda s: None)
        w.start(k)
        ns = f"bench_{k}w_{os.urandom(3).hex()}"
        wh = data / f"warehouse_{k}w.duckdb"
        wh.unlink(missing_ok=True)
        load_before = load()
        t0 = time.perf_counter()
        res = w.run_ingest(str(data / "inbox"), str(wh), [args.quarter], namespace=ns,
                           registry_dir=str(data / "registry"), reviews=str(data / "reviews"), min_workers=k)
        wall = time.perf_counter() - t0
        if not res["success"]:
            print(f"{k} worker(s): run failed: {res['failures']}")
            return 1
        row = {"workers": k, "files": n_files, "wall_s": round(wall, 1), **phases(instance, res["run_id"]),
               "used": res["output"]["workers"], "load_before": load_before, "load_after": load()}
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
        os.environ["SHEQU_LAKE_NAMESPACE"] = ns
        cfg = lake.LakeConfig.load()
        cat = cfg.catalog()
        for ident in cat.list_tables(ns):
            cat.purge_table(ident)
        cat.drop_namespace(ns)
        cfg.filesystem().rm(f"{cfg.bucket}/staging/{ns}", recursive=True)
        del os.environ["SHEQU_LAKE_NAMESPACE"]
        wh.unlink(missing_ok=True)
    w.stop(out=lambda s: None)
    if len(rows) == 2:
        a, b = rows
        print(f"speed-up {a['workers']}->{b['workers']} workers: whole job {a['wall_s'] / b['wall_s']:.2f}x, "
              f"staging {a['staging_s'] / b['staging_s']:.2f}x")
    if not args.data:
        shutil.rmtree(data, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
