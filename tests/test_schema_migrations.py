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


def test_0006_rebuilds_fact_tables_without_key_indexes(tmp_path):
    """Issue 11: an old warehouse's fact tables lose their PK/FK (ART) indexes, keep every row and NOT NULL, and
    hold the rows in (period, indicator, community) order; the key is then the suites' job."""
    wh = tmp_path / "old.duckdb"
    _old_warehouse(wh)
    con = duckdb.connect(str(wh))
    from shequ.warehouse import load_dimensions
    load_dimensions(con)            # the dimension tables are unchanged since release 2
    k1, k2 = (r[0] for r in con.execute("SELECT community_key FROM dim_community ORDER BY community_key LIMIT 2"
                                        ).fetchall())
    x, b = (r[0] for r in con.execute("SELECT indicator_code FROM dim_indicator ORDER BY indicator_code DESC "
                                      "LIMIT 2").fetchall())
    for k, ind, q in [(k2, x, "2024Q3"), (k1, x, "2024Q3"), (k1, b, "2024Q3"), (k2, b, "2024Q2")]:
        con.execute("INSERT INTO fact_indicator_value (community_key, indicator_code, period_key, value, unit, "
                    "source_file, file_id, n_versions, loaded_at) VALUES (?, ?, ?, 1.5, '', 'f.csv', 'f', 1, "
                    "now()::TIMESTAMP)", [k, ind, q])
    assert con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = 'fact_indicator_value' "
                       "AND constraint_type IN ('PRIMARY KEY', 'FOREIGN KEY')").fetchall()[0][0] == 4
    ensure_schema(con)
    assert migrate.warehouse_version(con) >= 6
    for t in ("fact_indicator_value", "agg_indicator_value", "fact_ranking", "fact_award"):
        assert con.execute("SELECT count(*) FROM duckdb_constraints() WHERE table_name = ? AND constraint_type "
                           "IN ('PRIMARY KEY', 'FOREIGN KEY', 'UNIQUE')", [t]).fetchall()[0][0] == 0, t
    assert con.execute("SELECT period_key, indicator_code, community_key FROM fact_indicator_value").fetchall() == [
        ("2024Q2", b, k2), ("2024Q3", b, k1), ("2024Q3", x, k1), ("2024Q3", x, k2)]
    with pytest.raises(duckdb.ConstraintException):      # NOT NULL survives the rebuild
        con.execute("INSERT INTO fact_indicator_value (community_key, indicator_code, period_key, value) "
                    "VALUES (?, ?, '2024Q1', NULL)", [k1, x])
    # a duplicate key is no longer refused by DDL: the critical suite catches it
    from shequ.quality import run_suite
    con.execute("INSERT INTO fact_indicator_value SELECT * FROM fact_indicator_value WHERE community_key = ? "
                "AND indicator_code = ? AND period_key = '2024Q3'", [k1, x])
    failed = [r for r in run_suite(con, "fact_indicator_value", "2024Q3") if not r.success and r.severity == "critical"]
    assert any("compound" in r.expectation for r in failed)
    # and a reference to a community that is not in dim_community (no FK any more) is caught by the suite too
    con.execute("INSERT INTO fact_indicator_value (community_key, indicator_code, period_key, value, unit, "
                "source_file, file_id, n_versions, loaded_at) VALUES (987654321, ?, '2024Q3', 1, '', 'f.csv', 'f', "
                "1, now()::TIMESTAMP)", [b])
    failed = [r for r in run_suite(con, "fact_indicator_value", "2024Q3") if not r.success and r.severity == "critical"]
    assert any("引用完整性" in r.expectation and r.unexpected == 1 for r in failed)
    assert migrate.migrate(con) == []
    con.close()
