"""`shequ refresh` refreshes consecutive quarters in one Dagster run over the partition range (one start-up,
one schema check, one dimension load); every table must end exactly as quarter-by-quarter runs leave it. A
range run that fails or is blocked falls back to one run per quarter, so each quarter stays all or nothing on
its own, exactly as before."""
import duckdb
import pytest
from dagster import JobDefinition

import shequ.pipeline
from conftest import QUARTERS, run_quarter

# columns that differ between any two refreshes (clock, run ids, durations)
VOLATILE = ("_at", "run_id", "seconds", "timestamp", "created", "updated", "ingested")


def table_rows(warehouse) -> dict[str, list]:
    """Every row of every table, volatile columns left out, sorted: two warehouses are equal when these are."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        out = {}
        for (table,) in con.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall():
            cols = [c for c, t in con.execute("SELECT column_name, data_type FROM duckdb_columns() "
                                              "WHERE table_name = ?", [table]).fetchall()
                    if "TIMESTAMP" not in t and not any(v in c for v in VOLATILE)]
            if cols:
                sel = ", ".join(f'CAST("{c}" AS VARCHAR)' for c in cols)
                out[table] = sorted(con.execute(f"SELECT {sel} FROM {table}").fetchall(), key=repr)
        return out
    finally:
        con.close()


@pytest.fixture
def runs(monkeypatch):
    """The Dagster runs `shequ refresh` starts: their quarter tags, in order."""
    seen = []
    original = JobDefinition.execute_in_process

    def spy(self, *args, **kwargs):
        seen.append(kwargs.get("tags", {}).get("shequ/quarter"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(JobDefinition, "execute_in_process", spy)
    monkeypatch.setenv("SHEQU_NO_DATADOCS", "1")
    return seen


def test_consecutive_quarters_in_one_run_leave_the_tables_of_per_quarter_runs(built, runs, tmp_path):
    from shequ.cli import main

    wh = tmp_path / "warehouse.duckdb"
    assert main(["refresh", "--inbox", str(built["inbox"]), "--warehouse", str(wh)]) == 0
    assert runs == [f"{QUARTERS[0]}:{QUARTERS[-1]}"]          # one run for the three quarters
    got, expected = table_rows(wh), table_rows(built["warehouse"])
    assert set(got) == set(expected)
    for table in expected:
        assert got[table] == expected[table], table
    assert len(got["fact_indicator_value"]) > 0 and len(got["fact_ranking"]) > 0


def test_a_failed_quarter_in_a_range_falls_back_to_one_run_per_quarter(built, runs, tmp_path, monkeypatch):
    from shequ import cli
    from shequ.cli import main

    stage_facts = shequ.pipeline.stage_facts

    def facts_fail_in_2024q1(con, quarter):
        if quarter == "2024Q1":
            raise RuntimeError("模拟：2024Q1 的事实表出错 [/red][bold]")   # text that rich would read as markup
        return stage_facts(con, quarter)

    monkeypatch.setattr(shequ.pipeline, "stage_facts", facts_fail_in_2024q1)
    wh = tmp_path / "warehouse.duckdb"
    with cli.console.capture() as out:
        assert main(["refresh", "--inbox", str(built["inbox"]), "--warehouse", str(wh)]) == 1
    assert runs == [f"{QUARTERS[0]}:{QUARTERS[-1]}", *QUARTERS]   # the range, then each quarter on its own
    printed = out.get()
    assert "改为逐季度刷新" in printed
    assert "2024Q1 运行失败" in printed and "[/red][bold]" in printed   # the message shown as text, not markup
    # the same failure, quarter by quarter as before: the same tables
    ref = tmp_path / "per_quarter.duckdb"
    for q in QUARTERS:
        run_quarter(ref, built["inbox"], q)
    got, expected = table_rows(wh), table_rows(ref)
    for table in expected:
        assert got[table] == expected[table], table
    con = duckdb.connect(str(wh), read_only=True)
    try:
        periods = {r[0] for r in con.execute("SELECT DISTINCT period_key FROM fact_ranking").fetchall()}
    finally:
        con.close()
    assert periods == set(QUARTERS) - {"2024Q1"}      # the other quarters were refreshed


def test_quarters_with_a_gap_run_as_separate_ranges(built, runs, tmp_path):
    import shutil

    from shequ.cli import main

    inbox = tmp_path / "inbox"
    for q in (QUARTERS[0], QUARTERS[2]):                 # 2023Q4 and 2024Q2, not 2024Q1
        shutil.copytree(built["inbox"] / q, inbox / q)
    assert main(["refresh", "--inbox", str(inbox), "--warehouse", str(tmp_path / "w.duckdb")]) == 0
    assert runs == [QUARTERS[0], QUARTERS[2]]
