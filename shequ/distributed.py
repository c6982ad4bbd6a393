"""Ingestion spread over celery workers for the lake backend (docs/lake.md, issue 12 item 3), as plain functions a
notebook can call without Dagster; pipelines/lake_job.py only wires them into a job run by dagster-celery.

1. ``stage_file`` (one task per inbox file, on any worker): reads, normalises and quarantines ONE file exactly as
   the embedded path does (shequ.ingest.Ingestor, in a scratch in-memory DuckDB holding only the dimensions), then
   writes that file's raw_file, stg_value and quarantine rows as three Parquet objects under a fresh attempt
   folder ``s3://<bucket>/staging/<namespace>/<file_id>/<attempt>/`` and LAST one marker object
   ``staging/<namespace>/<file_id>.json`` naming that attempt. An S3 PUT is atomic (the object appears whole or
   not at all), so the marker is the per-file commit: a worker killed mid-file leaves no marker, or the previous
   attempt's marker, never a half-written partition; the retried task writes a new attempt and a new marker with
   the same rows. Files are identified by the sha256 of their bytes, as in the embedded warehouse: a file whose
   marker says "loaded" is not read again (only loaded files are final; a rejection is read again).
2. ``merge_quarter`` (once per quarter, after every file of the run is staged): loads the staged rows into the
   node's local DuckDB warehouse in the embedded path's order (inbox inventory order, quarter by quarter, the same
   ingest_seq rules), then ``build_quarter`` runs the unchanged facts, aggregates, quality, appraisal and their
   suites in one DerivedBuild, and lake.publish_quarter replaces the quarter in the lake.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from . import ingest, pipeline
from .config import DEFAULT_SCHEME, REGISTRY_DIR, ROOT
from .lake import LakeConfig, LakeError, _first_line
from .warehouse import DerivedBuild, transaction

STAGED_TABLES = ("raw_file", "stg_value", "quarantine")
CATALOGUE_DIR = ROOT / "models" / "catalogue"
# community_key is a surrogate key numbered by each database's registry history, so a staged value also carries
# the community version's natural key (community_code, valid_from); the merge maps it to the node's own key.
STAGED_SELECT = {"stg_value": "SELECT s.*, d.community_code AS nk_community_code, d.valid_from AS nk_valid_from "
                              "FROM stg_value s JOIN dim_community d USING (community_key) WHERE s.file_id = $1"}


def _prefix(cfg: LakeConfig) -> str:
    return f"{cfg.bucket}/staging/{cfg.namespace}"


def marker_key(cfg: LakeConfig, file_id: str) -> str:
    return f"{_prefix(cfg)}/{file_id}.json"


def read_marker(fs, cfg: LakeConfig, file_id: str) -> dict | None:
    try:
        return json.loads(fs.cat_file(marker_key(cfg, file_id)))
    except FileNotFoundError:
        return None


@dataclass
class InboxEntry:
    rel: str
    file_id: str
    quarter: str | None           # from the name or folder; None: only the contents can tell


def list_files(inbox: str | os.PathLike, quarters: list[str] | None = None) -> list[InboxEntry]:
    """The inbox files a run stages: every file, or those whose name/folder names one of ``quarters`` plus
    those whose name does not say (as ingest_inbox reads them), in inventory order."""
    inbox = Path(inbox)
    if not inbox.is_dir():
        raise FileNotFoundError(f"收件箱目录不存在：{inbox}")
    out = []
    for p in ingest.inventory(inbox):
        q = ingest.path_quarter(p, inbox)
        if quarters and q and q not in quarters:
            continue
        out.append(InboxEntry(str(p.relative_to(inbox)), ingest.sha256(p), q))
    return out


# A worker's pool process runs many file tasks: the dimensions (1-2 s for a national registry) are loaded into a
# scratch in-memory DuckDB once per registry version and process, not once per file.
_SCRATCH: dict[tuple, tuple[duckdb.DuckDBPyConnection, ingest.Ingestor]] = {}


def _version(*dirs: Path) -> tuple:
    return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for d in dirs for p in sorted(Path(d).rglob("*"))
                 if p.is_file())


def _ingestor(registry_dir: Path, inbox: Path) -> tuple[duckdb.DuckDBPyConnection, ingest.Ingestor]:
    key = (str(registry_dir.resolve()), _version(registry_dir, CATALOGUE_DIR))
    if key not in _SCRATCH:
        for con, _ in _SCRATCH.values():
            con.close()
        _SCRATCH.clear()
        con = duckdb.connect()
        pipeline.stage_dimensions(con, registry_dir)
        _SCRATCH[key] = (con, ingest.Ingestor(con, inbox))
    con, ing = _SCRATCH[key]
    ing.inbox = inbox
    return con, ing


def stage_file(path: str | os.PathLike, inbox: str | os.PathLike, cfg: LakeConfig,
               registry_dir: str | os.PathLike = REGISTRY_DIR) -> dict:
    """Read, normalise and stage one inbox file into the bucket; returns its marker (see module doc)."""
    path, inbox = Path(path), Path(inbox)
    fs = cfg.filesystem()
    file_id = ingest.sha256(path)
    rel = str(path.relative_to(inbox)) if path.is_relative_to(inbox) else path.name
    try:
        old = read_marker(fs, cfg, file_id)
    except Exception as e:  # noqa: BLE001 - the object store is the usual cause
        raise LakeError(f"无法访问对象存储 {cfg.s3_endpoint}（桶 {cfg.bucket}）：{_first_line(e)}") from e
    if old and old["status"] == "loaded" and old["source_file"] == rel:
        return {**old, "reused": True}
    t0 = time.perf_counter()
    con, ing = _ingestor(Path(registry_dir), inbox)
    try:
        summary = ing.ingest(path)
        tables = {t: con.sql(STAGED_SELECT.get(t, f"SELECT * FROM {t} WHERE file_id = $1"),
                             params=[file_id]).to_arrow_table() for t in STAGED_TABLES}
    finally:
        for t in STAGED_TABLES:              # the scratch database keeps only the dimensions between files
            con.execute(f"DELETE FROM {t}")
        ing.known = {}
    attempt = f"{dt.datetime.now():%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
    objects = {}
    try:
        for t, tbl in tables.items():
            key = f"{_prefix(cfg)}/{file_id}/{attempt}/{t}.parquet"
            buf = io.BytesIO()
            pq.write_table(tbl, buf, compression="zstd")
            fs.pipe_file(key, buf.getvalue())         # one PUT: the object exists whole or not at all
            objects[t] = {"key": key, "rows": tbl.num_rows}
        marker = {"file_id": file_id, "source_file": rel, "status": summary.status,
                  "reason_code": summary.reason_code, "n_loaded": summary.n_loaded,
                  "n_quarantined": summary.n_quarantined, "period_keys": summary.period_keys,
                  "attempt": attempt, "objects": objects,
                  "worker": f"{os.environ.get('SHEQU_WORKER_NAME') or socket.gethostname()}:{os.getpid()}",
                  "seconds": round(time.perf_counter() - t0, 3),
                  "staged_at": dt.datetime.now().isoformat(timespec="seconds")}
        fs.pipe_file(marker_key(cfg, file_id), json.dumps(marker, ensure_ascii=False).encode("utf-8"))
    except Exception as e:  # noqa: BLE001
        raise LakeError(f"{rel} 暂存到对象存储 {cfg.s3_endpoint}（桶 {cfg.bucket}）失败：{_first_line(e)}。"
                        f"该文件没有提交标记，重试时重新暂存") from e
    return marker


@dataclass
class MergeResult:
    quarter: str
    merged: list[str] = field(default_factory=list)      # files whose staged rows entered the warehouse now
    unchanged: int = 0                                  # files the warehouse had loaded before


def merge_quarter(con: duckdb.DuckDBPyConnection, inbox: str | os.PathLike, quarter: str, cfg: LakeConfig
                  ) -> MergeResult:
    """Load the staged rows of the quarter's files into the local warehouse, file by file in inventory order,
    with the embedded path's rules (a loaded file is final; an earlier rejection of the same bytes is replaced;
    ingest_seq = the next number). A file without a marker is an error naming it: stage it first."""
    fs = cfg.filesystem()
    known = dict(con.execute("SELECT file_id, status FROM raw_file").fetchall())
    out = MergeResult(quarter)
    for e in list_files(inbox, [quarter]):
        if known.get(e.file_id) == "loaded":
            out.unchanged += 1
            continue
        marker = read_marker(fs, cfg, e.file_id)
        if marker is None:
            raise LakeError(f"{e.rel} 尚未暂存到湖仓（对象存储 {cfg.s3_endpoint} 中没有 {marker_key(cfg, e.file_id)}）："
                            f"请先运行该文件的暂存任务（shequ lake ingest）")
        data = {t: pq.read_table(io.BytesIO(fs.cat_file(o["key"]))) for t, o in marker["objects"].items()}
        raw = data["raw_file"]
        with transaction(con):
            if e.file_id in known:
                con.execute("DELETE FROM quarantine WHERE file_id = ?", [e.file_id])
                con.execute("DELETE FROM raw_file WHERE file_id = ?", [e.file_id])
            seq = con.execute("SELECT coalesce(max(ingest_seq), 0) + 1 FROM raw_file").fetchall()[0][0]
            raw = raw.set_column(raw.schema.get_field_index("ingest_seq"), "ingest_seq",
                                 pa.array([seq] * raw.num_rows, pa.int64()))
            for t, tbl in (("raw_file", raw), ("quarantine", data["quarantine"])):
                if tbl.num_rows:
                    con.register("_staged_rows", tbl)
                    con.execute(f"INSERT INTO {t} BY NAME SELECT * FROM _staged_rows")
                    con.unregister("_staged_rows")
            stg = data["stg_value"]
            if stg.num_rows:
                cols = [r[0] for r in con.execute("DESCRIBE stg_value").fetchall()]
                sel = ", ".join("d.community_key" if c == "community_key" else f's."{c}"' for c in cols)
                con.register("_staged_rows", stg)
                n = con.execute(f"""INSERT INTO stg_value SELECT {sel} FROM _staged_rows s JOIN dim_community d
                                    ON d.community_code = s.nk_community_code AND d.valid_from = s.nk_valid_from"""
                                ).fetchall()[0][0]
                con.unregister("_staged_rows")
                if n != stg.num_rows:
                    raise LakeError(f"{e.rel}：暂存的 {stg.num_rows - n} 个数值所属的社区版本不在本节点的社区登记表中"
                                    f"（工作节点与本节点的登记表不一致）：请用同一份 models/registry 重新暂存")
        known[e.file_id] = marker["status"]
        out.merged.append(e.rel)
    return out


def build_quarter(warehouse_path: str | os.PathLike, quarter: str, scheme: str | os.PathLike = DEFAULT_SCHEME,
                  reviews: str | os.PathLike | None = None) -> dict:
    """The unchanged derived stages and their suites for one quarter, in one DerivedBuild (as the embedded job):
    committed when no critical expectation fails, rolled back otherwise. Returns {"ok", "failed", "counts"}."""
    counts, failed = {}, []
    build = DerivedBuild(warehouse_path)
    try:
        con = build.con
        for stage in ("dimensions", "staged_values"):
            failed += [r for r in pipeline.stage_checks(con, stage, quarter) if r.severity == "critical"
                       and not r.success]
        steps = (("fact_indicator_value", lambda c: pipeline.stage_facts(c, quarter)),
                 ("agg_indicator_value", lambda c: pipeline.stage_aggregates(c, quarter)),
                 ("quality_checks", lambda c: pipeline.stage_quality(c, quarter)),
                 ("fact_ranking", lambda c: pipeline.stage_rankings(c, quarter, Path(scheme),
                                                                    Path(reviews) if reviews else None)))
        for stage, fn in steps:
            if failed:
                break
            r = fn(con)
            counts[stage] = r if isinstance(r, int) else {k: v for k, v in r.items() if isinstance(v, int)}
            failed += [x for x in pipeline.stage_checks(con, stage, quarter) if x.severity == "critical"
                       and not x.success]
    except BaseException:
        build.rollback()
        raise
    if failed:
        build.rollback()
    else:
        build.commit()
    return {"ok": not failed, "counts": counts,
            "failed": [f"{r.suite}/{r.expectation}：{r.detail[:120]}" for r in failed]}
