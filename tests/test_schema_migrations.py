"""Schema versioning: an old (release 2) warehouse upgrades without losing a row; a newer one is refused."""

import shutil
from pathlib import Path

import duckdb
import pytest

from shequ import migrate
from shequ.warehouse import ensure_schema

V2_DDL = Path(__file__).parent / "fixtures" / "schema_v2.sql"


def _old_warehouse(path: Path) -> None:
    con = duckdb.connect(str(path))
    con.execute(V2_DDL.read_text(encoding="utf-8"))
    con.execute("INSERT INTO meta_schema VALUES (2, now()::TIMESTAMP)")
    con.execute("INSERT INTO quarantine VALUES ('f', 'a.csv', NULL, 1, 'B', 'B2', 'x', 'h', '2024Q3', 'bad', "
                "'bad_number', '坏数', now()::TIMESTAMP)")
    con.execute("INSERT INTO fact_score VALUES ('community', 'c1', '2024Q3', 'default', '1', '自评', 'index', "
                "'root', NULL, 88.5, 1.0, NULL)")
    con.close()


def test_old_warehouse_upgrades_without_losing_rows(tmp_path):
    wh = tmp_path / "old.duckdb"
    _old_warehouse(wh)
    con = duckdb.connect(str(wh))
    ensure_schema(con)
    assert migrate.warehouse_version(con) == migrate.code_version()
    assert con.execute("SELECT count(*) FROM quarantine").fetchall()[0][0] == 1
    assert con.execute("SELECT score FROM fact_score").fetchall() == [(88.5,)]
    ensure_schema(con)  # idempotent
    assert con.execute("SELECT count(*) FROM fact_score").fetchall()[0][0] == 1
    con.close()


def test_pending_migration_applied_once_in_order(tmp_path):
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "0003_add_note.sql").write_text("ALTER TABLE fact_score ADD COLUMN note VARCHAR;")
    (d / "0004_fill_note.sql").write_text("UPDATE fact_score SET note = 'n';")
    wh = tmp_path / "old.duckdb"
    _old_warehouse(wh)
    con = duckdb.connect(str(wh))
    assert migrate.migrate(con, d) == [3, 4]
    assert migrate.migrate(con, d) == []
    assert con.execute("SELECT note, score FROM fact_score").fetchall() == [("n", 88.5)]
    con.close()


def test_failed_migration_leaves_warehouse_unchanged(tmp_path):
    d = tmp_path / "migrations"
    d.mkdir()
    (d / "0003_bad.sql").write_text("DELETE FROM fact_score; SELECT * FROM no_such_table;")
    wh = tmp_path / "old.duckdb"
    _old_warehouse(wh)
    con = duckdb.connect(str(wh))
    with pytest.raises(duckdb.Error):
        migrate.migrate(con, d)
    assert con.execute("SELECT count(*) FROM fact_score").fetchall()[0][0] == 1
    assert migrate.warehouse_version(con) == 2
    con.close()


def test_newer_schema_is_refused(tmp_path):
    wh = tmp_path / "new.duckdb"
    _old_warehouse(wh)
    con = duckdb.connect(str(wh))
    con.execute("INSERT INTO meta_schema VALUES (999, now()::TIMESTAMP)")
    with pytest.raises(migrate.SchemaTooNew, match="高于本程序所知"):
        ensure_schema(con)
    con.close()


def test_cli_migrate(tmp_path, capsys):
    from shequ.cli import main

    wh = tmp_path / "old.duckdb"
    _old_warehouse(wh)
    assert main(["migrate", "--warehouse", str(wh)]) == 0
    assert "结构版本" in capsys.readouterr().out
