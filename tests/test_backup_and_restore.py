"""Whole-warehouse backup (Parquet + manifest) and verified, atomic restore."""

import hashlib
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from shequ import backup as bk
from shequ.cli import main


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def saved(built, tmp_path_factory) -> dict:
    src = tmp_path_factory.mktemp("bk") / "warehouse.duckdb"
    shutil.copy(built["warehouse"], src)
    dest = src.parent / "backup1"
    assert main(["backup", str(dest), "--warehouse", str(src)]) == 0
    return {"warehouse": src, "backup": dest, "manifest": json.loads((dest / "manifest.json").read_text("utf-8"))}


def test_backup_round_trip_every_table_equal(saved, tmp_path):
    m = saved["manifest"]
    con = duckdb.connect(str(saved["warehouse"]), read_only=True)
    tables = bk.base_tables(con)
    expected = {t: bk.table_checksum(con, t) for t in tables}
    con.close()
    assert set(m["tables"]) == set(tables)
    assert any(n == 0 for n, _ in expected.values()), "sample should include empty tables"
    assert expected["fact_indicator_value"][0] > 0
    assert m["schema_version"] is not None and m["shequ_version"] and m["created_at"]
    for t, info in m["tables"].items():
        assert (saved["backup"] / info["file"]).is_file()
        assert (info["rows"], info["checksum"]) == expected[t]
        assert info["columns"] and all(c["name"] and c["type"] for c in info["columns"])
    assert not saved["backup"].with_name("backup1.tmp").exists()

    target = tmp_path / "restored.duckdb"
    assert main(["restore", str(saved["backup"]), "--warehouse", str(target)]) == 0
    con = duckdb.connect(str(target), read_only=True)
    got = {t: bk.table_checksum(con, t) for t in bk.base_tables(con)}
    # real DDL: the restored tables keep their foreign keys (the fact tables have none since issue 11: suites)
    fks = con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'review_adjustment' "
                      "AND constraint_type IN ('FOREIGN KEY', 'PRIMARY KEY')").fetchall()[0][0]
    con.close()
    assert got == expected
    assert fks >= 2
    assert not target.with_name("restored.duckdb.tmp").exists()


def test_backup_refuses_existing_path(saved, capsys):
    before = sorted(p.name for p in saved["backup"].iterdir())
    assert main(["backup", str(saved["backup"]), "--warehouse", str(saved["warehouse"])]) == 1
    assert "已存在" in capsys.readouterr().out
    assert sorted(p.name for p in saved["backup"].iterdir()) == before


def _existing_target(tmp_path: Path, saved) -> tuple[Path, str]:
    target = tmp_path / "target.duckdb"
    con = duckdb.connect(str(target))
    con.execute("CREATE TABLE keep_me AS SELECT 42 AS x")
    con.close()
    return target, _digest(target)


def test_corrupt_parquet_leaves_target_untouched(saved, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(saved["backup"], bad)
    f = bad / saved["manifest"]["tables"]["fact_indicator_value"]["file"]
    con = duckdb.connect()
    # a valid Parquet file with one value changed: only the checksum can notice
    con.execute(f"COPY (SELECT * REPLACE (value + 1 AS value) FROM read_parquet('{f}')) TO '{f}.new' "
                "(FORMAT parquet, COMPRESSION zstd)")
    con.close()
    Path(f"{f}.new").replace(f)
    target, digest = _existing_target(tmp_path, saved)
    assert main(["restore", str(bad), "--warehouse", str(target)]) == 1
    out = capsys.readouterr().out
    assert "fact_indicator_value" in out and "校验和不符" in out
    assert _digest(target) == digest
    assert not target.with_name("target.duckdb.tmp").exists()


def test_manifest_row_count_mismatch_and_missing_file_refused(saved, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(saved["backup"], bad)
    m = json.loads((bad / "manifest.json").read_text("utf-8"))
    m["tables"]["dim_community"]["rows"] += 1
    (bad / "manifest.json").write_text(json.dumps(m, ensure_ascii=False), encoding="utf-8")
    target, digest = _existing_target(tmp_path, saved)
    assert main(["restore", str(bad), "--warehouse", str(target)]) == 1
    out = capsys.readouterr().out
    assert "dim_community" in out and "行数不符" in out
    assert _digest(target) == digest

    (bad / m["tables"]["quarantine"]["file"]).unlink()
    assert main(["restore", str(bad), "--warehouse", str(target)]) == 1
    assert "quarantine" in capsys.readouterr().out
    assert _digest(target) == digest


def test_newer_schema_version_refused(saved, tmp_path, capsys):
    from shequ import migrate

    bad = tmp_path / "newer"
    shutil.copytree(saved["backup"], bad)
    m = json.loads((bad / "manifest.json").read_text("utf-8"))
    m["schema_version"] = migrate.code_version() + 1
    (bad / "manifest.json").write_text(json.dumps(m, ensure_ascii=False), encoding="utf-8")
    target, digest = _existing_target(tmp_path, saved)
    assert main(["restore", str(bad), "--warehouse", str(target)]) == 1
    assert "请升级 shequ" in capsys.readouterr().out
    assert _digest(target) == digest


def test_successful_restore_replaces_existing_warehouse(saved, tmp_path):
    target, digest = _existing_target(tmp_path, saved)
    assert main(["restore", str(saved["backup"]), "--warehouse", str(target)]) == 0
    assert _digest(target) != digest
    con = duckdb.connect(str(target), read_only=True)
    names = set(bk.base_tables(con))
    n = con.execute("SELECT count(*) FROM dim_community").fetchall()[0][0]
    con.close()
    assert "keep_me" not in names and names == set(saved["manifest"]["tables"])
    assert n == saved["manifest"]["tables"]["dim_community"]["rows"]
