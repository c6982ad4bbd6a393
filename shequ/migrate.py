"""Versioned warehouse schema: ordered migration files in models/migrations/ (NNNN_slug.sql).

The schema version of a warehouse is max(version) in meta_schema. Releases before the migration runner recorded
versions 1 and 2 there (models/schema.sql as of release 2 is the baseline), so migration files start at 0003
(ops 0003-0009; other helpers' ranges as agreed: 0010+). ``migrate(con)`` applies every file newer than the
warehouse's version in order, each in its own transaction with its version row, and refuses to touch a
warehouse whose version is newer than the newest file this code knows.
"""

import re
from pathlib import Path

import duckdb

from .config import MODELS

MIGRATIONS_DIR = MODELS / "migrations"
BASELINE_VERSION = 2          # what ensure_schema recorded before migrations existed
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class SchemaTooNew(RuntimeError):
    pass


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[int, Path]]:
    out = []
    for p in sorted(directory.glob("*.sql")) if directory.is_dir() else []:
        m = _NAME.match(p.name)
        if not m:
            raise ValueError(f"迁移文件名不合规（应为 NNNN_名称.sql）：{p}")
        out.append((int(m.group(1)), p))
    nums = [n for n, _ in out]
    if len(nums) != len(set(nums)):
        raise ValueError(f"迁移编号重复：{sorted(n for n in nums if nums.count(n) > 1)}")
    return out


def code_version(directory: Path = MIGRATIONS_DIR) -> int:
    return max([BASELINE_VERSION] + [n for n, _ in migration_files(directory)])


def warehouse_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """None for an empty warehouse (no meta_schema table yet)."""
    exists = con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta_schema'"
                         ).fetchall()[0][0]
    if not exists:
        return None
    v = con.execute("SELECT max(version) FROM meta_schema").fetchall()[0][0]
    return v


def check_not_newer(con: duckdb.DuckDBPyConnection, directory: Path = MIGRATIONS_DIR) -> None:
    v, known = warehouse_version(con), code_version(directory)
    if v is not None and v > known:
        raise SchemaTooNew(f"仓库结构版本为 {v}，高于本程序所知的最新版本 {known}：该仓库已被更新版本的 shequ 升级过。"
                           f"请升级 shequ 后再运行（不会对该仓库做任何改动）。")


def migrate(con: duckdb.DuckDBPyConnection, directory: Path = MIGRATIONS_DIR) -> list[int]:
    """Apply pending migrations; returns the versions applied. A fresh warehouse (no meta_schema) gets no
    migrations: schema.sql creates the current DDL and it is stamped with the newest version."""
    check_not_newer(con, directory)
    v = warehouse_version(con)
    files = migration_files(directory)
    if v is None:
        return []
    applied = []
    for n, path in files:
        if n <= v:
            continue
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(path.read_text(encoding="utf-8"))
            con.execute("INSERT INTO meta_schema VALUES (?, now()::TIMESTAMP)", [n])
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
        applied.append(n)
    return applied


def stamp(con: duckdb.DuckDBPyConnection, directory: Path = MIGRATIONS_DIR) -> None:
    """Record the code's version on a warehouse whose DDL is current (after schema.sql)."""
    n = code_version(directory)
    con.execute("INSERT INTO meta_schema SELECT ?, now()::TIMESTAMP WHERE NOT EXISTS "
                "(SELECT 1 FROM meta_schema WHERE version >= ?)", [n, n])


def register(sub) -> None:
    p = sub.add_parser("migrate", help="升级仓库结构：按顺序应用 models/migrations/ 中的迁移文件")
    p.add_argument("--warehouse", help="仓库文件（默认 SHEQU_WAREHOUSE 或 data/warehouse.duckdb）")
    p.set_defaults(fn=cmd_migrate)


def cmd_migrate(args) -> int:
    from . import config
    from .warehouse import connect, ensure_schema

    wh = config.warehouse_path(args.warehouse)
    try:
        with connect(wh) as con:
            before = warehouse_version(con)
            applied = ensure_schema(con)
            after = warehouse_version(con)
    except SchemaTooNew as e:
        print(str(e))
        return 1
    print(f"仓库 {wh}：结构版本 {before if before is not None else '（新建）'} -> {after}；"
          f"应用迁移 {applied or '无'}")
    return 0
