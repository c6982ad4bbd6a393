"""`shequ bench`: time each refresh stage on a synthetic national-scale set, with values/s and peak memory.

The stages are the same functions the Dagster assets call (shequ.pipeline). Peak memory is the process's
resident set size sampled every 10 ms during the stage (DuckDB and polars allocate outside Python, so
tracemalloc would miss most of it); "peak" is the highest RSS seen while the stage ran.
"""

import json
import shutil
import threading
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

from . import pipeline
from .catalogue import load_catalogue
from .config import DATA_DIR
from .periods import quarters_between
from .sample import write_synthetic_set
from .warehouse import connect


@dataclass
class StageTime:
    stage: str
    seconds: float
    values: int
    peak_rss_mb: float

    @property
    def rate(self) -> float:
        return self.values / self.seconds if self.seconds > 0 else float("inf")


@contextmanager
def measure(stage: str, out: list):
    proc = psutil.Process()
    peak = [proc.memory_info().rss]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.01)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    start = time.perf_counter()
    holder = {}
    try:
        yield holder
    finally:
        elapsed = time.perf_counter() - start
        stop.set()
        t.join()
        out.append(StageTime(stage, elapsed, int(holder.get("values", 0)), peak[0] / 2**20))


def run_bench(n_communities: int, n_quarters: int = 1, out: Path | None = None, console: Console | None = None,
              keep: bool = False) -> int:
    console = console or Console()
    out = out or DATA_DIR / "bench" / str(n_communities)
    quarters = quarters_between("2024Q1", "2024Q4")[:n_quarters] if n_quarters <= 4 else \
        quarters_between("2023Q1", "2030Q4")[:n_quarters]
    times: list[StageTime] = []
    shapes: list[StageTime] = []   # read rate per file shape, inside the staging stage
    marker = out / f".complete-{'-'.join(quarters)}"
    if not marker.exists():
        if out.exists():
            shutil.rmtree(out)
        with measure("generate (write files)", times) as h:
            info = write_synthetic_set(out, n_communities, quarters)
            h["values"] = info["values"]
        marker.touch()
        console.print(f"生成合成数据：{info}")
    db = out / "bench.duckdb"
    db.unlink(missing_ok=True)
    with connect(db) as con:
        with measure("dimensions", times) as h:
            counts = pipeline.stage_dimensions(con, out / "registry")
            h["values"] = counts["dim_community"]
        for q in quarters:
            with measure(f"staged_values {q}", times) as h:
                summaries = pipeline.stage_staged(con, out / "inbox", q)
                h["values"] = sum(s.n_cells for s in summaries)
            for shape in sorted({s.file_format for s in summaries}):
                mine = [s for s in summaries if s.file_format == shape]
                shapes.append(StageTime(f"  read {shape} ({len(mine)} files)", sum(s.seconds for s in mine),
                                        sum(s.n_cells for s in mine), times[-1].peak_rss_mb))
            bad = [s for s in summaries if s.status != "loaded" or s.n_quarantined]
            if bad:
                console.print(f"[yellow]{len(bad)} 个文件有隔离：{bad[0].source_file} {bad[0].by_reason}[/yellow]")
            with measure(f"fact_indicator_value {q}", times) as h:
                h["values"] = pipeline.stage_facts(con, q)
            with measure(f"agg_indicator_value {q}", times) as h:
                pipeline.stage_aggregates(con, q)
                h["values"] = con.execute("SELECT count(*) FROM fact_indicator_value WHERE period_key = ?",
                                          [q]).fetchall()[0][0]
            with measure(f"fact_ranking {q}", times) as h:
                pipeline.stage_rankings(con, q)
                h["values"] = con.execute("SELECT count(*) FROM fact_indicator_value WHERE period_key = ?",
                                          [q]).fetchall()[0][0]
            with measure(f"checks {q}", times) as h:
                for stage in ("staged_values", "fact_indicator_value", "agg_indicator_value", "fact_ranking"):
                    pipeline.stage_checks(con, stage, q)
                h["values"] = con.execute("SELECT count(*) FROM fact_indicator_value WHERE period_key = ?",
                                          [q]).fetchall()[0][0]
    if not keep:
        db.unlink(missing_ok=True)
    t = Table(title=f"shequ bench：{n_communities:,} 个社区 × {len(load_catalogue())} 个指标 × {len(quarters)} 个季度")
    for c in ("阶段", "秒", "数值", "数值/秒", "峰值内存 MB"):
        t.add_column(c, justify="right" if c != "阶段" else "left")
    for s in times:
        t.add_row(s.stage, f"{s.seconds:.2f}", f"{s.values:,}", f"{s.rate:,.0f}", f"{s.peak_rss_mb:,.0f}")
        if s.stage.startswith("staged_values"):
            for sh in shapes:
                t.add_row(sh.stage, f"{sh.seconds:.2f}", f"{sh.values:,}", f"{sh.rate:,.0f}", "")
    console.print(t)
    (out / "bench_result.json").write_text(json.dumps(
        {"communities": n_communities, "quarters": quarters, "stages": [asdict(s) | {"rate": s.rate} for s in times],
         "read_by_shape": [asdict(s) | {"rate": s.rate} for s in shapes]},
        ensure_ascii=False, indent=2), encoding="utf-8")
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
