"""Issue 11, failure behaviour: a stage that cannot stay within DuckDB's memory limit fails with a message naming
the stage, the quarter and the limit (not DuckDB's English message, never the kernel's OOM killer), and what
was loaded before is untouched: the failed quarter's facts are not half-replaced."""

import duckdb
import pytest

from shequ import pipeline
from shequ.warehouse import connect

QUARTER = "2024Q1"


def _staged_warehouse(path, copies: int = 40):
    with connect(path) as con:
        pipeline.stage_dimensions(con)
        con.execute("INSERT INTO raw_file (file_id, ingest_seq, source_file, size_bytes, file_format, status, "
                    "n_cells, n_loaded, n_quarantined, ingested_at) "
                    "VALUES ('f1', 1, 'a.csv', 1, 'csv', 'loaded', 1, 1, 0, now())")
        con.execute(f"""INSERT INTO stg_value
            SELECT 'f1', k.community_key, i.indicator_code, '{QUARTER}', 'value', 1.0, i.unit, NULL, '1', NULL,
                   r.i::INT + 2, 'B', 'B' || (r.i + 2)
            FROM dim_community k, dim_indicator i, range({copies}) r(i)""")
        n_facts = pipeline.stage_facts(con, QUARTER)
        before = con.execute("SELECT count(*), sum(hash(community_key, indicator_code, value)) "
                             "FROM fact_indicator_value").fetchall()[0]
    return n_facts, before


def test_facts_out_of_memory_names_the_stage_and_the_limit(tmp_path, monkeypatch):
    wh = tmp_path / "w.duckdb"
    n_facts, before = _staged_warehouse(wh)
    assert n_facts > 0
    monkeypatch.setenv("SHEQU_DUCKDB_MEMORY_LIMIT", "16MB")
    with connect(wh) as con:
        with pytest.raises(pipeline.StageOutOfMemory) as e:
            pipeline.stage_facts(con, QUARTER)
        assert isinstance(e.value.__cause__, duckdb.OutOfMemoryException)
        msg = str(e.value)
        assert "事实表 2024Q1" in msg and "memory_limit" in msg and "SHEQU_DUCKDB_MEMORY_LIMIT" in msg
        limit = con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]
        assert f"memory_limit = {limit}，" in msg
    monkeypatch.delenv("SHEQU_DUCKDB_MEMORY_LIMIT")
    with connect(wh, read_only=True) as con:      # the facts loaded before are all there, unchanged
        assert con.execute("SELECT count(*), sum(hash(community_key, indicator_code, value)) "
                           "FROM fact_indicator_value").fetchall()[0] == before


def test_a_python_memory_error_is_reported_the_same_way(tmp_path, monkeypatch):
    from shequ import warehouse

    wh = tmp_path / "w.duckdb"
    _staged_warehouse(wh, copies=1)

    def no_memory(con, quarter):
        raise MemoryError()

    monkeypatch.setattr(warehouse, "build_aggregates", no_memory)
    with connect(wh) as con:
        with pytest.raises(pipeline.StageOutOfMemory, match="汇总 2024Q1.*numpy/polars"):
            pipeline.stage_aggregates(con, QUARTER)


def test_other_errors_pass_through(tmp_path):
    with connect(tmp_path / "w.duckdb") as con:
        with pytest.raises(duckdb.CatalogException):
            pipeline.stage_facts(con, QUARTER)     # no schema yet: not a memory problem, not rewritten
