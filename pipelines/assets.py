"""One asset per stage, all quarter-partitioned, all writing the warehouse through one concurrency pool.

inbox_files -> dimensions -> staged_values -> fact_indicator_value -> agg_indicator_value -> fact_ranking

Each asset carries blocking asset checks that run the stage's data-quality suites (expectations/*.json): a
critical failure is an ERROR and stops the assets downstream; warnings are reported and do not block.
"""

import warnings
from typing import TYPE_CHECKING

import dagster as dg

from shequ import pipeline
from shequ.snapshot import clean_stale_tmp, snapshot_path
from shequ.warehouse import ensure_schema

from .partitions import quarterly, quarters_of
from .resources import ShequWarehouse

if TYPE_CHECKING:
    from shequ import quality

# partitioned checks (so a check result shows its quarter) are a Dagster preview feature; the warning is known
warnings.filterwarnings("ignore", message=".*partitions_def on an AssetCheckSpec.*")

POOL = "shequ_warehouse"
COMMON = dict(partitions_def=quarterly, pool=POOL, backfill_policy=dg.BackfillPolicy.single_run(),
              kinds={"duckdb", "python"})


def text_table(headers: list[str], rows: list[list]) -> dg.TextMetadataValue:
    """A table as plain text metadata, one line per row, cells joined by " | ". Not MetadataValue.md: the UI
    renders markdown (links, images, emphasis), and these cells hold file names, headers, notes and messages
    from the inbox, which are shown as written. Line breaks inside a cell become spaces."""
    def cell(v) -> str:
        return " ".join(str("" if v is None else v).split())
    return dg.MetadataValue.text("\n".join(" | ".join(cell(v) for v in r) for r in [headers, *rows]))


def _suite_checks(asset_name: str, stage: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(f"{suite}_suite", asset=asset_name, blocking=True, partitions_def=quarterly,
                              description=f"数据质量套件 expectations/{suite}.json（critical 阻断下游） / "
                                          f"Quality suite {suite}: a failed critical expectation blocks downstream")
            for suite in pipeline.STAGE_SUITES[stage]]


def _check_results(asset_name: str, stage: str, results_by_quarter: "dict[str, list[quality.Result]]"
                   ) -> list[dg.AssetCheckResult]:
    out = []
    for suite in pipeline.STAGE_SUITES[stage]:
        rows = [(q, r) for q, rs in results_by_quarter.items() for r in rs if r.suite == suite]
        failed = [(q, r) for q, r in rows if not r.success and r.severity != "info"]  # info: reported only
        critical = [(q, r) for q, r in failed if r.severity == "critical"]
        out.append(dg.AssetCheckResult(
            asset_key=asset_name, check_name=f"{suite}_suite", passed=not failed,
            severity=dg.AssetCheckSeverity.ERROR if critical else dg.AssetCheckSeverity.WARN,
            metadata={
                "季度": ", ".join(results_by_quarter), "期望数": len(rows), "未通过": len(failed), "阻断": len(critical),
                "结果": text_table(["季度", "期望", "级别", "结果", "异常/检查", "说明"], [
                    [q, r.expectation, r.severity, "通过" if r.success else "未通过", f"{r.unexpected}/{r.checked}",
                     r.detail[:120]] for q, r in rows]) if rows else dg.MetadataValue.text(""),
            }))
    return out


@dg.asset(group_name="s1_raw", description="收件箱文件清单（内容哈希、所属季度、是否已入库）/ Inbox inventory: "
          "files with content hash and quarter; reading happens in staged_values.",
          check_specs=[dg.AssetCheckSpec("inbox_has_files", asset="inbox_files", partitions_def=quarterly,
                                         description="本季度收件箱中有文件（无文件时警告） / "
                                                     "The inbox holds files for the quarter (warns otherwise)")], **COMMON)
def inbox_files(context: dg.AssetExecutionContext, warehouse: ShequWarehouse) -> dg.MaterializeResult:
    quarters = quarters_of(context)
    selection = context.run.asset_selection
    if not selection or dg.AssetKey("data_docs") in selection:
        from .publish import _docs_wanted, start_data_docs  # (publish imports this module)
        if _docs_wanted(context.run.tags):
            start_data_docs(warehouse.path)   # GX imports on the other core while this run works
    with warehouse.connection() as con:
        ensure_schema(con)  # raw_file must exist to tell new files from known ones
        files = pipeline.scan_inbox(con, warehouse.inbox)
        # temporary copies left by a killed run: the snapshot's and the reports'
        from shequ.report import report_path  # (plotly: imported when a run needs it, not at code location load)

        clean_stale_tmp(snapshot_path(warehouse.path))
        clean_stale_tmp(report_path("x", warehouse.path), ".report_*.html.*.tmp")
    mine = [f for f in files if set(f.quarters) & set(quarters) or not f.quarters]
    return dg.MaterializeResult(
        metadata={"季度": quarters, "文件数": len(mine), "新文件数": sum(f.known_status is None for f in mine),
                  "文件": text_table(["文件", "季度", "字节", "sha256", "状态"], [
                      [f.rel, ",".join(f.quarters) or "未知", f.size, f.file_id[:12], f.known_status or "新文件"]
                      for f in mine])},
        check_results=[dg.AssetCheckResult(check_name="inbox_has_files", passed=bool(mine),
                                           severity=dg.AssetCheckSeverity.WARN,
                                           metadata={"季度": ", ".join(quarters), "文件数": len(mine)})])


@dg.asset(group_name="s2_dimensions", deps=[inbox_files],
          description="维表：期间、指标目录、社区（缓慢变化维）与沿革 / Dimensions from models/: periods, "
                      "indicator catalogue, community registry (SCD) and lineage.",
          check_specs=_suite_checks("dimensions", "dimensions"), **COMMON)
def dimensions(context: dg.AssetExecutionContext, warehouse: ShequWarehouse) -> dg.MaterializeResult:
    with warehouse.connection() as con:
        counts = pipeline.stage_dimensions(con, warehouse.registry_dir)
        # checked for every quarter of the run, so a range run leaves the check rows quarter-by-quarter runs leave
        results = {q: pipeline.stage_checks(con, "dimensions", q) for q in quarters_of(context)}
    return dg.MaterializeResult(metadata={f"{k}_行数": v for k, v in counts.items()},
                                check_results=_check_results("dimensions", "dimensions", results))


@dg.asset(group_name="s3_staged", deps=[dimensions],
          description="暂存长表：逐文件读取、标准化、隔离无法入库的单元格 / Staged long values: each new file "
                      "read, normalised and loaded in its own transaction; rejected cells quarantined.",
          check_specs=[*_suite_checks("staged_values", "staged_values"),
                       dg.AssetCheckSpec("files_readable", asset="staged_values", partitions_def=quarterly,
                                         description="所有文件均可读取（被拒文件已隔离，其余照常入库；警告不阻断） / "
                                                     "Every file was readable (rejected files are recorded; warns, never blocks)")],
          **COMMON)
def staged_values(context: dg.AssetExecutionContext, warehouse: ShequWarehouse) -> dg.MaterializeResult:
    summaries, results = [], {}
    with warehouse.connection() as con:
        for q in quarters_of(context):
            summaries += pipeline.stage_staged(con, warehouse.inbox, q)
            results[q] = pipeline.stage_checks(con, "staged_values", q)
    rejected = [s for s in summaries if s.status == "rejected"]
    for s in rejected:
        context.log.warning(f"文件被拒：{s.message}")
    reasons: dict[str, int] = {}
    for s in summaries:
        for k, v in s.by_reason.items():
            reasons[k] = reasons.get(k, 0) + v
    return dg.MaterializeResult(
        metadata={"文件数": len(summaries), "新入库文件": sum(s.status == "loaded" for s in summaries),
                  "被拒文件": len(rejected), "入库数值": sum(s.n_loaded for s in summaries),
                  "隔离数值": sum(s.n_quarantined for s in summaries), "隔离原因": reasons,
                  "文件摘要": text_table(["文件", "状态", "入库", "隔离", "原因", "说明", "备注"], [
                      [s.source_file, s.status, s.n_loaded, s.n_quarantined,
                       ", ".join(f"{k}:{v}" for k, v in s.by_reason.items()), s.message or "",
                       "；".join(s.notes)[:300]] for s in summaries])},
        check_results=[*_check_results("staged_values", "staged_values", results),
                       dg.AssetCheckResult(check_name="files_readable", passed=not rejected,
                                           severity=dg.AssetCheckSeverity.WARN,
                                           metadata={"季度": ", ".join(results),
                                                     "被拒文件": [s.message for s in rejected]})])


# The derived stages, in order. A run writes all of them in one transaction (ShequWarehouse.derived): the last
# derived stage the run selects commits it, a failed stage or a blocking check rolls it back. Readers therefore
# see a quarter's facts, aggregates, quality tables, scores, rankings, titles and explanations of one refresh.
DERIVED = ("fact_indicator_value", "agg_indicator_value", "quality_checks", "fact_ranking")


def _last_derived(context, asset_name: str) -> bool:
    """True when no later derived stage runs in this run (the whole job, or a selection from the UI)."""
    selection = context.run.asset_selection
    names = {k.to_user_string() for k in selection} if selection else set(DERIVED)
    return not names & set(DERIVED[DERIVED.index(asset_name) + 1:])


def _per_quarter(context, warehouse: ShequWarehouse, asset_name: str, stage_fn) -> dg.MaterializeResult:
    """Run one stage for each quarter of the run, then its suites; rows written per quarter as metadata.
    Writes inside the run's DerivedBuild; commits it when this is the run's last derived stage."""
    counts, results = {}, {}
    with warehouse.derived(context.run.run_id) as con:
        for q in quarters_of(context):
            counts[q] = stage_fn(con, q)
            results[q] = pipeline.stage_checks(con, asset_name, q)
        checks = _check_results(asset_name, asset_name, results)
    metadata = {"行数": counts}
    if any(not c.passed and c.severity == dg.AssetCheckSeverity.ERROR for c in checks):
        warehouse.finish_derived(context.run.run_id, commit=False)
        context.log.warning(f"{'、'.join(results)} 阻断性检查未通过：本次刷新的事实、汇总、质量、评分、排名、称号与解释"
                            f"全部撤销，仓库保持上次成功刷新的结果")
        metadata["已撤销"] = True
    elif _last_derived(context, asset_name):
        seconds = warehouse.finish_derived(context.run.run_id, commit=True)
        if seconds is not None:
            context.log.info(f"{'、'.join(results)} 派生表一次提交：{seconds:.3f} 秒")
            metadata["提交秒数"] = round(seconds, 3)
    return dg.MaterializeResult(metadata=metadata, check_results=checks)


@dg.asset(group_name="s4_facts", deps=[staged_values],
          description="指标事实表（社区×指标×期间，最新版本优先，保留来源单元格）/ Fact table: community x "
                      "indicator x period, latest file version wins, provenance kept.",
          check_specs=_suite_checks("fact_indicator_value", "fact_indicator_value"), **COMMON)
def fact_indicator_value(context: dg.AssetExecutionContext, warehouse: ShequWarehouse) -> dg.MaterializeResult:
    return _per_quarter(context, warehouse, "fact_indicator_value", pipeline.stage_facts)


@dg.asset(group_name="s4_facts", deps=[fact_indicator_value],
          description="街道/区/市汇总（按指标规则：求和、分子分母之比、占比、均值）/ Street, district and city "
                      "aggregates by each indicator's rule.",
          check_specs=_suite_checks("agg_indicator_value", "agg_indicator_value"), **COMMON)
def agg_indicator_value(context: dg.AssetExecutionContext, warehouse: ShequWarehouse) -> dg.MaterializeResult:
    return _per_quarter(context, warehouse, "agg_indicator_value", pipeline.stage_aggregates)


@dg.asset(group_name="s4_quality", deps=[fact_indicator_value, agg_indicator_value],
          description="数据质量：校验规则（重要性、缺失值策略）、离群值、完整性与及时性；未通过 HIGH 规则的数值暂停参与"
                      "评分（quality_hold）/ Data quality: validation rules, outliers, completeness and timeliness; "
                      "values failing a HIGH rule are held out of scoring.",
          check_specs=_suite_checks("quality_checks", "quality_checks"), **COMMON)
def quality_checks(context: dg.AssetExecutionContext, warehouse: ShequWarehouse) -> dg.MaterializeResult:
    return _per_quarter(context, warehouse, "quality_checks", pipeline.stage_quality)


@dg.asset(group_name="s5_rankings", deps=[fact_indicator_value, quality_checks],
          description="三级评比：按评价方案（models/schemes/default.yaml）计分、社区在街道/区/市内排名、街道与区排名、"
                      "区级→市级→省级称号（配额、一票否决、统计并列）、蒙特卡洛排名区间、得失分解释；写入 fact_score、"
                      "fact_ranking、fact_award、fact_explanation / The appraisal: scores per scheme node and review "
                      "stage, ranks at three levels, tiered titles with quotas and vetoes, Monte Carlo rank "
                      "intervals, explanations.",
          check_specs=_suite_checks("fact_ranking", "fact_ranking"), **COMMON)
def fact_ranking(context: dg.AssetExecutionContext, warehouse: ShequWarehouse) -> dg.MaterializeResult:
    def rank(con, q):
        counts = pipeline.stage_rankings(con, q, warehouse.scheme, warehouse.reviews)
        for err in counts.pop("review_errors"):
            context.log.warning(f"评审文件被拒：{err}")
        top = con.execute("""SELECT entity_name, scope_name, round(score, 2), rank FROM fact_ranking
                             WHERE period_key = ? AND entity_level = 'community' AND scope_level = 'city'
                               AND rank <= 3 ORDER BY scope_name, rank""", [q]).fetchall()
        context.log.info(f"{q} 各市前三：{top}")
        titles = con.execute("""SELECT title, count(*) FROM fact_award WHERE period_key = ? GROUP BY 1 ORDER BY 1""",
                             [q]).fetchall()
        context.log.info(f"{q} 称号：{titles}")
        return {k: v for k, v in counts.items() if isinstance(v, int)}

    return _per_quarter(context, warehouse, "fact_ranking", rank)


@dg.asset(group_name="s5_rankings", deps=[fact_ranking],
          description="稳健性分析（重）：各不确定假设（异常值处理深度、标准化、权重、汇总方法）对社区排名的 Sobol "
                      "一阶与总效应指数及自助法区间，写入 analysis_sensitivity；样例每季度约 1 秒（N=100，600 次重算）。"
                      "运行标签 shequ/sensitivity=skip 跳过，shequ/sensitivity_n=N 改样本量 / Sobol sensitivity of "
                      "ranks to the scheme's uncertain assumptions (docs/robustness.md).", **COMMON)
def analysis_sensitivity(context: dg.AssetExecutionContext, warehouse: ShequWarehouse) -> dg.MaterializeResult:
    tags = context.run.tags
    if tags.get("shequ/sensitivity") == "skip":
        context.log.info("本次运行跳过敏感性分析（标签 shequ/sensitivity=skip）")
        return dg.MaterializeResult(metadata={"季度": quarters_of(context), "跳过": True})
    n = int(tags["shequ/sensitivity_n"]) if tags.get("shequ/sensitivity_n") else None
    out = {}
    with warehouse.connection() as con:
        for q in quarters_of(context):
            out[q] = pipeline.stage_sensitivity(con, q, warehouse.scheme, n=n)
    return dg.MaterializeResult(metadata={"行数": {q: v["analysis_sensitivity"] for q, v in out.items()},
                                          "重算次数": {q: v["runs"] for q, v in out.items()},
                                          "秒": {q: v["seconds"] for q, v in out.items()}})


ASSETS = [inbox_files, dimensions, staged_values, fact_indicator_value, agg_indicator_value, quality_checks,
          fact_ranking, analysis_sensitivity]
