"""The refresh, stage by stage, as plain functions over an open warehouse connection.

Dagster assets (pipelines/) and the benchmark (shequ bench) call exactly these; a notebook can too:

    from shequ import pipeline
    from shequ.warehouse import connect
    with connect("data/warehouse.duckdb") as con:
        pipeline.stage_dimensions(con)
        pipeline.stage_staged(con, "data/inbox", "2024Q3")
        ...
"""

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .config import DEFAULT_SCHEME, REGISTRY_DIR, is_object_inbox
from .progress import emit

if TYPE_CHECKING:
    import duckdb

    from . import ingest, quality

# The stage modules (readers, ingest, dq, quality, scoring, warehouse: polars, duckdb, cn2an, ...) are imported by
# the function that runs the stage, not here: the Dagster code location imports this module for STAGE_SUITES and
# the stage functions, and loading it should not pay for every stage's libraries (README: code location load).

# suites checked after each stage; critical failures block the stages after it
STAGE_SUITES = {
    "dimensions": ["dim_indicator", "dim_community"],
    "staged_values": ["stg_value"],
    "fact_indicator_value": ["fact_indicator_value"],
    "agg_indicator_value": ["agg_indicator_value"],
    "quality_checks": ["quality_hold", "validation_violation", "outlier_flag", "completeness_report"],
    "fact_ranking": ["fact_ranking", "fact_score", "fact_award"],
}


class StageOutOfMemory(RuntimeError):
    """A stage ran out of memory: DuckDB could not stay within its memory_limit even by spilling, or numpy /
    polars could not allocate. The message names the stage, the quarter and the limits."""


STAGE_NAMES = {"stage_dimensions": "维表", "stage_staged": "暂存", "stage_facts": "事实表",
               "stage_aggregates": "汇总", "stage_quality": "质量规则", "stage_rankings": "评分与排名",
               "stage_checks": "检查", "stage_sensitivity": "敏感性分析"}


def memory_bounded(fn):
    """Out of memory in a stage is reported as StageOutOfMemory naming the stage, the quarter and the limits,
    not as DuckDB's English message or a bare MemoryError. Every write of a stage is a transaction (per file
    for staging), so what the failing statement was writing is rolled back and what was committed before stays."""
    @functools.wraps(fn)
    def run(con, *args, **kwargs):
        try:
            return fn(con, *args, **kwargs)
        except StageOutOfMemory:
            raise
        except Exception as e:
            import duckdb

            if not isinstance(e, (MemoryError, duckdb.OutOfMemoryException)):
                raise
            from .warehouse import duckdb_threads, memory_limit

            try:        # what this connection runs with (a notebook may have SET its own)
                limit, threads = con.execute("SELECT current_setting('memory_limit'), "
                                             "current_setting('threads')").fetchall()[0]
            except Exception:
                limit, threads = memory_limit(), duckdb_threads()
            quarter = kwargs.get("quarter") or next((a for a in args if isinstance(a, str) and len(a) == 6
                                                     and a[4] == "Q"), None)
            where = f"「{STAGE_NAMES.get(fn.__name__, fn.__name__)}{' ' + quarter if quarter else ''}」"
            kind = "DuckDB 超出内存上限" if isinstance(e, duckdb.OutOfMemoryException) else "进程内存不足（numpy/polars 分配失败）"
            raise StageOutOfMemory(
                f"阶段{where}{kind}：DuckDB memory_limit = {limit}，threads = {threads}"
                f"（可用环境变量 SHEQU_DUCKDB_MEMORY_LIMIT、SHEQU_DUCKDB_THREADS 调整；线程越少，内存越省）。"
                f"正在写入的事务已回滚，此前已提交的数据不受影响。原始信息：{(str(e) or type(e).__name__).splitlines()[0][:300]}") from e
    return run


@dataclass
class InboxFile:
    path: Path
    rel: str
    file_id: str
    size: int
    quarters: list[str]
    known_status: str | None  # status in raw_file when this exact content was ingested before
    origin: object = None     # object_inbox.InboxObject for an object inbox (file_id "" until it is read)


def file_quarters(path: Path, inbox: Path) -> list[str]:
    """Quarters a file holds: from its name or folder when they say, else from its contents (title, cells)."""
    from . import ingest
    from .periods import classify_period, quarter_of_key
    from .readers import FileRejected, read_file

    q = ingest.path_quarter(path, inbox)
    if q:
        return [q]
    try:
        fr = read_file(path)
    except FileRejected:
        return []
    except Exception:  # a reader defect: the staged stage records it as internal_error; the scan goes on
        return []
    found = set()
    texts = [" ".join(lines) for lines in fr.sheet_titles.values()] + list(fr.sheet_titles)
    texts += [pr for (pr,) in fr.cells.select("period_raw").unique().iter_rows() if pr]
    for t in texts:
        key, _ = classify_period(t)
        if key:
            found.add(quarter_of_key(key))
    return sorted(found)


def scan_inbox(con: "duckdb.DuckDBPyConnection | None", inbox: Path) -> list[InboxFile]:
    """The raw-files stage: every supported file in the inbox with its content hash and quarters (an inbox in
    object storage, s3://bucket/prefix: shequ.object_inbox.scan)."""
    if is_object_inbox(inbox):
        from .object_inbox import scan

        return scan(con, inbox)
    from . import ingest

    inbox = Path(inbox)
    known = dict(con.execute("SELECT file_id, status FROM raw_file").fetchall()) if con is not None else {}
    out = []
    for p in ingest.inventory(inbox):
        fid = ingest.sha256(p)
        out.append(InboxFile(p, str(p.relative_to(inbox)), fid, p.stat().st_size, file_quarters(p, inbox),
                             known.get(fid)))
    return out


def quarters_in_inbox(inbox: Path) -> list[str]:
    return sorted({q for f in scan_inbox(None, inbox) for q in f.quarters})


@memory_bounded
def stage_dimensions(con: "duckdb.DuckDBPyConnection", registry_dir: Path = REGISTRY_DIR) -> dict[str, int]:
    from . import warehouse

    emit("dimensions")
    warehouse.ensure_schema(con)
    return warehouse.load_dimensions(con, registry_dir)


@memory_bounded
def stage_staged(con: "duckdb.DuckDBPyConnection", inbox: Path, quarter: str, on_file=None
                 ) -> "list[ingest.FileSummary]":
    """Read the quarter's new files (those whose name says the quarter, or that do not say) into stg_value."""
    from . import ingest

    return ingest.ingest_inbox(con, inbox if is_object_inbox(inbox) else Path(inbox), quarter, on_file)


@memory_bounded
def stage_facts(con: "duckdb.DuckDBPyConnection", quarter: str) -> int:
    from . import warehouse

    emit("facts", quarter)
    return warehouse.build_facts(con, quarter)


@memory_bounded
def stage_aggregates(con: "duckdb.DuckDBPyConnection", quarter: str) -> int:
    from . import warehouse

    emit("aggregates", quarter)
    return warehouse.build_aggregates(con, quarter)


@memory_bounded
def stage_rankings(con: "duckdb.DuckDBPyConnection", quarter: str, scheme_path: Path = DEFAULT_SCHEME,
                   reviews_dir: Path | None = None, draws: int | None = None) -> dict:
    """Load review-stage corrections, then score, rank, award and explain the quarter. Returns row counts and
    `review_errors` (review files rejected, with file, row and reason)."""
    from . import scoring
    from .appraisal.reviews import load_reviews

    emit("rankings", quarter)
    scheme = scoring.load_scheme(scheme_path)
    stages = list((scheme.section("review") or {}).get("stages") or ["自评"])
    loads = load_reviews(con, Path(reviews_dir), stages) if reviews_dir else []
    counts = scoring.score_period(con, quarter, scheme, draws=draws)
    counts["review_rows"] = sum(r.rows for r in loads)
    counts["review_errors"] = [r.error for r in loads if r.error]
    return counts


@memory_bounded
def stage_quality(con: "duckdb.DuckDBPyConnection", quarter: str) -> dict[str, int]:
    """Validation rules (+ quality_hold), outliers, completeness and timeliness (shequ/dq.py)."""
    from . import dq

    emit("quality", quarter)
    return dq.stage_quality(con, quarter)


@memory_bounded
def stage_checks(con: "duckdb.DuckDBPyConnection", stage: str, quarter: str) -> "list[quality.Result]":
    from . import dq, quality

    out = []
    emit("checks", quarter, item=stage)
    for suite in STAGE_SUITES[stage]:
        out.extend(quality.run_suite(con, suite, quarter))
    if stage == "fact_ranking":  # the ranking records which checks were in force when it was produced
        dq.snapshot_release(con, quarter)
    return out


@memory_bounded
def stage_sensitivity(con: "duckdb.DuckDBPyConnection", quarter: str, scheme_path: Path = DEFAULT_SCHEME,
                      n: int | None = None) -> dict:
    """Sobol sensitivity of the quarter's ranks to the scheme's uncertain assumptions (heavy; its own asset)."""
    from . import scoring
    from .appraisal.store import sensitivity_period

    return sensitivity_period(con, quarter, scoring.load_scheme(scheme_path), n=n)
