"""The quarterly schedule and the inbox sensor."""

import datetime as dt
import hashlib
import json
import zoneinfo
from pathlib import Path

import dagster as dg

from shequ import config
from shequ.ingest import inventory, path_quarter
from shequ.periods import last_completed_quarter, quarter_to_partition

SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")
refresh_job = dg.define_asset_job(
    "quarterly_refresh", selection=dg.AssetSelection.all(), executor_def=dg.in_process_executor,
    description="季度刷新：收件箱 -> 维表 -> 暂存 -> 事实 -> 汇总 -> 排名 -> 快照（单进程执行器） / "
                "Quarterly refresh: inbox to snapshot, in one process")


# build_schedule_from_partitioned_job fires in UTC and refuses a time zone for custom-cron partitions, so the
# schedule is written by hand: 06:00 Beijing time on the 5th day of Jan/Apr/Jul/Oct, for the quarter just ended.
@dg.schedule(cron_schedule="0 6 5 1,4,7,10 *", execution_timezone="Asia/Shanghai", job=refresh_job,
             description="每季度结束后次月5日06:00（北京时间）刷新上一季度 / "
                         "06:00 Beijing time on the 5th after each quarter: refresh the quarter just ended")
def quarterly_refresh_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
    when = context.scheduled_execution_time or dt.datetime.now(SHANGHAI)
    quarter = last_completed_quarter(when.astimezone(SHANGHAI).date())
    return dg.RunRequest(run_key=f"scheduled-{quarter}", partition_key=quarter_to_partition(quarter),
                         tags={"shequ/quarter": quarter})


@dg.sensor(job=refresh_job, minimum_interval_seconds=60,
           description="收件箱出现新文件或文件被修改时，刷新文件名/目录所指的季度 / "
                       "New or changed inbox files: refresh the quarter their name or folder gives")
def inbox_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    inbox = Path(config.inbox_path())
    seen = json.loads(context.cursor) if context.cursor else {}
    now = {}
    changed_quarters: set[str] = set()
    unknown = []
    if inbox.is_dir():
        for p in inventory(inbox):
            st = p.stat()
            sig = f"{st.st_size}:{int(st.st_mtime)}"
            rel = str(p.relative_to(inbox))
            now[rel] = sig
            if seen.get(rel) != sig:
                q = path_quarter(p, inbox)
                if q:
                    changed_quarters.add(q)
                else:
                    unknown.append(rel)
    if unknown:
        # the quarter is inside the file: refresh the last completed quarter, whose run reads such files
        changed_quarters.add(last_completed_quarter(dt.datetime.now(SHANGHAI).date()))
    # the run key names the inbox state (not Python's per-process randomised hash): one run per state and quarter
    state = hashlib.sha256(json.dumps(sorted(now.items()), ensure_ascii=False).encode()).hexdigest()[:16]
    requests = [dg.RunRequest(run_key=f"inbox-{q}-{state}",
                              partition_key=quarter_to_partition(q), tags={"shequ/quarter": q})
                for q in sorted(changed_quarters)]
    return dg.SensorResult(run_requests=requests, cursor=json.dumps(now, ensure_ascii=False),
                           skip_reason=None if requests else dg.SkipReason("收件箱没有新文件"))
