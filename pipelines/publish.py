"""Stage 6: publish a read-only snapshot of the warehouse for notebooks and other readers (shequ.snapshot), and
write the quarterly HTML report of each quarter from it (shequ.report)."""

import dagster as dg

from shequ.report import NoDataError, write_report
from shequ.snapshot import publish_snapshot, read_only, snapshot_path

from .assets import COMMON, agg_indicator_value, fact_ranking
from .partitions import quarters_of
from .resources import ShequWarehouse


@dg.asset(group_name="s6_publish", deps=[agg_indicator_value, fact_ranking],
          description="发布只读快照 data/snapshot.duckdb（检查点后复制并原子改名），笔记本只读快照，"
                      "不会挡住刷新 / Read-only snapshot of the warehouse (checkpoint, copy, atomic rename): "
                      "notebooks read it and never hold a lock on the live file.",
          **COMMON)
def warehouse_snapshot(context: dg.AssetExecutionContext, warehouse: ShequWarehouse) -> dg.MaterializeResult:
    with warehouse.connection() as con:
        info = publish_snapshot(con, warehouse.path)
    context.log.info(f"快照已发布：{info}")
    return dg.MaterializeResult(metadata={"季度": quarters_of(context), "快照": info["snapshot"],
                                          "字节": info["bytes"], "秒": info["seconds"]})


@dg.asset(group_name="s6_publish", deps=[warehouse_snapshot],
          description="季度评比报告：每个季度一个离线可用的 HTML 文件（排名、称号与并列、名次变化、类别画像、"
                      "数据质量、各社区得分解释），读取只读快照 / Quarterly report: one self-contained HTML file "
                      "per quarter (rankings, titles and ties, bump chart, category profiles, data quality, "
                      "explanations), read from the snapshot.",
          **COMMON)
def quarterly_report(context: dg.AssetExecutionContext, warehouse: ShequWarehouse) -> dg.MaterializeResult:
    written, missing = [], []
    with read_only(snapshot_path(warehouse.path)) as con:
        for q in quarters_of(context):
            try:
                info = write_report(q, warehouse=warehouse.path, con=con)
            except NoDataError as e:
                context.log.warning(str(e))
                missing.append(q)
                continue
            context.log.info(f"{q} 报告：{info['path']}（{info['bytes']} 字节，{info['seconds']} 秒）")
            written.append(info)
    return dg.MaterializeResult(metadata={
        "季度": quarters_of(context), "报告": [i["path"] for i in written], "无数据季度": missing,
        "字节": sum(i["bytes"] for i in written), "秒": round(sum(i["seconds"] for i in written), 3)})


PUBLISH_ASSETS = [warehouse_snapshot, quarterly_report]
