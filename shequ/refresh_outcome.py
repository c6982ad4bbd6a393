"""Honest outcomes for `shequ refresh`, `shequ report` and `shequ export`: what a quarter lacks, in Chinese.

A refresh that loads nothing must not look like a success: a requested quarter with no file, a quarter whose
every file was rejected, and a quarter that ends with no value in the fact table are each named, and the command
exits 1. Report and export name the quarters that do have a ranking when asked for one that has none.
"""

import duckdb

from .periods import quarter_label


def quarters_without_files(con: duckdb.DuckDBPyConnection | None, requested: list[str],
                           inbox_quarters: set[str]) -> list[str]:
    """Requested quarters with no file in the inbox and none loaded from an earlier inbox."""
    loaded: set[str] = set()
    if con is not None:
        loaded = {q for (q,) in con.execute(
            "SELECT DISTINCT unnest(period_keys) FROM raw_file WHERE status = 'loaded'").fetchall()}
    return [q for q in requested if q not in inbox_quarters and q not in loaded]


def quarter_problems(con: duckdb.DuckDBPyConnection, quarters: list[str], files_by_quarter: dict[str, list[str]]
                     ) -> list[str]:
    """After a refresh: one Chinese sentence per quarter whose files were all rejected or that holds no value.

    ``files_by_quarter`` maps each quarter to the content hashes (raw_file.file_id) of the inbox files that say
    they hold it."""
    out = []
    status = dict(con.execute("SELECT file_id, status FROM raw_file").fetchall())
    values = dict(con.execute("""SELECT period_key, count(*) FROM fact_indicator_value
                                 WHERE period_key IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1""",
                              [list(quarters)]).fetchall())
    for q in quarters:
        ids = files_by_quarter.get(q, [])
        if ids and all(status.get(i) == "rejected" for i in ids):
            out.append(f"{q}（{quarter_label(q)}）的 {len(ids)} 个文件全部被拒，未入库任何数值")
        elif not values.get(q):
            out.append(f"{q}（{quarter_label(q)}）没有入库任何数值（事实表为空）")
    return out


def ranked_quarters(con: duckdb.DuckDBPyConnection, scheme: str = "default") -> list[str]:
    return [q for (q,) in con.execute("""SELECT DISTINCT period_key FROM fact_ranking
                                         WHERE scheme_id = ? AND entity_level = 'community' ORDER BY 1""",
                                      [scheme]).fetchall()]


def ranked_quarters_hint(con: duckdb.DuckDBPyConnection, scheme: str = "default") -> str:
    qs = ranked_quarters(con, scheme)
    if not qs:
        return f"仓库中没有任何季度的 {scheme} 方案评比结果（先运行 shequ refresh）"
    return f"有 {scheme} 方案评比结果的季度：{', '.join(qs)}"
