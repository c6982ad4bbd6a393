"""Quarter partitions, keyed as the warehouse spells quarters: 2024Q3.

A static list of the calendar quarters from 2020Q1 to the current quarter (Beijing time, when the code location
loads): the UI lists quarters, an analyst types 2024Q3, a backfill range reads [2024Q1...2024Q2], and the
schedule and the sensor address the same keys with no partition bookkeeping in the instance. The service's code
server is restarted with `shequ serve stop/start`; a long-running one learns a new quarter on its next start
(the schedule only ever asks for the quarter just ended, which is in the list)."""

import datetime as dt
import zoneinfo

import dagster as dg

from shequ.periods import partition_to_quarter, quarter_of_date, quarters_between

FIRST_QUARTER = "2020Q1"
SHANGHAI = zoneinfo.ZoneInfo("Asia/Shanghai")


def calendar_quarters(today: dt.date | None = None) -> list[str]:
    today = today or dt.datetime.now(SHANGHAI).date()
    return quarters_between(FIRST_QUARTER, quarter_of_date(today))


quarterly = dg.StaticPartitionsDefinition(calendar_quarters())


def quarters_of(context) -> list[str]:
    """Quarter keys of the run: one, or a range when a backfill runs as a single run. The run is tagged with
    them (shequ/quarter) whichever way it was launched: schedule, sensor, CLI or the UI's Materialize dialog."""
    quarters = [partition_to_quarter(k) for k in context.partition_keys]
    try:
        run = context.run
        tag = quarters[0] if len(quarters) == 1 else f"{quarters[0]}:{quarters[-1]}"
        if run.tags.get("shequ/quarter") != tag:
            context.instance.add_run_tags(run.run_id, {"shequ/quarter": tag})
    except Exception as e:  # tagging is a convenience for the UI; never fail a stage over it
        context.log.debug(f"无法给运行加季度标签：{e}")
    return quarters
