"""Stage 6: publish a read-only snapshot of the warehouse for notebooks and other readers (shequ.snapshot)."""

import dagster as dg

from shequ.snapshot import publish_snapshot

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


PUBLISH_ASSETS = [warehouse_snapshot]
