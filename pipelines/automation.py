"""The quarterly schedule and the inbox sensor, both on by default (issue 10 item 3).

The service (`shequ serve start`) runs them from the first minute: DefaultScheduleStatus/DefaultSensorStatus
RUNNING. Switching one off in the UI (Automation) is stored in the instance and outlives restarts.
SHEQU_AUTOMATION=off makes both start STOPPED (a throw-away `dagster dev` in a test that must not see runs it
did not launch)."""

import datetime as dt
import hashlib
import json
import os
import zoneinfo
from pathlib import Path

import dagster as dg

from shequ import config
from shequ.periods import last_completed_quarter, quarter_to_partition

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
AUTOMATION_ON = os.environ.get("SHEQU_AUTOMATION", "on").lower() not in ("off", "0", "false", "no")
refresh_job = dg.define_asset_job(
    "quarterly_refresh", selection=dg.AssetSelection.all(), executor_def=dg.in_process_executor,
    description="季度刷新：收件箱 -> 维表 -> 暂存 -> 事实 -> 汇总 -> 排名 -> 快照（单进程执行器） / "
                "Quarterly refresh: inbox to snapshot, in one process")


# build_schedule_from_partitioned_job fires in UTC and refuses a time zone for custom-cron partitions, so the
# schedule is written by hand: 06:00 Beijing time on the 5th day of Jan/Apr/Jul/Oct, for the quarter just ended.
@dg.schedule(cron_schedule="0 6 5 1,4,7,10 *", execution_timezone="Asia/Shanghai", job=refresh_job,
             default_status=dg.DefaultScheduleStatus.RUNNING if AUTOMATION_ON else dg.DefaultScheduleStatus.STOPPED,
             description="每季度结束后次月5日06:00（北京时间）刷新上一季度 / "
                         "06:00 Beijing time on the 5th after each quarter: refresh the quarter just ended")
def quarterly_refresh_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    when = context.scheduled_execution_time or dt.datetime.now(SHANGHAI)
    quarter = last_completed_quarter(when.astimezone(SHANGHAI).date())
    return dg.RunRequest(run_key=f"scheduled-{quarter}", partition_key=quarter_to_partition(quarter),
                         tags={"shequ/quarter": quarter})


CURSOR_VERSION = 2


def recorded_file_ids(warehouse: Path) -> set[str]:
    """Content hashes (raw_file.file_id, the sha256 ingest gives a file) of every file the warehouse has
    recorded, loaded or rejected: what a first sensor tick must not queue again. The live warehouse is opened
    read-only for a moment; while a run holds it, the last published snapshot is read instead."""
    from shequ.snapshot import snapshot_path
    from shequ.warehouse import connect

    errors = []
    for path in (warehouse, snapshot_path(warehouse)):
        if not Path(path).exists():
            continue
        try:
            with connect(path, read_only=True, retries=5.0) as con:
                if not con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'raw_file'"
                                   ).fetchall()[0][0]:
                    return set()
                return {r[0] for r in con.execute("SELECT file_id FROM raw_file").fetchall()}
        except Exception as e:  # the file is held by a writer: try the snapshot
            errors.append(f"{path}: {e}")
    if errors:
        # never guess "nothing is loaded" (that would queue every quarter): fail the tick, the next one retries
        raise RuntimeError("无法读取仓库中已入库的文件，本次检查不排队任何运行：" + "；".join(errors))
    return set()


def _file_quarters(path: Path, inbox: Path) -> list[str]:
    from shequ.pipeline import file_quarters

    # the quarter the name or folder says, else the one the contents say; a file that tells none is read by
    # the run of the last completed quarter (which records it, rejected if need be)
    return file_quarters(path, inbox) or [last_completed_quarter(dt.datetime.now(SHANGHAI).date())]


def inbox_changes(inbox: Path, cursor: str | None, warehouse: Path) -> tuple[list[str], str, list[str]]:
    """(quarters to refresh, new cursor, relative paths that caused them).

    The cursor records every inbox file as [size, mtime_ns, sha256]; a file whose size and mtime are unchanged
    keeps its recorded hash (not read again). Without a cursor (first tick, or a cursor of an older format) the
    inbox is taken as it is and only files whose content the warehouse has not recorded count; afterwards a
    file counts when its content is new to the inbox (a new file, or a changed one; a renamed or touched copy
    of the same bytes does not)."""
    from shequ.ingest import inventory, sha256  # (the readers' libraries: loaded by a tick, not at code location load)

    prev = None
    if cursor:
        try:
            data = json.loads(cursor)
            if isinstance(data, dict) and data.get("v") == CURSOR_VERSION:
                prev = data["files"]
        except ValueError:
            prev = None
    known = {v[2] for v in prev.values()} if prev is not None else recorded_file_ids(warehouse)
    now: dict[str, list] = {}
    quarters: set[str] = set()
    causes = []
    if inbox.is_dir():
        for p in inventory(inbox):
            st = p.stat()
            rel = p.relative_to(inbox).as_posix()
            old = (prev or {}).get(rel)
            digest = old[2] if old and old[0] == st.st_size and old[1] == st.st_mtime_ns else sha256(p)
            now[rel] = [st.st_size, st.st_mtime_ns, digest]
            if digest not in known:
                quarters.update(_file_quarters(p, inbox))
                causes.append(rel)
    new_cursor = json.dumps({"v": CURSOR_VERSION, "files": now}, ensure_ascii=False, sort_keys=True)
    return sorted(quarters), new_cursor, causes


@dg.sensor(job=refresh_job, minimum_interval_seconds=int(os.environ.get("SHEQU_SENSOR_INTERVAL", "60")),
           default_status=dg.DefaultSensorStatus.RUNNING if AUTOMATION_ON else dg.DefaultSensorStatus.STOPPED,
           description="收件箱出现新文件或文件内容变化时，刷新这些文件所属的季度（首次运行只记录收件箱现状，"
                       "仓库中已有的文件不再刷新） / New or changed inbox files: refresh their quarters (the first "
                       "tick records the inbox and skips files the warehouse already holds)")
def inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    inbox = Path(config.inbox_path())
    quarters, cursor, causes = inbox_changes(inbox, context.cursor, Path(config.warehouse_path()))
    # the run key names the inbox state (content hashes): one run per state and quarter
    state = hashlib.sha256(cursor.encode()).hexdigest()[:16]
    requests = [dg.RunRequest(run_key=f"inbox-{q}-{state}", partition_key=quarter_to_partition(q),
                              tags={"shequ/quarter": q, "shequ/trigger": "inbox"})
                for q in quarters]
    if causes:
        context.log.info(f"收件箱新增或修改的文件：{'、'.join(causes[:20])}；刷新季度 {', '.join(quarters)}")
    first = not context.cursor
    skip = None if requests else dg.SkipReason(
        "首次运行：已记录收件箱现状，其中的文件均已入库" if first else "收件箱没有新文件或修改过的文件")
    return dg.SensorResult(run_requests=requests, cursor=cursor, skip_reason=skip)
