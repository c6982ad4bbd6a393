"""The lake backend (docs/lake.md): the warehouse's key tables as Apache Iceberg tables in an S3-compatible bucket,
with the Iceberg catalog in PostgreSQL (pyiceberg SqlCatalog). Selected by SHEQU_BACKEND=lake; embedded (one
DuckDB file) stays the default and nothing here runs for it.

Design (the simplest one that keeps every SQL model unchanged):
- Each node still computes a quarter in a local DuckDB with the existing pipeline; ``publish_quarter(con, q)``
  then writes the quarter's rows of the KEY_TABLES to Iceberg. Every table is partitioned by ``period_key``
  (identity) and the quarter is replaced with ``Table.overwrite(rows, period_key == q)``: one catalog commit per
  table (pyiceberg records it as a delete + append snapshot pair, swapped in by one metadata pointer update), so a
  reader of that table sees the old or the new quarter, never a mix.
- pyiceberg has no multi-table transaction. Consistency ACROSS tables comes from the manifest table
  ``lake_manifest`` (period_key, table_name, snapshot_id, ...), written LAST, also as one partition overwrite: it
  names, per quarter, the snapshot of every table that holds that quarter's published state. Readers
  (``attach``) read each table at the snapshot the manifest names for each quarter, so a publish that died half
  way (object store gone after three tables) is invisible: the manifest still names the old snapshots.
- Two runs replacing the same quarter at once: Iceberg's serializable validation rejects the later commit of a
  table whose partition changed under it (ValidationException) or pyiceberg retries a plain conflict
  (CommitFailedException); on a rejection the whole replace of that table is redone against the new head (at
  most REPLACE_ATTEMPTS times, then a clear error). The last writer wins, never duplicates.
- DuckDB stays the query engine: ``attach(con)`` registers an fsspec s3fs filesystem on the connection (DuckDB 2.0
  has no httpfs extension here) and creates one view per table over the Parquet data files of the pinned
  snapshots, cast to the embedded schema's types, so models/sql and the suites run unchanged on lake data.
"""

from __future__ import annotations

import json
import os
import random
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import duckdb
import pyarrow as pa

from . import config

# the first publish of a quarter has nothing to replace; pyiceberg warns about that on every such table
warnings.filterwarnings("ignore", message="Delete operation did not match any records")

BACKENDS = ("embedded", "lake")
KEY_TABLES = ("fact_indicator_value", "agg_indicator_value", "fact_score", "fact_ranking", "fact_award",
              "quarantine", "appraisal_publication", "published_ranking", "published_award", "publication_diff")
MANIFEST = "lake_manifest"
NO_PERIOD = "__none__"        # quarantine rows without a period (unreadable period cells) live in this partition
REPLACE_ATTEMPTS = 8
PUBLISH_THREADS = 4
FIX = "请运行 sudo bash scripts/install_lake.sh 启动湖仓组件，或检查 SHEQU_LAKE_* 环境变量（见 docs/lake.md）"


class LakeError(RuntimeError):
    """A Chinese message naming what failed (endpoint, table, quarter) and how to fix it."""


def backend() -> str:
    """SHEQU_BACKEND: embedded (default) or lake."""
    b = (os.environ.get("SHEQU_BACKEND") or "embedded").strip().lower()
    if b not in BACKENDS:
        raise LakeError(f"SHEQU_BACKEND={b!r} 无效：只能是 embedded（默认，单个 DuckDB 文件）或 lake（Iceberg 湖仓）")
    return b


# ------------------------------------------------------------------ configuration
def _home() -> Path:
    env = os.environ.get("SHEQU_HOME")
    home = Path(env) if env else config.DATA_DIR / "service"
    return (home if home.is_absolute() else config.ROOT / home).resolve()


@dataclass
class LakeConfig:
    catalog_url: str            # SQLAlchemy URL of the PostgreSQL database holding the Iceberg catalog
    s3_endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    namespace: str = "shequ"

    @classmethod
    def load(cls, need_catalog: bool = True) -> "LakeConfig":
        """$SHEQU_HOME/lake/lake.json (written by scripts/install_lake.sh), each value overridable by SHEQU_LAKE_*
        (SHEQU_LAKE_CATALOG_URL, SHEQU_LAKE_S3_ENDPOINT, SHEQU_LAKE_BUCKET, SHEQU_LAKE_S3_ACCESS_KEY,
        SHEQU_LAKE_S3_SECRET_KEY, SHEQU_LAKE_S3_REGION, SHEQU_LAKE_NAMESPACE) for a province's own servers.
        need_catalog=False: only the object store is needed (the inbox in object storage); catalog_url may be ""."""
        env = os.environ.get
        lake_dir = _home() / "lake"
        info: dict = {}
        lj = lake_dir / "lake.json"
        if lj.exists():
            info = json.loads(lj.read_text(encoding="utf-8"))
        cat, s3 = info.get("catalog", {}), info.get("s3", {})
        url = env("SHEQU_LAKE_CATALOG_URL")
        if not url and cat and need_catalog:
            pw_file = (lake_dir / cat.get("password_file", "../pg_password")).resolve()
            if not pw_file.exists():
                raise LakeError(f"缺少目录数据库密码文件 {pw_file}。{FIX}")
            pw = pw_file.read_text(encoding="utf-8").strip()
            url = (f"postgresql+psycopg2://{quote(cat['user'])}:{quote(pw, safe='')}@{cat['host']}:{cat['port']}/"
                   f"{cat['db']}")
        access = env("SHEQU_LAKE_S3_ACCESS_KEY")
        secret = env("SHEQU_LAKE_S3_SECRET_KEY")
        if not (access and secret) and s3.get("credentials_file"):
            cf = lake_dir / s3["credentials_file"]
            if not cf.exists():
                raise LakeError(f"缺少对象存储凭据文件 {cf}。{FIX}")
            cred = json.loads(cf.read_text(encoding="utf-8"))
            access, secret = access or cred["access_key"], secret or cred["secret_key"]
        endpoint = env("SHEQU_LAKE_S3_ENDPOINT") or s3.get("endpoint")
        missing = [n for n, v in (("目录数据库（SHEQU_LAKE_CATALOG_URL）", url or not need_catalog),
                                  ("对象存储端点（SHEQU_LAKE_S3_ENDPOINT）", endpoint),
                                  ("对象存储凭据（SHEQU_LAKE_S3_ACCESS_KEY / SHEQU_LAKE_S3_SECRET_KEY）",
                                   access and secret)) if not v]
        if missing:
            raise LakeError(f"湖仓未配置：缺少{'、'.join(missing)}；未找到 {lj}。{FIX}")
        url = url or ""
        if url.startswith(("postgresql://", "postgres://")):   # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3
            url = "postgresql+psycopg2://" + url.split("://", 1)[1]
        return cls(catalog_url=url, s3_endpoint=endpoint.rstrip("/"),
                   bucket=env("SHEQU_LAKE_BUCKET") or s3.get("bucket", "shequ-lake"),
                   access_key=access, secret_key=secret,
                   region=env("SHEQU_LAKE_S3_REGION") or s3.get("region", "us-east-1"),
                   namespace=env("SHEQU_LAKE_NAMESPACE") or "shequ")

    # -- what to show people (never the password)
    def catalog_endpoint(self) -> str:
        from sqlalchemy.engine import make_url

        u = make_url(self.catalog_url)
        return f"postgresql://{u.host}:{u.port or 5432}/{u.database}"

    @property
    def warehouse(self) -> str:
        return f"s3://{self.bucket}/warehouse"

    # -- clients
    def filesystem(self, version_aware: bool = False):
        """An fsspec s3fs filesystem (DuckDB reads s3:// through it; short timeouts so an outage fails fast).
        version_aware: listings carry each object's VersionId (the inbox in object storage)."""
        import s3fs

        return s3fs.S3FileSystem(key=self.access_key, secret=self.secret_key, endpoint_url=self.s3_endpoint,
                                 version_aware=version_aware,
                                 client_kwargs={"region_name": self.region},
                                 config_kwargs={"connect_timeout": 3, "read_timeout": 30,
                                                "retries": {"max_attempts": 2}},
                                 skip_instance_cache=True)

    def catalog(self):
        from pyiceberg.catalog.sql import SqlCatalog

        url = self.catalog_url
        if url.startswith("postgresql") and "connect_timeout" not in url:
            url += ("&" if "?" in url else "?") + "connect_timeout=5"
        try:
            return SqlCatalog("shequ", **{
                "uri": url, "warehouse": self.warehouse,
                "s3.endpoint": self.s3_endpoint, "s3.access-key-id": self.access_key,
                "s3.secret-access-key": self.secret_key, "s3.region": self.region,
                "s3.connect-timeout": "5", "s3.request-timeout": "60", "s3.force-virtual-addressing": "false"})
        except Exception as e:  # noqa: BLE001 - any driver error means the catalog is unreachable
            raise LakeError(f"无法连接 Iceberg 目录数据库 {self.catalog_endpoint()}：{_first_line(e)}。{FIX}") from e

    def ensure_bucket(self) -> None:
        fs = self.filesystem()
        try:
            if not fs.exists(self.bucket):
                fs.mkdir(self.bucket)
        except Exception as e:  # noqa: BLE001
            raise LakeError(f"无法访问对象存储 {self.s3_endpoint}（桶 {self.bucket}）：{_first_line(e)}。{FIX}") from e

    def check_reachable(self) -> None:
        """Object store and catalog answer; LakeError naming the endpoint otherwise. Run before any write so an
        outage stops a publish before its first commit."""
        fs = self.filesystem()
        try:
            fs.ls(self.bucket, refresh=True)
        except FileNotFoundError as e:
            raise LakeError(f"对象存储 {self.s3_endpoint} 上没有桶 {self.bucket}。{FIX}") from e
        except Exception as e:  # noqa: BLE001
            raise LakeError(f"无法访问对象存储 {self.s3_endpoint}（桶 {self.bucket}）：{_first_line(e)}。{FIX}") from e
        self.catalog()


def _first_line(e: BaseException) -> str:
    s = str(e).strip() or type(e).__name__
    return s.splitlines()[0][:300]


# ------------------------------------------------------------------ table definitions (from models/schema.sql)
_SCHEMA_CACHE: dict[str, list[tuple[str, str]]] = {}


def embedded_columns() -> dict[str, list[tuple[str, str]]]:
    """(column, DuckDB type) of every key table as models/schema.sql defines it (migrations included via the
    same DDL the embedded warehouse gets)."""
    if not _SCHEMA_CACHE:
        con = duckdb.connect()
        try:
            con.execute(config.SCHEMA_SQL.read_text(encoding="utf-8"))
            for t in KEY_TABLES:
                _SCHEMA_CACHE[t] = [(r[0], r[1]) for r in con.execute(f"DESCRIBE {t}").fetchall()]
        finally:
            con.close()
    return _SCHEMA_CACHE


def _embedded_select(table: str) -> str:
    """The SELECT giving one quarter's rows of a key table from an embedded warehouse ($1 = period_key), in the
    lake table's column order (publication_diff has no period_key of its own: it is its version's quarter)."""
    cols = ", ".join(f'"{c}"' for c, _ in embedded_columns()[table])
    if table == "publication_diff":
        return (f"SELECT p.period_key, {', '.join(f'd.{c}' for c, _ in embedded_columns()[table])} "
                f"FROM publication_diff d JOIN appraisal_publication p USING (version_id) WHERE p.period_key = $1")
    if table == "quarantine":
        return f"SELECT {cols} FROM quarantine WHERE coalesce(period_key, '{NO_PERIOD}') = $1"
    return f"SELECT {cols} FROM {table} WHERE period_key = $1"


def _arrow_schema(table: str) -> pa.Schema:
    """Lake schema: the embedded columns (all nullable: NOT NULL stays the embedded warehouse's and the suites'
    job), period_key first for publication_diff."""
    con = duckdb.connect()
    try:
        cols = embedded_columns()[table]
        sel = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in cols)
        schema = con.sql(f"SELECT {sel} LIMIT 0").to_arrow_table().schema
    finally:
        con.close()
    fields = [pa.field(f.name, f.type, nullable=True) for f in schema]
    if table == "publication_diff":
        fields.insert(0, pa.field("period_key", pa.string(), nullable=True))
    return pa.schema(fields)


def _manifest_schema() -> pa.Schema:
    return pa.schema([pa.field("period_key", pa.string()), pa.field("table_name", pa.string()),
                      pa.field("snapshot_id", pa.int64()), pa.field("n_rows", pa.int64()),
                      pa.field("published_at", pa.timestamp("us")), pa.field("run_id", pa.string())])


def ensure_tables(cat, namespace: str, tables=KEY_TABLES) -> None:
    """Create the namespace and missing tables (partitioned by period_key); add columns models/schema.sql gained
    since (Iceberg schema evolution by name)."""
    from pyiceberg.exceptions import NamespaceAlreadyExistsError, NoSuchTableError, TableAlreadyExistsError

    try:
        cat.create_namespace(namespace)
    except NamespaceAlreadyExistsError:
        pass
    for t in (*tables, MANIFEST):
        schema = _manifest_schema() if t == MANIFEST else _arrow_schema(t)
        ident = (namespace, t)
        try:
            tbl = cat.load_table(ident)
        except NoSuchTableError:
            try:
                tbl = cat.create_table(ident, schema=schema, properties={"commit.retry.num-retries": "6"})
            except TableAlreadyExistsError:      # another node created it meanwhile
                tbl = cat.load_table(ident)
        if not tbl.spec().fields:
            try:
                with tbl.update_spec() as u:
                    u.add_identity("period_key")
            except Exception:  # noqa: BLE001 - a concurrent creator added it first
                tbl = cat.load_table(ident)
                if not tbl.spec().fields:
                    raise
        have = {f.name for f in tbl.schema().fields}
        if any(f.name not in have for f in schema):
            with tbl.update_schema() as u:
                u.union_by_name(schema)


# ------------------------------------------------------------------ writing
def replace_partition(cat, ident: tuple[str, str], quarter: str, rows: pa.Table) -> int:
    """Replace one quarter's partition of one table in one commit; returns the committed snapshot id. A commit
    rejected because another run changed the same partition meanwhile is redone against the new head."""
    from pyiceberg.exceptions import CommitFailedException, ValidationException
    from pyiceberg.expressions import EqualTo

    last = None
    for attempt in range(REPLACE_ATTEMPTS):
        tbl = cat.load_table(ident)
        rows = rows.cast(tbl.schema().as_arrow())
        try:
            tbl.overwrite(rows, overwrite_filter=EqualTo("period_key", quarter))
            snap = tbl.current_snapshot()
            return snap.snapshot_id if snap else 0
        except (CommitFailedException, ValidationException) as e:
            last = e
            time.sleep(random.uniform(0.05, 0.3) * (attempt + 1))
    raise LakeError(f"替换 {ident[1]} 的 {quarter} 分区失败：另一运行在同时替换同一季度，已重试 {REPLACE_ATTEMPTS} 次"
                    f"（{_first_line(last)}）。请稍后重新发布该季度；湖仓里该季度仍是上一次完整发布的结果。")


def quarters_in(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Every period_key any key table holds (quarantine rows without a period under NO_PERIOD)."""
    parts = [f"SELECT DISTINCT period_key FROM {t}" for t in KEY_TABLES if t not in ("publication_diff",
                                                                                      "quarantine")]
    parts.append(f"SELECT DISTINCT coalesce(period_key, '{NO_PERIOD}') FROM quarantine")
    return sorted(r[0] for r in con.execute(" UNION ".join(parts)).fetchall())


def publish_quarter(con: duckdb.DuckDBPyConnection, quarter: str, cfg: LakeConfig | None = None,
                    run_id: str | None = None) -> dict:
    """Write one quarter's rows of every key table from an embedded DuckDB warehouse into the lake, then the
    manifest naming the new snapshots (last, so readers switch to the new quarter only when all tables are in).
    Returns {table: rows} plus timing."""
    cfg = cfg or LakeConfig.load()
    t0 = time.perf_counter()
    cfg.check_reachable()
    cat = cfg.catalog()
    try:
        ensure_tables(cat, cfg.namespace)
        run_id = run_id or f"{quarter}-{datetime.now():%Y%m%dT%H%M%S}-{os.getpid()}"
        data = {t: con.sql(_embedded_select(t), params=[quarter]).to_arrow_table() for t in KEY_TABLES}
        counts = {t: d.num_rows for t, d in data.items()}
        # the tables' commits are independent (no multi-table transaction in Iceberg): run them side by side,
        # the manifest waits for all of them
        with ThreadPoolExecutor(max_workers=PUBLISH_THREADS) as pool:
            futures = {t: pool.submit(replace_partition, cat, (cfg.namespace, t), quarter, d) for t, d in data.items()}
            snaps = {t: f.result() for t, f in futures.items()}
        now = datetime.now().replace(tzinfo=None)
        manifest = pa.table({"period_key": [quarter] * len(KEY_TABLES), "table_name": list(KEY_TABLES),
                             "snapshot_id": [snaps[t] for t in KEY_TABLES],
                             "n_rows": [counts[t] for t in KEY_TABLES], "published_at": [now] * len(KEY_TABLES),
                             "run_id": [run_id] * len(KEY_TABLES)}, schema=_manifest_schema())
        replace_partition(cat, (cfg.namespace, MANIFEST), quarter, manifest)
    except LakeError:
        raise
    except Exception as e:  # noqa: BLE001 - name the endpoints: the usual cause is one of them gone
        raise LakeError(f"发布 {quarter} 到湖仓失败（对象存储 {cfg.s3_endpoint}，目录 {cfg.catalog_endpoint()}）："
                        f"{_first_line(e)}。湖仓里该季度仍是上一次完整发布的结果（清单未更新）。") from e
    return {"quarter": quarter, "rows": counts, "seconds": round(time.perf_counter() - t0, 3), "run_id": run_id}


def import_warehouse(path: str | os.PathLike, cfg: LakeConfig | None = None, progress=None) -> list[dict]:
    """Migrate an embedded warehouse file into the lake: every quarter it holds, one publish each."""
    from .snapshot import read_only

    cfg = cfg or LakeConfig.load()
    out = []
    with read_only(Path(path)) as con:
        for q in quarters_in(con):
            r = publish_quarter(con, q, cfg)
            out.append(r)
            if progress:
                progress(r)
    return out


# ------------------------------------------------------------------ reading
def published(cfg: LakeConfig | None = None, cat=None) -> dict[str, dict[str, int]]:
    """{table: {quarter: snapshot_id}} from the manifest's current snapshot (the last complete publishes)."""
    from pyiceberg.exceptions import NoSuchTableError

    cfg = cfg or LakeConfig.load()
    cat = cat or cfg.catalog()
    try:
        m = cat.load_table((cfg.namespace, MANIFEST)).scan().to_arrow().to_pylist()
    except NoSuchTableError:
        return {}
    out: dict[str, dict[str, int]] = {}
    for r in m:
        out.setdefault(r["table_name"], {})[r["period_key"]] = r["snapshot_id"]
    return out


def _empty_view(table: str) -> str:
    sel = ", ".join(f'CAST(NULL AS {t}) AS "{c}"' for c, t in embedded_columns()[table])
    return f"SELECT {sel} WHERE false"


def attach(con: duckdb.DuckDBPyConnection, cfg: LakeConfig | None = None, schema: str = "main",
           tables=KEY_TABLES) -> dict[str, int]:
    """Create a view per key table on ``con`` over the lake's published snapshots (see module doc), typed as in
    models/schema.sql. Returns {table: data files}. The views read the immutable Parquet files of pinned
    snapshots, so a publish running meanwhile never shows through half done."""
    from pyiceberg.expressions import In

    cfg = cfg or LakeConfig.load()
    cat = cfg.catalog()
    try:
        pins = published(cfg, cat)
        con.register_filesystem(cfg.filesystem())
    except LakeError:
        raise
    except Exception as e:  # noqa: BLE001
        raise LakeError(f"无法读取湖仓（对象存储 {cfg.s3_endpoint}，目录 {cfg.catalog_endpoint()}）：{_first_line(e)}"
                        f"。{FIX}") from e
    con.execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    out = {}
    for t in tables:
        by_snap: dict[int, list[str]] = {}
        for q, sid in pins.get(t, {}).items():
            if sid:                     # 0: the table had never held a row when that quarter was published
                by_snap.setdefault(sid, []).append(q)
        files: list[tuple[str, list[str]]] = []
        tbl = cat.load_table((cfg.namespace, t)) if by_snap else None
        for sid, qs in by_snap.items():
            for task in tbl.scan(row_filter=In("period_key", qs), snapshot_id=sid).plan_files():
                if task.delete_files:   # pyiceberg writes copy-on-write only; a foreign writer's deletes: refuse
                    raise LakeError(f"{t} 含删除文件（非 shequ 写入），本版本不支持读取")
                files.append((task.file.file_path, qs))
        cols = embedded_columns()[t]
        if not files:
            body = _empty_view(t)
        else:
            sel = ", ".join(f'CAST("{c}" AS {ty}) AS "{c}"' for c, ty in cols)
            paths = ", ".join("'" + p.replace("'", "''") + "'" for p, _ in files)
            qs = sorted({q for _, qq in files for q in qq})
            keep = ", ".join("'" + q.replace("'", "''") + "'" for q in qs)
            pk = f"coalesce(period_key, '{NO_PERIOD}')" if t == "quarantine" else "period_key"
            body = f"SELECT {sel} FROM read_parquet([{paths}], union_by_name = true) WHERE {pk} IN ({keep})"
        con.execute(f'CREATE OR REPLACE VIEW "{schema}"."{t}" AS {body}')
        out[t] = len(files)
    return out


def open_reader(local_warehouse: str | os.PathLike | None = None, cfg: LakeConfig | None = None
                ) -> duckdb.DuckDBPyConnection:
    """A read node's DuckDB connection: the key tables from the lake (``attach``), every other table (dimensions,
    lineage, quality results) from the node's local embedded warehouse when given, attached read-only. The SQL
    models (models/sql) and the suites (expectations/) run on it unchanged."""
    con = duckdb.connect()
    if local_warehouse is not None:
        path = str(local_warehouse).replace("'", "''")
        con.execute(f"ATTACH '{path}' AS local_wh (READ_ONLY)")
        for (t,) in con.execute("SELECT table_name FROM duckdb_tables() WHERE database_name = 'local_wh' "
                                "AND schema_name = 'main'").fetchall():
            if t not in KEY_TABLES:
                con.execute(f'CREATE VIEW "{t}" AS SELECT * FROM local_wh.main."{t}"')
    attach(con, cfg)
    return con


def status(cfg: LakeConfig | None = None) -> dict:
    """Tables, current and published snapshots, rows per quarter (from the manifest)."""
    from pyiceberg.exceptions import NoSuchTableError

    cfg = cfg or LakeConfig.load()
    cat = cfg.catalog()
    pins = published(cfg, cat)
    try:
        manifest = cat.load_table((cfg.namespace, MANIFEST)).scan().to_arrow().to_pylist()
    except NoSuchTableError:
        manifest = []
    rows: dict[str, dict[str, int]] = {}
    for r in manifest:
        rows.setdefault(r["table_name"], {})[r["period_key"]] = r["n_rows"]
    tables = []
    for t in KEY_TABLES:
        try:
            tbl = cat.load_table((cfg.namespace, t))
        except NoSuchTableError:
            tables.append({"table": t, "exists": False})
            continue
        snap = tbl.current_snapshot()
        tables.append({"table": t, "exists": True, "snapshots": len(tbl.metadata.snapshots),
                       "current_snapshot": snap.snapshot_id if snap else None,
                       "published": pins.get(t, {}), "rows": rows.get(t, {}),
                       "ahead_of_manifest": bool(snap and snap.snapshot_id not in set(pins.get(t, {}).values()))})
    return {"catalog": cfg.catalog_endpoint(), "s3": f"{cfg.s3_endpoint}/{cfg.bucket}", "namespace": cfg.namespace,
            "tables": tables}


# ------------------------------------------------------------------ shequ lake … (registered from shequ/cli.py)
def after_refresh(warehouse: Path, quarters: list[str], failed: set[str]) -> list[str]:
    """SHEQU_BACKEND=lake: publish each refreshed quarter (not the failed ones) into the lake after `shequ
    refresh`; returns Chinese problem lines. Embedded (the default): does nothing."""
    if backend() != "lake":
        return []
    from .warehouse import connect

    problems = []
    try:
        cfg = LakeConfig.load()
        with connect(warehouse, read_only=True) as con:
            for q in quarters:
                if q in failed:
                    problems.append(f"{q} 未发布到湖仓：本季度刷新未成功")
                    continue
                r = publish_quarter(con, q, cfg)
                print(f"  {q} 已发布到湖仓 {cfg.s3_endpoint}/{cfg.bucket}（{sum(r['rows'].values())} 行，{r['seconds']} 秒）")
    except LakeError as e:
        problems.append(str(e))
    return problems


def register(sub) -> None:
    p = sub.add_parser("lake", help="湖仓（Iceberg + PostgreSQL 目录 + S3 对象存储）：导入、发布与状态，见 docs/lake.md")
    lsub = p.add_subparsers(dest="lake_cmd", required=True)
    i = lsub.add_parser("import", help="把嵌入式仓库文件的关键表（全部季度）迁入湖仓")
    i.add_argument("--warehouse", help=f"DuckDB 仓库文件（默认 SHEQU_WAREHOUSE 或 {config.DEFAULT_WAREHOUSE}）")
    i.set_defaults(fn=cmd_lake_import)
    pb = lsub.add_parser("publish", help="把嵌入式仓库中一个季度的关键表原子替换到湖仓")
    pb.add_argument("--quarter", required=True, help="季度：2024Q3 或 2024年第三季度")
    pb.add_argument("--warehouse", help="DuckDB 仓库文件")
    pb.set_defaults(fn=cmd_lake_publish)
    s = lsub.add_parser("status", help="湖仓状态：表、快照、每季度行数")
    s.add_argument("--json", action="store_true", help="输出 JSON")
    s.set_defaults(fn=cmd_lake_status)
    from .workers import cmd_ingest, cmd_workers

    w = lsub.add_parser("workers", help="celery 工作节点（分布式采集）：启动、停止、状态")
    w.add_argument("action", choices=["start", "stop", "status"], help="start 启动 / stop 停止 / status 状态")
    w.add_argument("--count", type=int, default=2, help="启动的工作节点数（默认 2）")
    w.set_defaults(fn=cmd_workers)
    g = lsub.add_parser("ingest", help="分布式采集：每个收件箱文件一个 celery 任务，季度合并、评比后发布到湖仓")
    g.add_argument("--inbox", help=f"收件箱目录（默认 SHEQU_INBOX 或 {config.DEFAULT_INBOX}）")
    g.add_argument("--warehouse", help="本节点的 DuckDB 计算仓库文件")
    g.add_argument("--quarter", action="append", help="只处理这个季度（可重复）；默认收件箱中的全部季度")
    g.set_defaults(fn=cmd_ingest)


def cmd_lake_import(args) -> int:
    wh = config.warehouse_path(args.warehouse)
    if not wh.exists():
        print(f"仓库文件不存在：{wh}（先运行 shequ refresh）")
        return 2
    try:
        cfg = LakeConfig.load()
        t0 = time.perf_counter()
        done = import_warehouse(wh, cfg, progress=lambda r: print(
            f"  {r['quarter']}：{sum(r['rows'].values())} 行，{r['seconds']} 秒"))
    except LakeError as e:
        print(str(e))
        return 1
    print(f"已把 {wh} 的 {len(done)} 个季度迁入湖仓 {cfg.s3_endpoint}/{cfg.bucket}"
          f"（命名空间 {cfg.namespace}），共 {time.perf_counter() - t0:.1f} 秒")
    return 0


def cmd_lake_publish(args) -> int:
    from .periods import normalise_quarter_arg
    from .snapshot import read_only

    wh = config.warehouse_path(args.warehouse)
    try:
        q = normalise_quarter_arg(args.quarter)
    except ValueError as e:
        print(str(e))
        return 2
    if not wh.exists():
        print(f"仓库文件不存在：{wh}（先运行 shequ refresh）")
        return 2
    try:
        with read_only(wh) as con:
            r = publish_quarter(con, q)
    except LakeError as e:
        print(str(e))
        return 1
    print(f"{q} 已发布到湖仓：{sum(r['rows'].values())} 行，{r['seconds']} 秒")
    return 0


def cmd_lake_status(args) -> int:
    try:
        st = status()
    except LakeError as e:
        print(str(e))
        return 1
    if args.json:
        print(json.dumps(st, ensure_ascii=False, indent=1))
        return 0
    print(f"目录 {st['catalog']}　对象存储 {st['s3']}　命名空间 {st['namespace']}")
    for t in st["tables"]:
        if not t["exists"]:
            print(f"  {t['table']}：尚未创建")
            continue
        rows = "，".join(f"{q} {n} 行" for q, n in sorted(t["rows"].items())) or "无已发布季度"
        ahead = "（有未完成的发布：当前快照不在清单中，读者仍读清单所列快照）" if t["ahead_of_manifest"] else ""
        print(f"  {t['table']}：{t['snapshots']} 个快照，当前 {t['current_snapshot']}；{rows}{ahead}")
    return 0
