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


def recorded_file_ids(warehouse: Path, column: str = "file_id") -> set[str]:
    """Content hashes (raw_file.file_id, the sha256 ingest gives a file) of every file the warehouse has
    recorded, loaded or rejected: what a first sensor tick must not queue again (column="object_etag": the ETags
    of the objects read from an inbox in object storage). The live warehouse is opened read-only for a moment;
    while a run holds it, the last published snapshot is read instead."""
    from shequ.snapshot import snapshot_path
    from shequ.warehouse import connect

    errors = []
    for path in (warehouse, snapshot_path(warehouse)):
        if not Path(path).exists():
            continue
        try:
            with connect(path, read_only=True, retries=5.0) as con:
                if not con.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'raw_file' "
                                   "AND column_name = ?", [column]).fetchall()[0][0]:
                    return set()     # no raw_file yet, or a warehouse from before the column
                return {r[0] for r in con.execute(f"SELECT {column} FROM raw_file WHERE {column} IS NOT NULL"
                                                  ).fetchall()}
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

    prev = _cursor(cursor).get("files")
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


def _cursor(cursor: str | None) -> dict:
    """The sensor's cursor as a dict ({} for none, another format, or another inbox kind)."""
    try:
        data = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) and data.get("v") == CURSOR_VERSION else {}


def object_inbox_changes(uri: str, cursor: str | None, warehouse: Path) -> tuple[list[str], str, list[str]]:
    """inbox_changes for an inbox in object storage (SHEQU_INBOX=s3://bucket/prefix, shequ/object_inbox.py).

    The cursor records every object as [size, ETag, VersionId] (the listing gives them: nothing is downloaded
    to tell what changed). Without a cursor for this inbox only objects whose ETag the warehouse has not
    recorded count; afterwards an object counts when its ETag is new to the inbox: a new object, or a new
    version with other bytes (a copy of the same bytes under another key, or uploaded again, does not)."""
    from shequ.ingest import rel_quarter
    from shequ.object_inbox import ObjectInbox, new_objects

    data = _cursor(cursor)
    prev = data.get("objects") if data.get("inbox") == uri else None
    ob = ObjectInbox(uri)
    state, new = new_objects(ob, prev, recorded_file_ids(warehouse, "object_etag") if prev is None else set())
    quarters: set[str] = set()
    for o in new:
        q = rel_quarter(o.rel)
        # as for a local file: the key says, else the contents say, else the last completed quarter
        quarters.update([q] if q else ob.content_quarters(o)
                        or [last_completed_quarter(dt.datetime.now(SHANGHAI).date())])
    new_cursor = json.dumps({"v": CURSOR_VERSION, "inbox": uri, "objects": state}, ensure_ascii=False,
                            sort_keys=True)
    return sorted(quarters), new_cursor, [o.rel for o in new]


@dg.sensor(job=refresh_job, minimum_interval_seconds=int(os.environ.get("SHEQU_SENSOR_INTERVAL", "60")),
           default_status=dg.DefaultSensorStatus.RUNNING if AUTOMATION_ON else dg.DefaultSensorStatus.STOPPED,
           description="收件箱出现新文件或文件内容变化时，刷新这些文件所属的季度（首次运行只记录收件箱现状，"
                       "仓库中已有的文件不再刷新） / New or changed inbox files: refresh their quarters (the first "
                       "tick records the inbox and skips files the warehouse already holds)")
def inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    inbox = config.inbox_path()
    if config.is_object_inbox(inbox):    # s3://bucket/prefix: an unreachable store fails the tick, naming it
        quarters, cursor, causes = object_inbox_changes(inbox, context.cursor, Path(config.warehouse_path()))
    else:
        quarters, cursor, causes = inbox_changes(Path(inbox), context.cursor, Path(config.warehouse_path()))
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
