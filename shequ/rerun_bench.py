"""`shequ bench --rerun`: what re-running one quarter's facts costs with many quarters of history loaded, against
the same re-run in a warehouse holding only that quarter (issue 11 item 4: at most 1.2 times).

The facts are synthetic, generated in DuckDB with every column of fact_indicator_value (N communities x 70
indicators a quarter), and written the way build_facts writes them (shequ.warehouse.replace_rows, period-first
order). The two warehouses are re-run alternately so machine load hits both alike; the figure is the median of
the repeats, in wall seconds and in CPU seconds of this process (DuckDB's threads included).
"""

import json
import os
import statistics
import time
from pathlib import Path

import duckdb
from rich.console import Console
from rich.table import Table

from .config import DATA_DIR
from .periods import quarters_between
from .warehouse import FACT_ORDER, connect, ensure_schema, replace_rows

N_INDICATORS = 70


def synthetic_facts(n_communities: int, n_indicators: int = N_INDICATORS) -> str:
    """One quarter ($period_key) of synthetic facts, every column of fact_indicator_value, values varying by
    quarter; 250 communities to a source file."""
    return f"""
SELECT c.i AS community_key, printf('ind_%02d', k.j) AS indicator_code, $period_key AS period_key,
       round((hash(c.i, k.j, $period_key) % 10000) / 100.0, 2) AS value, NULL::DOUBLE AS reported_value,
       NULL::DOUBLE AS numerator, NULL::DOUBLE AS denominator, '%' AS unit, NULL AS qualifier,
       printf('inbox/%s/district_%05d.csv', $period_key, c.i // 250) AS source_file, NULL AS source_sheet,
       (c.i % 250) + 2 AS source_row, printf('col_%02d', k.j) AS source_column, NULL AS source_cell,
       printf('%064d', c.i // 250) AS file_id, 1 AS n_versions, TIMESTAMP '2026-12-01 00:00:00' AS loaded_at
FROM range({int(n_communities)}) c(i) CROSS JOIN range({int(n_indicators)}) k(j)
"""


def rerun(con: duckdb.DuckDBPyConnection, sql: str, quarter: str) -> tuple[float, float, int]:
    """Re-run one quarter's facts: (wall seconds, CPU seconds of this process, rows written)."""
    t0, c0 = time.perf_counter(), time.process_time()
    n = replace_rows(con, "fact_indicator_value", sql, {"period_key": quarter}, order_by=FACT_ORDER)
    return time.perf_counter() - t0, time.process_time() - c0, n


def build_pair(bare: duckdb.DuckDBPyConnection, full: duckdb.DuckDBPyConnection, sql: str, quarter: str,
               history: list[str]) -> None:
    """``bare`` holds only ``quarter``; ``full`` holds every quarter of ``history`` (which includes it)."""
    for con in (bare, full):
        ensure_schema(con)
    for q in history:
        replace_rows(full, "fact_indicator_value", sql, {"period_key": q}, order_by=FACT_ORDER)
    replace_rows(bare, "fact_indicator_value", sql, {"period_key": quarter}, order_by=FACT_ORDER)
    for con in (bare, full):
        con.execute("CHECKPOINT")


def history_quarters(n: int) -> list[str]:
    """``n`` consecutive quarters ending 2024Q4, which include the re-run quarter 2024Q3 (n >= 2; fewer: just it)."""
    return quarters_between("2000Q1", "2024Q4")[-n:] if n >= 2 else ["2024Q3"]


def run_rerun_bench(n_communities: int, n_history: int = 40, repeats: int = 3, out: Path | None = None,
                    console: Console | None = None, keep: bool = False) -> dict:
    console = console or Console()
    out = out or DATA_DIR / "bench" / f"rerun-{n_communities}"
    out.mkdir(parents=True, exist_ok=True)
    quarter = "2024Q3"
    history = history_quarters(n_history)
    sql = synthetic_facts(n_communities)
    paths = {"bare": out / "rerun_bare.duckdb", "full": out / "rerun_history.duckdb"}
    for p in paths.values():
        for f in (p, p.with_name(p.name + ".wal")):
            f.unlink(missing_ok=True)
    load_start = list(os.getloadavg())
    with connect(paths["bare"]) as bare, connect(paths["full"]) as full:
        t0 = time.perf_counter()
        build_pair(bare, full, sql, quarter, history)
        build_seconds = time.perf_counter() - t0
        runs = {"bare": [], "full": []}
        for _ in range(repeats):        # alternate, so machine load hits both alike
            for name, con in (("bare", bare), ("full", full)):
                runs[name].append(rerun(con, sql, quarter))
        rows = {name: con.execute("SELECT count(*) FROM fact_indicator_value").fetchall()[0][0]
                for name, con in (("bare", bare), ("full", full))}
    sizes = {name: p.stat().st_size for name, p in paths.items()}
    if not keep:
        for p in paths.values():
            p.unlink(missing_ok=True)
    med = {name: {"wall": statistics.median(r[0] for r in rs), "cpu": statistics.median(r[1] for r in rs)}
           for name, rs in runs.items()}
    res = {
        "communities": n_communities, "indicators": N_INDICATORS, "history_quarters": len(history),
        "rows_per_quarter": runs["full"][0][2], "rows_bare": rows["bare"], "rows_history": rows["full"],
        "repeats": repeats, "build_seconds": build_seconds,
        "bare": med["bare"], "history": med["full"],
        "ratio_wall": med["full"]["wall"] / med["bare"]["wall"] if med["bare"]["wall"] else None,
        "ratio_cpu": med["full"]["cpu"] / med["bare"]["cpu"] if med["bare"]["cpu"] else None,
        "file_bytes": sizes, "runs": {k: [list(r) for r in v] for k, v in runs.items()},
        "load_start": load_start, "load_end": list(os.getloadavg()),
    }
    t = Table(title=f"重跑一个季度的事实：{n_communities:,} 个社区 × {N_INDICATORS} 个指标，"
                    f"有 {len(history)} 个季度历史 vs 只有该季度（{repeats} 次交替取中位数）")
    for c in ("仓库", "总行数", "墙钟秒", "CPU 秒"):
        t.add_column(c, justify="right" if c != "仓库" else "left")
    t.add_row("只有该季度", f"{rows['bare']:,}", f"{med['bare']['wall']:.2f}", f"{med['bare']['cpu']:.2f}")
    t.add_row(f"{len(history)} 个季度历史", f"{rows['full']:,}", f"{med['full']['wall']:.2f}",
              f"{med['full']['cpu']:.2f}")
    console.print(t)
    console.print(f"倍数：墙钟 {res['ratio_wall']:.2f}，CPU {res['ratio_cpu']:.2f}（目标 ≤ 1.2）；"
                  f"建库 {build_seconds:.0f} 秒；负载 {load_start[0]:.1f} → {res['load_end'][0]:.1f}")
    (out / "rerun_result.json").write_text(json.dumps(res, ensure_ascii=False, indent=2), encoding="utf-8")
    return res
