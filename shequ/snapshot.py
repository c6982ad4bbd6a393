"""Read access for people: a published snapshot of the warehouse, and short-lived read-only connections.

DuckDB allows one writing process or many reading ones per file: a read-only connection held by a notebook on
the live warehouse makes a refresh wait for it (shequ.warehouse.open_connection names the holder; at most
SHEQU_LOCK_WAIT seconds). So readers never open the live warehouse for long:

- ``publish_snapshot(con, warehouse)`` runs at the end of every refresh (the Dagster asset
  ``warehouse_snapshot``): it checkpoints the warehouse, copies the file to a temporary name beside the
  snapshot, fsyncs it and renames it over ``snapshot.duckdb`` in one step (``clean_stale_tmp`` removes copies a
  killed run left). A reader that still holds the old snapshot keeps
  reading the old file (POSIX rename); the next connection sees the new one. The live file is never held.
- ``read_only()`` opens the snapshot (or, when none has been published yet, the warehouse itself) read-only and
  closes it when the block ends; ``query()`` is one query on such a connection, returned as a polars frame.
"""

import contextlib
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl

from . import config
from .warehouse import connect, frame

SNAPSHOT_NAME = "snapshot.duckdb"


def snapshot_path(warehouse: str | os.PathLike | None = None) -> Path:
    """Where the snapshot of a warehouse lives: beside it, ``snapshot.duckdb`` for ``warehouse.duckdb`` and
    ``<name>.snapshot.duckdb`` for any other name."""
    wh = config.warehouse_path(warehouse)
    if wh.stem == "warehouse":
        return wh.with_name(SNAPSHOT_NAME)
    return wh.with_name(f"{wh.stem}.snapshot.duckdb")


def publish_snapshot(con: duckdb.DuckDBPyConnection, warehouse: str | os.PathLike,
                     snapshot: str | os.PathLike | None = None) -> dict:
    """Copy the warehouse to its snapshot atomically. ``con`` is the caller's read-write connection to
    ``warehouse``: holding it keeps other writers out while the file is copied, and CHECKPOINT first writes
    everything from the write-ahead log into the file, so the copy is complete on its own."""
    wh = Path(warehouse)
    snap = Path(snapshot) if snapshot else snapshot_path(wh)
    snap.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    clean_stale_tmp(snap)
    con.execute("CHECKPOINT")
    tmp = snap.with_name(f".{snap.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(wh, tmp)
        with open(tmp, "rb+") as fh:    # on disk before the rename, so a crash never leaves a short snapshot
            os.fsync(fh.fileno())
        os.replace(tmp, snap)           # atomic on one file system: readers see the old file or the new one
    finally:
        tmp.unlink(missing_ok=True)
    return {"snapshot": str(snap), "bytes": snap.stat().st_size, "seconds": round(time.perf_counter() - t0, 3)}


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # alive, owned by someone else
        return True
    return True


def clean_stale_tmp(target: str | os.PathLike, pattern: str | None = None) -> list[Path]:
    """Remove the temporary copies a killed writer left beside ``target``: ``.<name>.<pid>.tmp`` files (the
    snapshot, reports) whose process no longer runs. ``pattern`` (a glob in ``target``'s folder) widens the
    search, e.g. ``.report_*.html.*.tmp``. A file of a process still running is left alone."""
    target = Path(target)
    removed = []
    for tmp in target.parent.glob(pattern or f".{target.name}.*.tmp"):
        pid = tmp.name.rsplit(".", 2)[-2]
        if pid.isdigit() and _pid_alive(int(pid)) and int(pid) != os.getpid():
            continue
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def source_path(warehouse: str | os.PathLike | None = None) -> Path:
    """What readers open: the snapshot when it has been published, else the warehouse."""
    snap = snapshot_path(warehouse)
    return snap if snap.exists() else config.warehouse_path(warehouse)


@contextlib.contextmanager
def read_only(path: str | os.PathLike | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """A short-lived read-only connection on ``path``; by default the snapshot of the configured warehouse
    (``SHEQU_WAREHOUSE`` or data/warehouse.duckdb), or the warehouse itself before any snapshot exists."""
    target = Path(path) if path else source_path()
    if not target.exists():
        raise FileNotFoundError(f"仓库文件不存在：{target}（先运行 shequ refresh）")
    with connect(target, read_only=True) as con:
        yield con


def query(sql: str, params: list | dict | None = None, path: str | os.PathLike | None = None) -> pl.DataFrame:
    """One query on a connection opened for it and closed straight after."""
    with read_only(path) as con:
        return frame(con, sql, params)
