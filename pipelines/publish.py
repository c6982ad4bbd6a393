"""Stage 6: publish a read-only snapshot of the warehouse for notebooks and other readers (shequ.snapshot),
write the quarterly HTML report of each quarter from it (shequ.report), and rebuild the Great Expectations Data
Docs (shequ.datadocs), so a run from the UI, the schedule or the sensor refreshes everything `shequ refresh` does."""

import os
import pickle
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg

from shequ import config, datadocs
from shequ.snapshot import publish_snapshot, read_only, snapshot_path

from .assets import COMMON, agg_indicator_value, analysis_sensitivity, fact_ranking
from .partitions import quarters_of
from .resources import ShequWarehouse


@dg.asset(group_name="s6_publish", deps=[agg_indicator_value, fact_ranking, analysis_sensitivity],
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
    from shequ.report import NoDataError, write_report  # plotly: loaded by the run, not by the code location

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


def data_docs_dir(warehouse: str | os.PathLike) -> Path:
    """data/docs for the default warehouse, else a docs/ folder beside the warehouse file."""
    wh = Path(warehouse)
    return config.DATA_DIR / "docs" if wh.resolve() == config.DEFAULT_WAREHOUSE.resolve() else wh.parent / "docs"


# Data Docs processes started ahead (start_data_docs), by output folder. Importing GX takes seconds; a process
# started at the beginning of a refresh imports it on the second core while the refresh works, then waits on its
# stdin until the data_docs step sends it the check results (python -m shequ.datadocs --rows-on-stdin).
_STARTED: dict[str, subprocess.Popen] = {}


def _docs_wanted(tags) -> bool:
    """False when SHEQU_NO_DATADOCS is set or the run is tagged shequ/datadocs=skip."""
    return not (os.environ.get("SHEQU_NO_DATADOCS") or tags.get("shequ/datadocs") == "skip")


def _spawn_data_docs(out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "shequ.datadocs", "--rows-on-stdin", "--out", str(out)],
                            cwd=config.ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def start_data_docs(warehouse: str | os.PathLike) -> None:
    """Start the Data Docs process for ``warehouse`` ahead of its data_docs step (once; a no-op when one waits
    already). A process whose step never comes ends when this process does (its stdin closes) or at
    ``stop_data_docs``, and writes nothing."""
    key = str(data_docs_dir(warehouse))
    proc = _STARTED.get(key)
    if proc is None or proc.poll() is not None:
        _STARTED[key] = _spawn_data_docs(Path(key))


def stop_data_docs() -> None:
    """End the processes started ahead whose data_docs step did not run (a failed or skipped step)."""
    while _STARTED:
        _, proc = _STARTED.popitem()
        proc.kill()
        proc.communicate()


@dg.asset(group_name="s6_publish", deps=[fact_ranking],
          description="数据质量文档：Great Expectations Data Docs（离线可用的 HTML，每个季度每个套件的校验结果），"
                      "在子进程中生成（GX 导入需数秒，不进入代码位置）/ Great Expectations Data Docs: offline HTML "
                      "of every suite's results per quarter, rendered in a subprocess.",
          **COMMON)
def data_docs(context: dg.AssetExecutionContext, warehouse: ShequWarehouse) -> dg.MaterializeResult:
    quarters = quarters_of(context)
    out = data_docs_dir(warehouse.path)
    if not _docs_wanted(context.run.tags):
        # `shequ refresh` renders them once, with its last quarter; tests skip the GX import
        context.log.info("本次运行跳过数据质量文档（SHEQU_NO_DATADOCS 或标签 shequ/datadocs=skip）")
        return dg.MaterializeResult(metadata={"季度": quarters, "跳过": True})
    t0 = time.monotonic()
    proc = _STARTED.pop(str(out), None)   # started ahead (by `shequ refresh` or inbox_files), else start it now
    if proc is None or proc.poll() is not None:
        proc = _spawn_data_docs(out)
    try:
        rows = pickle.dumps(datadocs.results(Path(warehouse.path)))
    except BaseException:
        proc.kill()
        proc.communicate()
        raise
    stdout, stderr = proc.communicate(rows)
    if proc.returncode != 0:
        tail = (stderr or stdout).decode("utf-8", "replace").strip().splitlines()[-5:]
        raise dg.Failure(description=f"数据质量文档生成失败：{' / '.join(tail)}")
    context.log.info(f"数据质量文档：{out / 'index.html'}")
    return dg.MaterializeResult(metadata={"季度": quarters, "目录": str(out),
                                          "首页": dg.MetadataValue.path(str(out / "index.html")),
                                          "秒": round(time.monotonic() - t0, 1)})


PUBLISH_ASSETS = [warehouse_snapshot, quarterly_report, data_docs]
