"""Whole-warehouse backup and restore: every base table as Parquet (zstd) plus manifest.json.

Checksum (per table): ``count(*)`` and ``sum(hash(row))`` computed in DuckDB, where ``row`` is the table alias (the
whole row as a struct) and the sum is taken as HUGEINT (no wrap-around). A sum is independent of row order and, unlike
``bit_xor``, does not cancel duplicate rows. It is computed on the typed table (in the backup: the source warehouse;
in the restore: the table re-created by models/schema.sql and filled from Parquet), so a value changed in the
Parquet file, a missing/extra row, or a type that did not survive the round trip shows up as a mismatch.

Backup writes into PATH.tmp and renames it to PATH only when complete; an existing PATH is never overwritten.
Restore builds the warehouse in W.tmp (fresh DDL from models/schema.sql via ensure_schema, then INSERT from Parquet
in foreign-key order), verifies every table, and only then atomically replaces W (os.replace). On any mismatch
W is untouched and the error names the table and what differed.
"""

import datetime as dt
import json
import os
import shutil
from pathlib import Path

import duckdb

MANIFEST = "manifest.json"
FORMAT = 1


class BackupError(RuntimeError):
    pass


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def base_tables(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() AND schema_name = 'main' "
        "AND NOT temporary ORDER BY table_name").fetchall()]


def table_checksum(con: duckdb.DuckDBPyConnection, table: str) -> tuple[int, str]:
    n, s = con.execute(f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0)::VARCHAR FROM {_q(table)} t"
                       ).fetchall()[0]
    return int(n), s


def fk_order(con: duckdb.DuckDBPyConnection, tables: list[str]) -> list[str]:
    """Tables ordered so that every referenced table comes before the tables referencing it."""
    deps = {t: set() for t in tables}
    for t, ref in con.execute("SELECT table_name, referenced_table FROM duckdb_constraints() "
                              "WHERE constraint_type = 'FOREIGN KEY'").fetchall():
        if t in deps and ref in deps and ref != t:
            deps[t].add(ref)
    out, done = [], set()
    while deps:
        ready = sorted(t for t, d in deps.items() if d <= done)
        if not ready:
            raise BackupError(f"外键存在循环依赖，无法确定恢复顺序：{sorted(deps)}")
        for t in ready:
            out.append(t)
            done.add(t)
            del deps[t]
    return out


def backup(warehouse: Path, dest: Path) -> dict:
    from . import __version__, migrate

    warehouse, dest = Path(warehouse), Path(dest)
    if dest.exists():
        raise BackupError(f"备份目录 {dest} 已存在：拒绝覆盖，请换一个新路径。")
    if not warehouse.exists():
        raise BackupError(f"仓库文件 {warehouse} 不存在。")
    tmp = dest.with_name(dest.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        con = duckdb.connect(str(warehouse), read_only=True)
        try:
            version = migrate.warehouse_version(con)
            tables = {}
            # one read transaction: all files and checksums come from the same snapshot
            con.execute("BEGIN TRANSACTION")
            for t in base_tables(con):
                f = f"{t}.parquet"
                con.execute(f"COPY {_q(t)} TO {_lit(tmp / f)} (FORMAT parquet, COMPRESSION zstd)")
                n, s = table_checksum(con, t)
                cols = con.execute("SELECT column_name, data_type FROM duckdb_columns() WHERE table_name = ? "
                                   "AND schema_name = 'main' ORDER BY column_index", [t]).fetchall()
                tables[t] = {"file": f, "rows": n, "checksum": s,
                             "columns": [{"name": c, "type": ty} for c, ty in cols]}
            con.execute("COMMIT")
        finally:
            con.close()
        manifest = {"format": FORMAT, "schema_version": version, "shequ_version": __version__,
                    "duckdb_version": duckdb.__version__,
                    "created_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                    "source": str(warehouse),
                    "checksum": "count(*) 与 sum(hash(整行))（HUGEINT），与行序无关",
                    "tables": tables}
        (tmp / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
        if dest.exists():
            raise BackupError(f"备份目录 {dest} 已存在：拒绝覆盖，请换一个新路径。")
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def restore(src: Path, warehouse: Path) -> dict:
    from . import migrate
    from .warehouse import ensure_schema

    src, warehouse = Path(src), Path(warehouse)
    mf = src / MANIFEST
    if not mf.is_file():
        raise BackupError(f"备份 {src} 中缺少 {MANIFEST}。")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
        tables = manifest["tables"]
        version = manifest["schema_version"]
    except (ValueError, KeyError, TypeError) as e:
        raise BackupError(f"备份清单 {mf} 无法解析：{e}") from e
    known = migrate.code_version()
    if version is not None and version > known:
        raise BackupError(f"备份的仓库结构版本为 {version}，高于本程序所知的最新版本 {known}："
                          f"请升级 shequ 后再恢复（未改动 {warehouse}）。")
    if version is not None and version < known:
        # schema.sql only describes the current DDL; an older backup must be restored by the matching release
        # and then upgraded with `shequ migrate`, otherwise columns changed by migrations would not line up.
        raise BackupError(f"备份的仓库结构版本为 {version}，低于本程序的版本 {known}：请用对应版本的 shequ 恢复，"
                          f"再运行 shequ migrate 升级（未改动 {warehouse}）。")
    for t, info in tables.items():
        if not (src / info["file"]).is_file():
            raise BackupError(f"表 {t}：备份文件 {info['file']} 缺失（未改动 {warehouse}）。")

    tmp = warehouse.with_name(warehouse.name + ".tmp")
    for p in (tmp, tmp.with_name(tmp.name + ".wal")):
        if p.exists():
            p.unlink()
    warehouse.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(tmp))
        try:
            ensure_schema(con)
            have = set(base_tables(con))
            extra = sorted(set(tables) - have)
            if extra:
                raise BackupError(f"备份中的表 {extra} 不在本程序的仓库结构（models/schema.sql）中"
                                  f"（未改动 {warehouse}）。")
            con.execute("BEGIN TRANSACTION")
            con.execute("DELETE FROM meta_schema")  # the stamp of the fresh DDL; the backup's rows replace it
            for t in fk_order(con, list(tables)):
                info = tables[t]
                path = src / info["file"]
                try:
                    con.execute(f"INSERT INTO {_q(t)} BY NAME SELECT * FROM read_parquet({_lit(path)})")
                except duckdb.Error as e:
                    raise BackupError(f"表 {t}：无法从 {info['file']} 载入：{e}（未改动 {warehouse}）") from e
                n, s = table_checksum(con, t)
                if n != info["rows"]:
                    raise BackupError(f"表 {t}：行数不符，清单记录 {info['rows']} 行，文件载入 {n} 行"
                                      f"（未改动 {warehouse}）。")
                if s != info["checksum"]:
                    raise BackupError(f"表 {t}：校验和不符（清单 {info['checksum']}，载入后 {s}），"
                                      f"数据已被改动或损坏（未改动 {warehouse}）。")
            con.execute("COMMIT")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        os.replace(tmp, warehouse)
        wal = warehouse.with_name(warehouse.name + ".wal")
        if wal.exists():  # a stale WAL of the replaced file must not be replayed onto the restored one
            wal.unlink()
    except BaseException:
        for p in (tmp, tmp.with_name(tmp.name + ".wal")):
            if p.exists():
                p.unlink()
        raise
    return manifest


def register(sub) -> None:
    p = sub.add_parser("backup", help="备份整个仓库：每张表一个 Parquet（zstd）文件加 manifest.json，写入新目录")
    p.add_argument("path", help="备份目录（必须尚不存在）")
    p.add_argument("--warehouse", help="仓库文件（默认 SHEQU_WAREHOUSE 或 data/warehouse.duckdb）")
    p.set_defaults(fn=cmd_backup)
    r = sub.add_parser("restore", help="从备份目录恢复仓库：逐表核对行数与校验和，全部通过才替换仓库文件")
    r.add_argument("path", help="备份目录")
    r.add_argument("--warehouse", help="要写入的仓库文件（默认 SHEQU_WAREHOUSE 或 data/warehouse.duckdb）")
    r.set_defaults(fn=cmd_restore)


def cmd_backup(args) -> int:
    from . import config

    wh = config.warehouse_path(args.warehouse)
    try:
        m = backup(wh, Path(args.path))
    except (BackupError, RuntimeError, duckdb.Error) as e:
        print(f"备份失败：{e}")
        return 1
    rows = sum(t["rows"] for t in m["tables"].values())
    print(f"已备份 {wh} -> {args.path}：{len(m['tables'])} 张表，共 {rows} 行，结构版本 {m['schema_version']}")
    return 0


def cmd_restore(args) -> int:
    from . import config

    wh = config.warehouse_path(args.warehouse)
    try:
        m = restore(Path(args.path), wh)
    except (BackupError, RuntimeError, duckdb.Error) as e:
        print(f"恢复失败：{e}")
        return 1
    print(f"已从 {args.path} 恢复仓库 {wh}：{len(m['tables'])} 张表全部核对一致，结构版本 {m['schema_version']}")
    return 0
