"""The DuckDB warehouse: connections, the schema contract (models/schema.sql), dimensions from models/, and
the SQL models (models/sql/*.sql, one SELECT each) run into their tables.

Every write of a period happens inside one transaction (delete that period's rows, insert the new ones), so a
run that fails midway leaves the previous state of the period intact. A refresh wraps all its derived tables
in one DerivedBuild, so readers see a quarter's facts, aggregates, quality tables, scores, rankings, titles and
explanations of one refresh, never a mix.
"""

import contextlib
import datetime as dt
import functools
import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl

from . import config
from .catalogue import dim_indicator_frame
from .config import CATALOGUE_CSV, REGISTRY_DIR, SCHEMA_SQL, SQL_DIR
from .periods import calendar_frame
from .registry import dim_community_frame, load_aliases, load_communities, load_lineage

SCHEMA_VERSION = 2
CALENDAR_YEARS = (2000, 2035)


def memory_limit() -> str:
    """DuckDB's memory limit for this machine: SHEQU_DUCKDB_MEMORY_LIMIT (e.g. '4GB'), else a fifth of the physical
    memory (at least 1 GB). A refresh's whole process tree is budgeted a quarter of the machine (issue 11: 6 GB on
    this 24 GB machine); DuckDB gets four fifths of that, the rest is left to numpy/polars in the process and the
    staging workers. Above its limit DuckDB spills to <warehouse>.tmp/ or the stage fails naming it
    (shequ.pipeline.StageOutOfMemory), so the operating system's OOM killer never picks the refresh."""
    env = os.environ.get("SHEQU_DUCKDB_MEMORY_LIMIT")
    if env:
        return env
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "4GB"
    return f"{max(1024, total // 5 // 2**20)}MB"


def duckdb_threads() -> int:
    """SHEQU_DUCKDB_THREADS, else the cores this process may use."""
    env = os.environ.get("SHEQU_DUCKDB_THREADS")
    return int(env) if env else available_cores()


def available_cores() -> int:
    """The cores this process may use (its CPU affinity, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


def _lock_holder(message: str) -> str:
    """Who holds the file, from DuckDB's lock-conflict text ("Conflicting lock is held in <program> (PID n)"):
    the PID and, when /proc shows it, the holder's command line."""
    m = re.search(r"PID (\d+)", message)
    if not m:
        return "另一个进程"
    pid = m.group(1)
    try:
        cmd = " ".join(Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace").replace("\0", " ").split())
    except OSError:
        cmd = ""
    if len(cmd) > 120:
        cmd = cmd[:117] + "..."
    return f"进程 {pid}" + (f"（{cmd}）" if cmd else "")


def open_connection(path: str | Path, read_only: bool = False, retries: float | None = None,
                    report=None) -> duckdb.DuckDBPyConnection:
    """Open ``path``, waiting while another process holds it. DuckDB allows one writing process or many
    reading ones per file, so a writer waits for readers too. ``retries`` is the longest wait in seconds
    (default: SHEQU_LOCK_WAIT or config.LOCK_WAIT_SECONDS for a writer, 30 s for a reader). While waiting,
    a Chinese message naming the process that holds the file goes to ``report`` (default: stderr), at once
    and then every 30 s."""
    path = Path(path)
    if not read_only:
        path.parent.mkdir(parents=True, exist_ok=True)
    if retries is None:
        retries = config.READ_LOCK_WAIT_SECONDS if read_only else config.lock_wait_seconds()
    report = report or (lambda msg: print(msg, file=sys.stderr, flush=True))
    start = time.monotonic()
    next_report = start
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only)
        except duckdb.IOException as e:
            waited = time.monotonic() - start
            if "lock" not in str(e).lower():
                raise RuntimeError(f"无法打开仓库 {path}：{e}") from e
            if waited >= retries:
                raise RuntimeError(
                    f"无法打开仓库 {path}：{_lock_holder(str(e))}占用该文件，已等待 {waited:.0f} 秒（上限 "
                    f"{retries:.0f} 秒，设置 SHEQU_LOCK_WAIT）。请等它结束或关闭它；笔记本与脚本请读快照 "
                    f"snapshot.duckdb（shequ.snapshot），不要长时间打开仓库本身。DuckDB：{e}") from e
            if time.monotonic() >= next_report and retries > 0:
                report(f"仓库 {path} 正被{_lock_holder(str(e))}打开（DuckDB 同一文件只允许一个写进程，只读连接也会"
                       f"挡住写入）：等待其关闭，已等待 {waited:.0f} 秒，最多等待 {retries:.0f} 秒"
                       f"（设置 SHEQU_LOCK_WAIT）。笔记本与脚本请读快照（shequ.snapshot），不要长时间打开仓库本身。")
                next_report = time.monotonic() + 30
            time.sleep(0.5)


@contextlib.contextmanager
def connect(path: str | Path, read_only: bool = False, retries: float | None = None
            ) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection that is always closed. A file held by another process is waited for (see
    ``open_connection``), then reported with the path and the process holding it."""
    con = open_connection(path, read_only, retries)
    try:
        # SET, not connect(config=...): DuckDB refuses a second connection to an open file with another config
        con.execute(f"SET memory_limit = '{memory_limit()}'")
        con.execute(f"SET threads = {duckdb_threads()}")
        yield con
    finally:
        con.close()


# Connections inside a DerivedBuild: their inner transaction() blocks join the build's one transaction.
# (DuckDB has no nested transactions or savepoints, and a second BEGIN aborts the open transaction.)
_HELD: set[int] = set()


@contextlib.contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    if id(con) in _HELD:     # part of a DerivedBuild: it commits or rolls back everything at once
        yield con
        return
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


class DerivedBuild:
    """One transaction around every derived table a refresh writes for its quarters: fact_indicator_value,
    agg_indicator_value, the quality tables (validation_rule, validation_violation, quality_hold, outlier_flag,
    completeness_report, check_result), fact_score, fact_ranking, fact_award, fact_explanation and
    ranking_release. The stages write through ``con`` as usual; nothing is visible to another connection, and
    nothing reaches the file, until ``commit()``. A process killed before that leaves every one of those tables
    as the last committed refresh left it (DuckDB writes a transaction to its log only at commit), and a
    failed or blocked stage calls ``rollback()``. Staging (raw_file, stg_value, quarantine) and the dimensions
    commit file by file (a large inbox read in parallel: a group of files per transaction) before the build
    starts, so a re-run skips files already read."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.con = open_connection(self.path)
        self.started = time.monotonic()
        self.con.execute("BEGIN TRANSACTION")
        _HELD.add(id(self.con))
        self.open = True

    def _close(self) -> None:
        _HELD.discard(id(self.con))
        self.open = False
        self.con.close()

    def commit(self) -> float:
        """Make the build visible in one commit; returns the seconds the COMMIT took."""
        t0 = time.perf_counter()
        try:
            self.con.execute("COMMIT")
        finally:
            self._close()
        return time.perf_counter() - t0

    def rollback(self) -> None:
        if not self.open:
            return
        try:
            self.con.execute("ROLLBACK")
        except duckdb.Error:        # already aborted by the error that brought us here
            pass
        finally:
            self._close()


# Derived tables whose columns changed between schema versions. They hold nothing that cannot be recomputed
# from the facts and the scheme, so an older warehouse drops them and the next ranking run rebuilds them.
DERIVED_COLUMNS = {"fact_ranking": "self_gap", "fact_score": "stage"}
ADDED_COLUMNS = [("check_result", "partial_unexpected", "VARCHAR")]


def ensure_schema(con: duckdb.DuckDBPyConnection) -> list[int]:
    """Create or upgrade the warehouse: refuse a schema newer than this code, apply pending migration files
    (shequ.migrate), re-apply models/schema.sql (new tables), stamp the version. Returns migrations applied."""
    from . import migrate

    applied = migrate.migrate(con)
    for table, column in DERIVED_COLUMNS.items():
        cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns WHERE table_name = ?",
                                          [table]).fetchall()}
        if cols and column not in cols:
            con.execute(f"DROP TABLE {table}")
    con.execute(SCHEMA_SQL.read_text(encoding="utf-8"))
    # columns added to kept tables after they were first created (the table keeps its rows)
    for table, column, ddl in ADDED_COLUMNS:
        con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {ddl}")
    migrate.stamp(con)
    for view in ("fact_indicator_value_current", "fact_indicator_value_rollup"):
        con.execute(f"CREATE OR REPLACE VIEW {view} AS {model_sql(view)}")
    con.execute("""CREATE OR REPLACE VIEW fact_indicator_value_history AS
        SELECT s.*, f.source_file, f.ingest_seq, f.ingested_at,
               row_number() OVER (PARTITION BY s.community_key, s.indicator_code, s.period_key, s.role
                                  ORDER BY f.ingest_seq DESC) = 1 AS is_latest
        FROM stg_value s JOIN raw_file f USING (file_id)""")
    return applied


@functools.lru_cache(maxsize=64)
def model_sql(name: str) -> str:
    """The SELECT of models/sql/<name>.sql, comments kept, trailing semicolon dropped."""
    return (SQL_DIR / f"{name}.sql").read_text(encoding="utf-8").strip().rstrip(";")


def load_dimensions(con: duckdb.DuckDBPyConnection, registry_dir: Path = REGISTRY_DIR,
                    catalogue: Path = CATALOGUE_CSV, today: dt.date | None = None) -> dict[str, int]:
    """Upsert dim_period, dim_indicator, dim_community (+ lineage, aliases) from models/.

    Dimension rows are never deleted (facts reference them); a registry change closes or updates rows in
    place, and a new version of a community gets a new key. Returns row counts."""
    periods = calendar_frame(*CALENDAR_YEARS)
    indicators = dim_indicator_frame(catalogue)
    communities = dim_community_frame(load_communities(registry_dir), today)
    lineage = load_lineage(registry_dir)
    aliases = load_aliases(registry_dir)
    codes = set(communities["community_code"].to_list())
    bad = [c for c in lineage["predecessor_code"].to_list() + lineage["successor_code"].to_list() if c not in codes]
    if bad:
        raise ValueError(f"community_lineage.csv 引用了登记表中不存在的社区代码：{sorted(set(bad))[:5]}")
    with transaction(con):
        con.register("_periods", periods)
        con.execute("INSERT INTO dim_period SELECT * FROM _periods ON CONFLICT DO NOTHING")
        con.register("_indicators", indicators)
        _upsert(con, "dim_indicator", "_indicators", ["indicator_code"], indicators.columns)
        con.register("_communities", communities)
        # keys: existing (code, valid_from) keep theirs; new versions get the next integers, in code order
        con.execute("""
            CREATE OR REPLACE TEMP TABLE _keyed AS
            SELECT coalesce(d.community_key,
                            (SELECT coalesce(max(community_key), 0) FROM dim_community)
                            + row_number() OVER (PARTITION BY d.community_key IS NULL
                                                 ORDER BY n.community_code, n.valid_from)) AS community_key,
                   n.* EXCLUDE (is_current), n.is_current
            FROM _communities n
            LEFT JOIN dim_community d USING (community_code, valid_from)
        """)
        ccols = ["community_key", "community_code", "name", "street_code", "street", "district_code", "district",
                 "city_code", "city", "province_code", "province", "community_type", "households", "population",
                 "valid_from", "valid_to", "is_current"]
        _upsert(con, "dim_community", "_keyed", ["community_key"], ccols)
        con.execute("DELETE FROM community_lineage")
        con.register("_lineage", lineage)
        con.execute("INSERT INTO community_lineage SELECT * FROM _lineage")
        con.execute("DELETE FROM community_alias")
        con.register("_aliases", aliases)
        con.execute("INSERT INTO community_alias SELECT * FROM _aliases")
        for t in ("_periods", "_indicators", "_communities", "_lineage", "_aliases"):
            con.unregister(t)
    return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0]
            for t in ("dim_period", "dim_indicator", "dim_community", "community_lineage")}


def _upsert(con: duckdb.DuckDBPyConnection, table: str, source: str, key: list[str], cols: list[str]) -> None:
    """Insert new rows, update only rows whose attributes changed. Not INSERT .. ON CONFLICT DO UPDATE: DuckDB
    runs that as delete + insert, which its foreign-key check rejects for rows facts already reference."""
    on = " AND ".join(f"t.{k} = s.{k}" for k in key)
    attrs = [c for c in cols if c not in key]
    con.execute(f"INSERT INTO {table} ({', '.join(cols)}) SELECT {', '.join('s.' + c for c in cols)} "
                f"FROM {source} s WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {on})")
    changed = " OR ".join(f"t.{c} IS DISTINCT FROM s.{c}" for c in attrs)
    con.execute(f"UPDATE {table} t SET {', '.join(f'{c} = s.{c}' for c in attrs)} FROM {source} s "
                f"WHERE {on} AND ({changed})")


def bind(sql: str, params: dict) -> dict:
    """The subset of ``params`` that ``sql`` references as $name (DuckDB rejects unused named parameters)."""
    return {k: v for k, v in params.items() if re.search(rf"\${k}\b", sql)}


def replace_period(con: duckdb.DuckDBPyConnection, table: str, model: str, params: dict,
                   where: str = "period_key = $period_key", order_by: str = "") -> int:
    """Atomically replace one period's rows of ``table`` with the rows of SQL model ``model``."""
    return replace_rows(con, table, model_sql(model), params, where, order_by)


def replace_rows(con: duckdb.DuckDBPyConnection, table: str, sql: str, params: dict,
                 where: str = "period_key = $period_key", order_by: str = "") -> int:
    """Atomically replace the rows of ``table`` matching ``where`` with the rows of the SELECT ``sql``, written in
    ``order_by`` order. The big tables carry no key index (issue 11), so the cost is the delete (a scan that
    zone maps prune to the period's row groups when rows are written period-first) plus the append: it does not
    grow with the quarters of history already loaded (tests/test_fact_store_rerun_cost.py)."""
    with transaction(con):
        con.execute(f"DELETE FROM {table} WHERE {where}", bind(where, params))
        cols = [r[0] for r in con.execute(f"SELECT * FROM ({sql}) LIMIT 0", bind(sql, params)).description]
        order = f" ORDER BY {order_by}" if order_by else ""
        con.execute(f"INSERT INTO {table} ({', '.join(cols)}) SELECT * FROM ({sql}){order}", bind(sql, params))
        n = con.execute(f"SELECT count(*) FROM {table} WHERE {where}", bind(where, params)).fetchall()[0][0]
    return n


# Write order of the fact tables: period first (one quarter's rows are contiguous, so its re-run deletes whole
# row groups), then indicator (an indicator's values are read together by scoring and the yardstick).
FACT_ORDER = "period_key, indicator_code, community_key"


def build_facts(con: duckdb.DuckDBPyConnection, period_key: str) -> int:
    """The quarter's facts, written in FACT_ORDER: models/sql/fact_indicator_value.sql sorts its narrow rows
    (one period: indicator, community) before joining the file and indicator strings, so no ORDER BY here sorts
    the wide rows again (issue 11: that sort held every provenance string of the quarter)."""
    return replace_period(con, "fact_indicator_value", "fact_indicator_value", {"period_key": period_key})


def build_aggregates(con: duckdb.DuckDBPyConnection, period_key: str) -> int:
    return replace_period(con, "agg_indicator_value", "agg_indicator_value", {"period_key": period_key},
                          order_by="period_key, indicator_code, entity_level, entity_code")


def frame(con: duckdb.DuckDBPyConnection, sql: str, params: list | dict | None = None) -> pl.DataFrame:
    """A query's result as a polars frame (DuckDB 2.0: relations have .pl(); executed cursors do not)."""
    return con.sql(sql, params=params).pl()
