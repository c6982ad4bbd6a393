"""The staging tables of a warehouse as sorted rows (timestamps left out), to compare two stagings row for row."""
from pathlib import Path

import duckdb

TIMESTAMPS = {"ingested_at", "loaded_at", "quarantined_at", "staged_at"}


def staging_rows(db: Path) -> dict[str, list]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        out = {}
        for table, order in (("raw_file", "ingest_seq"), ("stg_value", "file_id, source_sheet, source_row, "
                                                                        "source_column, indicator_code, role"),
                             ("quarantine", "file_id, source_sheet, source_row, source_column, reason_code")):
            cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall() if r[0] not in TIMESTAMPS]
            out[table] = con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}, "
                                     f"{', '.join(cols)}").fetchall()
        return out
    finally:
        con.close()
