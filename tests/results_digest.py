"""Order-independent, bit-exact digests of the appraisal results (fact_score, fact_ranking, fact_award).

Every row is rendered with DuckDB's VARCHAR cast (doubles print as their shortest round-trip form, so two
digests agree only when every double is bit-identical), the rows are sorted and md5-hashed per table and quarter.
"""
import duckdb

TABLES = ("fact_score", "fact_ranking", "fact_award")


def digests(warehouse) -> dict:
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        out = {}
        for table in TABLES:
            cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall()]
            row = " || '|' || ".join(f"coalesce(CAST({c} AS VARCHAR), '<NULL>')" for c in cols)
            for period, n, digest in con.execute(
                f"SELECT period_key, count(*), md5(string_agg(r, chr(10) ORDER BY r)) "
                f"FROM (SELECT period_key, {row} AS r FROM {table}) GROUP BY period_key ORDER BY period_key"
            ).fetchall():
                out[f"{table}/{period}"] = {"rows": n, "md5": digest}
        return out
    finally:
        con.close()
