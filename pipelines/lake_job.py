"""The lake backend's ingestion job, run by dagster-celery workers (docs/lake.md "分布式采集").

list_inbox_files -> stage_file (one step per inbox file, fanned out with DynamicOut, on any worker)
                 -> merge_and_publish (once: per quarter merge the staged rows, build, check, publish to the lake)

Domain logic is in shequ.distributed; this module only wires it. Launched by `shequ lake ingest` through
shequ.workers.run_ingest, which configures the celery executor from lake.json (broker and result backend = Redis).
"""

import dagster as dg
from dagster_celery import celery_executor

from shequ import config as shequ_config


class LakeIngestConfig(dg.Config):
    inbox: str = str(shequ_config.inbox_path())
    warehouse: str = str(shequ_config.warehouse_path())
    registry_dir: str = str(shequ_config.REGISTRY_DIR)
    scheme: str = str(shequ_config.DEFAULT_SCHEME)
    reviews: str = str(shequ_config.reviews_path())
    quarters: list[str] = []          # empty: every quarter the inbox holds
    namespace: str = ""               # Iceberg namespace and staging prefix; empty: SHEQU_LAKE_NAMESPACE or shequ


def _cfg(c: LakeIngestConfig):
    from shequ.lake import LakeConfig

    cfg = LakeConfig.load()
    if c.namespace:
        cfg.namespace = c.namespace
    return cfg


@dg.op(out=dg.DynamicOut(str), description="列出本次要暂存的收件箱文件（每个文件一个暂存任务）")
def list_inbox_files(context: dg.OpExecutionContext, config: LakeIngestConfig):
    from shequ.distributed import list_files

    files = list_files(config.inbox, config.quarters or None)
    context.log.info(f"收件箱 {config.inbox}：{len(files)} 个文件")
    for i, e in enumerate(files):
        yield dg.DynamicOutput(e.rel, mapping_key=f"f{i:05d}_{e.file_id[:12]}")


@dg.op(retry_policy=dg.RetryPolicy(max_retries=2, delay=1),
       description="在任一工作节点上读取、标准化并暂存一个文件（写入对象存储，提交标记最后写，重试结果相同）")
def stage_file(context: dg.OpExecutionContext, config: LakeIngestConfig, rel: str) -> dict:
    from pathlib import Path

    from shequ.distributed import stage_file as stage

    m = stage(Path(config.inbox) / rel, config.inbox, _cfg(config), config.registry_dir)
    context.log.info(f"{rel}：{m['status']}，入库 {m['n_loaded']}，隔离 {m['n_quarantined']}"
                     f"{'（已暂存，未重读）' if m.get('reused') else ''}，工作节点 {m['worker']}")
    return {k: m.get(k) for k in ("source_file", "file_id", "status", "attempt", "worker", "reused")}


@dg.op(description="全部文件暂存后：按季度合并暂存行、计算事实/汇总/质量/评比并校验，原子发布到湖仓")
def merge_and_publish(context: dg.OpExecutionContext, config: LakeIngestConfig, staged: list[dict]) -> dict:
    from shequ import lake, pipeline
    from shequ.distributed import build_quarter, merge_quarter
    from shequ.warehouse import connect

    cfg = _cfg(config)
    quarters = config.quarters or pipeline.quarters_in_inbox(config.inbox)
    published, failed = [], {}
    for q in quarters:
        with connect(config.warehouse) as con:
            pipeline.stage_dimensions(con, config.registry_dir)
            m = merge_quarter(con, config.inbox, q, cfg)
        b = build_quarter(config.warehouse, q, config.scheme, config.reviews)
        if not b["ok"]:
            failed[q] = b["failed"]
            context.log.warning(f"{q} 阻断性检查未通过，未发布到湖仓：{'；'.join(b['failed'])[:500]}")
            continue
        with connect(config.warehouse, read_only=True) as con:
            r = lake.publish_quarter(con, q, cfg, run_id=context.run_id)
        published.append(q)
        context.log.info(f"{q}：合并 {len(m.merged)} 个文件（{m.unchanged} 个此前已入库），发布 "
                         f"{sum(r['rows'].values())} 行，{r['seconds']} 秒")
    if failed:
        raise dg.Failure(description=f"季度 {'、'.join(failed)} 阻断性检查未通过，未发布（湖仓保留上一次的结果）",
                         metadata={"未通过": {q: "；".join(v)[:500] for q, v in failed.items()}})
    fresh = [s for s in staged if not s.get("reused")]
    return {"published": published, "files": len(staged), "reused": len(staged) - len(fresh),
            "workers": sorted({s["worker"].split(":")[0] for s in fresh if s.get("worker")})}


@dg.job(executor_def=celery_executor, description="湖仓分布式采集：每个收件箱文件一个 celery 任务，季度合并后发布")
def lake_ingest():
    merge_and_publish(list_inbox_files().map(stage_file).collect())
