"""`shequ bench`: time each refresh stage on a synthetic national-scale set, with values/s and peak memory.

The stages are the same functions the Dagster assets call (shequ.pipeline). Peak memory is the resident set
size of the process and its children, sampled every 10 ms during the stage (DuckDB and polars allocate outside
Python, so tracemalloc would miss most of it); "peak" is the highest RSS seen while the stage ran.
"""

import json
import os
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import duckdb
import psutil
from rich.console import Console
from rich.table import Table

from . import pipeline
from .catalogue import load_catalogue
from .config import DATA_DIR
from .periods import quarters_between
from .sample import write_synthetic_set
from .warehouse import connect, duckdb_threads, memory_limit


@dataclass
class StageTime:
    stage: str
    seconds: float
    values: int
    peak_rss_mb: float
    rows: int = 0             # rows the stage wrote (0 for stages that only read)

    @property
    def rate(self) -> float:
        return self.values / self.seconds if self.seconds > 0 else float("inf")


def tree_rss(proc: psutil.Process) -> int:
    """Resident memory of a process and all its children (a stage may start worker processes)."""
    total = proc.memory_info().rss
    for c in proc.children(recursive=True):
        try:
            total += c.memory_info().rss
        except psutil.Error:        # the child ended between listing and reading
            pass
    return total


@contextmanager
def measure(stage: str, out: list):
    proc = psutil.Process()
    peak = [tree_rss(proc)]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], tree_rss(proc))
            stop.wait(0.01)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    start = time.perf_counter()
    holder = {}
    try:
        yield holder
    except duckdb.OutOfMemoryException as e:
        raise RuntimeError(f"阶段「{stage}」超出 DuckDB 内存上限 {memory_limit()}（可设 SHEQU_DUCKDB_MEMORY_LIMIT）："
                           f"{e}") from e
    finally:
        elapsed = time.perf_counter() - start
        stop.set()
        t.join()
        out.append(StageTime(stage, elapsed, int(holder.get("values", 0)), peak[0] / 2**20,
                             int(holder.get("rows", 0))))


# The yardstick (issue 11): what bare DuckDB needs for the core of the appraisal on the same facts. Min-max per
# indicator (lower_better turned round), the mean per category, the index as the mean of the categories, and
# competition ranks within street, district and city by window functions, materialised as a table.
YARDSTICK = """
CREATE OR REPLACE TEMP TABLE _yardstick AS
WITH f AS (
    SELECT f.community_key, f.indicator_code, f.value, i.category, i.direction = 'lower_better' AS lower
    FROM fact_indicator_value f JOIN dim_indicator i USING (indicator_code)
    WHERE f.period_key = $q AND i.direction <> 'context'
), mm AS (
    SELECT indicator_code, min(value) AS lo, max(value) AS hi FROM f GROUP BY indicator_code
), cat AS (
    SELECT f.community_key, f.category,
           avg(CASE WHEN mm.hi > mm.lo THEN 100 * (CASE WHEN f.lower THEN mm.hi - f.value ELSE f.value - mm.lo END)
                                            / (mm.hi - mm.lo) ELSE 100 END) AS score
    FROM f JOIN mm USING (indicator_code) GROUP BY f.community_key, f.category
), idx AS (
    SELECT community_key, avg(score) AS score FROM cat GROUP BY community_key
)
SELECT i.community_key, i.score,
       rank() OVER (PARTITION BY c.street_code ORDER BY i.score DESC) AS rank_street,
       rank() OVER (PARTITION BY c.district_code ORDER BY i.score DESC) AS rank_district,
       rank() OVER (PARTITION BY c.city_code ORDER BY i.score DESC) AS rank_city
FROM idx i JOIN dim_community c USING (community_key)
"""


def yardstick(con, q: str) -> int:
    con.execute(YARDSTICK, {"q": q})
    n = con.execute("SELECT count(*) FROM _yardstick").fetchall()[0][0]
    con.execute("DROP TABLE _yardstick")
    return n


def fact_bytes_per_row(con, out_dir: Path) -> float:
    """Bytes on disk per fact row: the fact table alone, copied in write order into a fresh DuckDB file."""
    from .warehouse import FACT_ORDER

    path = out_dir / "fact_size.duckdb"
    path.unlink(missing_ok=True)
    con.execute(f"ATTACH '{path}' AS _fs")
    try:
        con.execute("CREATE TABLE _fs.fact_indicator_value AS SELECT * FROM fact_indicator_value "
                    f"ORDER BY {FACT_ORDER}")
        n = con.execute("SELECT count(*) FROM _fs.fact_indicator_value").fetchall()[0][0]
    finally:
        con.execute("DETACH _fs")
    size = path.stat().st_size
    path.unlink(missing_ok=True)
    return size / n if n else 0.0


def _count(con, sql: str, params: list) -> int:
    return con.execute(sql, params).fetchall()[0][0]


def run_bench(n_communities: int, n_quarters: int = 1, out: Path | None = None, console: Console | None = None,
              keep: bool = False, draws: int | None = None, json_path: Path | None = None) -> int:
    """One run: generate the synthetic set (timed apart, not in the total), then the whole refresh of each
    quarter as the Dagster job runs it (the same shequ.pipeline functions), then the bare-DuckDB yardstick on the
    same facts. Writes bench_result.json in ``out`` (and ``json_path`` if given)."""
    from . import snapshot
    from .appraisal import store

    console = console or Console()
    out = out or DATA_DIR / "bench" / str(n_communities)
    quarters = quarters_between("2024Q1", "2024Q4")[:n_quarters] if n_quarters <= 4 else \
        quarters_between("2023Q1", "2030Q4")[:n_quarters]
    load_start = list(os.getloadavg())
    times: list[StageTime] = []
    gen: list[StageTime] = []
    shapes: list[StageTime] = []   # read rate per file shape, inside the staging stage
    marker = out / f".complete-{'-'.join(quarters)}"
    if not marker.exists():
        if out.exists():
            shutil.rmtree(out)
        with measure("generate (write files)", gen) as h:
            info = write_synthetic_set(out, n_communities, quarters)
            h["values"] = info["values"]
        marker.touch()
        console.print(f"生成合成数据：{info}")
    db = out / "bench.duckdb"
    for p in (db, snapshot.snapshot_path(db), db.with_name(db.name + ".wal")):
        p.unlink(missing_ok=True)
    n_ind = len(load_catalogue())
    mc_seconds, yard_seconds, ranking_seconds, bytes_per_row = 0.0, 0.0, 0.0, 0.0
    yard: list[StageTime] = []
    with connect(db) as con:
        with measure("dimensions", times) as h:
            counts = pipeline.stage_dimensions(con, out / "registry")
            h["values"] = h["rows"] = counts["dim_community"]
        for q in quarters:
            with measure(f"staged_values {q}", times) as h:
                summaries = pipeline.stage_staged(con, out / "inbox", q)
                h["values"] = sum(s.n_cells for s in summaries)
                h["rows"] = _count(con, "SELECT count(*) FROM stg_value WHERE period_key = ?", [q])
            for shape in sorted({s.file_format for s in summaries}):
                mine = [s for s in summaries if s.file_format == shape]
                shapes.append(StageTime(f"  read {shape} ({len(mine)} files)", sum(s.seconds for s in mine),
                                        sum(s.n_cells for s in mine), times[-1].peak_rss_mb))
            bad = [s for s in summaries if s.status != "loaded" or s.n_quarantined]
            if bad:
                console.print(f"[yellow]{len(bad)} 个文件有隔离：{bad[0].source_file} {bad[0].by_reason}[/yellow]")
            with measure(f"fact_indicator_value {q}", times) as h:
                h["values"] = h["rows"] = pipeline.stage_facts(con, q)
            n_facts = times[-1].rows
            with measure(f"agg_indicator_value {q}", times) as h:
                h["rows"] = pipeline.stage_aggregates(con, q)
                h["values"] = n_facts
            with measure(f"quality {q}", times) as h:
                pipeline.stage_quality(con, q)
                h["values"] = n_facts
                h["rows"] = _count(con, "SELECT (SELECT count(*) FROM validation_violation WHERE period_key = $1) "
                                        "+ (SELECT count(*) FROM outlier_flag WHERE period_key = $1) "
                                        "+ (SELECT count(*) FROM completeness_report WHERE period_key = $1)", [q])
            with measure(f"fact_ranking {q}", times) as h:    # scores, ranks, titles, explanations, MC intervals
                rc = pipeline.stage_rankings(con, q, draws=draws)
                h["values"] = n_facts
                h["rows"] = sum(_count(con, f"SELECT count(*) FROM {t} WHERE period_key = ?", [q])
                                for t in ("fact_score", "fact_ranking", "fact_award"))
            mc = store.LAST_TIMINGS.get("monte carlo", 0.0)
            mc_seconds += mc
            ranking_seconds += times[-1].seconds
            with measure(f"checks {q}", times) as h:
                for stage in ("staged_values", "fact_indicator_value", "agg_indicator_value", "quality_checks",
                              "fact_ranking"):
                    h["rows"] = h.get("rows", 0) + len(pipeline.stage_checks(con, stage, q))
                h["values"] = n_facts
            with measure(f"yardstick {q}", yard) as h:
                h["rows"] = yardstick(con, q)
                h["values"] = n_facts
            yard_seconds += yard[-1].seconds
        with measure("snapshot", times) as h:
            res = snapshot.publish_snapshot(con, db)
            h["values"] = _count(con, "SELECT count(*) FROM fact_indicator_value", [])
            h["rows"] = 0
        n_facts_all = times[-1].values
        bytes_per_row = fact_bytes_per_row(con, out)
    snap_bytes = res["bytes"]
    if not keep:
        for p in (db, snapshot.snapshot_path(db)):
            p.unlink(missing_ok=True)
    total = sum(s.seconds for s in times)
    appraisal_seconds = ranking_seconds - mc_seconds
    result = {
        "communities": n_communities, "indicators": n_ind, "quarters": quarters, "draws": draws,
        "fact_rows": n_facts_all, "total_seconds": total,
        "peak_rss_mb": max(s.peak_rss_mb for s in times),
        "appraisal_seconds": appraisal_seconds, "mc_seconds": mc_seconds, "yardstick_seconds": yard_seconds,
        "appraisal_to_yardstick": appraisal_seconds / yard_seconds if yard_seconds else None,
        "fact_bytes_per_row": bytes_per_row, "snapshot_bytes": snap_bytes,
        "generate_seconds": sum(s.seconds for s in gen) if gen else None,
        "duckdb": {"memory_limit": memory_limit(), "threads": duckdb_threads()},
        "stages": [{"name": s.stage, "seconds": s.seconds, "values": s.values, "values_per_second": s.rate,
                    "peak_rss_mb": s.peak_rss_mb, "rows": s.rows} for s in gen + times + yard],
        "read_by_shape": [asdict(s) | {"rate": s.rate} for s in shapes],
        "load_average_start": load_start, "load_average_end": list(os.getloadavg()),
    }
    t = Table(title=f"shequ bench：{n_communities:,} 个社区 × {n_ind} 个指标 × {len(quarters)} 个季度，"
                    f"蒙特卡洛 {draws if draws is not None else '方案默认'} 次")
    for c in ("阶段", "秒", "数值", "数值/秒", "写入行", "峰值内存 MB"):
        t.add_column(c, justify="right" if c != "阶段" else "left")
    for s in gen + times + yard:
        t.add_row(s.stage, f"{s.seconds:.2f}", f"{s.values:,}", f"{s.rate:,.0f}", f"{s.rows:,}",
                  f"{s.peak_rss_mb:,.0f}")
        if s.stage.startswith("staged_values"):
            for sh in shapes:
                t.add_row(sh.stage, f"{sh.seconds:.2f}", f"{sh.values:,}", f"{sh.rate:,.0f}", "", "")
    console.print(t)
    ratio = result["appraisal_to_yardstick"]
    console.print(f"刷新合计（不含生成）{total:.1f} 秒；峰值内存 {result['peak_rss_mb']:,.0f} MB；"
                  f"评比 {appraisal_seconds:.2f} 秒（不含蒙特卡洛 {mc_seconds:.2f} 秒），裸 DuckDB 基准 "
                  f"{yard_seconds:.2f} 秒，比值 {ratio:.1f}；事实表 {bytes_per_row:.1f} 字节/行"
                  if ratio is not None else f"刷新合计 {total:.1f} 秒")
    text = json.dumps(result, ensure_ascii=False, indent=2)
    (out / "bench_result.json").write_text(text, encoding="utf-8")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(text, encoding="utf-8")
    return 0


# ------------------------------------------------------------------------------------------------------
# The appraisal engine at national scale (issue: 600,000 communities x 68 indicators in < 60 s, 200 Monte Carlo
# draws in < 120 s). The input is built directly in DuckDB (reading 41M values from files is the staging
# benchmark above): synthetic communities in a street -> district -> city -> province tree, one quarter of
# values for every scored indicator, about 2% not reported. The bench copy of fact_indicator_value carries no
# PK/FK index (building it is the fact-build stage, measured above), which is the only difference from a
# refreshed warehouse.

APPRAISAL_VALUES = """
INSERT INTO fact_indicator_value
SELECT c.community_key, i.indicator_code, $q, v.value, v.value, NULL, NULL, coalesce(i.unit, ''), NULL,
       'bench', NULL, NULL, NULL, NULL, 'bench', 1, now()::TIMESTAMP, NULL
FROM dim_community c
CROSS JOIN dim_indicator i
-- u mixes a community-wide strength with indicator noise, so scores spread as in a real district (some
-- communities are strong across the board and reach the grades titles need)
CROSS JOIN LATERAL (SELECT 0.65 * ((hash(c.community_key) % 1000000) / 1000000.0)
                         + 0.35 * ((hash(c.community_key, i.indicator_code) % 1000000) / 1000000.0) AS u) r
CROSS JOIN LATERAL (SELECT CASE
        WHEN i.value_kind = 'flag' THEN CASE WHEN r.u > 0.3 THEN 1.0 ELSE 0.0 END
        WHEN i.value_kind = 'ordinal' THEN 1 + floor(r.u * 4)
        WHEN i.value_kind IN ('ratio', 'survey') THEN 0.4 + 0.6 * r.u
        WHEN i.direction = 'lower_better' THEN floor((1 - r.u) * (1 - r.u) * 6)
        ELSE round(coalesce(i.valid_min, 0) + r.u * r.u * least(coalesce(i.valid_max, 100), 500), 1)
    END AS value) v
WHERE c.community_key >= 10000000 AND i.direction <> 'context'
  AND (hash(c.community_key, i.indicator_code, 'missing') % 100) >= 2
"""


def build_appraisal_bench(db: Path, n: int, quarter: str = "2024Q3") -> int:
    from .config import REGISTRY_DIR
    from .warehouse import ensure_schema, load_dimensions

    db.unlink(missing_ok=True)
    with connect(db) as con:
        ensure_schema(con)
        load_dimensions(con, REGISTRY_DIR)
        con.execute("CREATE TABLE _fiv AS SELECT * FROM fact_indicator_value LIMIT 0")
        con.execute("DROP TABLE fact_indicator_value")
        con.execute("ALTER TABLE _fiv RENAME TO fact_indicator_value")
        con.execute("""INSERT INTO dim_community
            SELECT 10000000 + i, printf('B%011d', i), printf('社区%d', i),
                   printf('S%07d', i // 25), printf('街道%d', i // 25), printf('D%05d', i // 250),
                   printf('区%d', i // 250), printf('C%04d', i // 2500), printf('市%d', i // 2500),
                   printf('P%02d', i // 25000), printf('省%d', i // 25000), '居委会', 2000, 6000,
                   DATE '2020-01-01', NULL, TRUE
            FROM range(?) t(i)""", [n])
        con.execute(APPRAISAL_VALUES, {"q": quarter})
        return con.execute("SELECT count(*) FROM fact_indicator_value").fetchall()[0][0]


def run_appraisal_bench(n: int, draws: int = 200, out: Path | None = None, console: Console | None = None) -> dict:
    from .appraisal.engine import run as run_engine
    from .appraisal.store import _mc_for_awards, appraise_period, award_titles, load_units
    from .scoring import load_scheme

    console = console or Console()
    out = out or DATA_DIR / "bench" / f"appraisal-{n}"
    out.mkdir(parents=True, exist_ok=True)
    db = out / "appraisal.duckdb"
    q = "2024Q3"
    times: list[StageTime] = []
    with measure("build synthetic warehouse (setup)", times) as h:
        h["values"] = build_appraisal_bench(db, n, q)
    scheme = load_scheme()
    with connect(db) as con:
        with measure("appraise: score + rank x3 + areas + titles + explain + write", times) as h:
            counts = appraise_period(con, q, scheme, draws=0)
            h["values"] = n
        with measure("  (load matrix + nominal run, inside MC setup)", times) as h:
            u, units_df = load_units(con, q, scheme)
            app = run_engine(u, scheme)
            h["values"] = n
        with measure(f"monte carlo: {draws} draws", times) as h:
            candidates: dict = {}
            award_titles(app, units_df, candidates)
            _, _, ua = _mc_for_awards(app, units_df, draws, candidates)
            h["values"] = n * draws
    t = Table(title=f"shequ bench --appraisal：{n:,} 个社区 × {len(scheme.indicators)} 个计分指标，一个季度")
    for c in ("阶段", "秒", "单位", "单位/秒", "峰值内存 MB"):
        t.add_column(c, justify="right" if c != "阶段" else "left")
    for s in times:
        t.add_row(s.stage, f"{s.seconds:.2f}", f"{s.values:,}", f"{s.rate:,.0f}", f"{s.peak_rss_mb:,.0f}")
    console.print(t)
    res = {"communities": n, "draws": draws, "counts": counts, "stages": [asdict(s) for s in times]}
    (out / "appraisal_result.json").write_text(json.dumps(res, ensure_ascii=False, indent=2, default=str),
                                               encoding="utf-8")
    db.unlink(missing_ok=True)
    return res
