"""Small generated inboxes ingested into a copy of the dimension-only warehouse (conftest ``template``)."""

import shutil
from pathlib import Path

from shequ import pipeline
from shequ.warehouse import connect, frame

QUARTER = "2024Q3"
PREFIX = "建邺区_2024Q3_"


def ingest_files(tmp_path: Path, template: Path, files: dict[str, bytes], quarter: str = QUARTER,
                 aggregate: bool = False) -> dict:
    """Write ``files`` (name -> bytes) into a fresh inbox, run staging and facts (and aggregates when asked);
    return summaries, raw_file, stg_value, quarantine and facts frames."""
    db = tmp_path / "w.duckdb"
    shutil.copy(template, db)
    inbox = tmp_path / "inbox"
    inbox.mkdir(exist_ok=True)
    for name, data in files.items():
        p = inbox / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    with connect(db) as con:
        summaries = pipeline.stage_staged(con, inbox, quarter)
        pipeline.stage_facts(con, quarter)
        if aggregate:
            pipeline.stage_aggregates(con, quarter)
        out = {"summaries": summaries, "inbox": inbox, "db": db,
               "raw_file": frame(con, "SELECT * FROM raw_file"),
               "stg": frame(con, "SELECT s.*, c.name FROM stg_value s JOIN dim_community c USING (community_key)"),
               "quarantine": frame(con, "SELECT * FROM quarantine"),
               "facts": frame(con, """SELECT c.name, f.* FROM fact_indicator_value f
                                      JOIN dim_community c USING (community_key)""")}
    return out


def csv_bytes(rows: list[list[str]]) -> bytes:
    return "\r\n".join(",".join(r) for r in rows).encode("utf-8")
