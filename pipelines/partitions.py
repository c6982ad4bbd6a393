"""Quarter partitions. Dagster keys are the quarter's first day (2024-07-01); the warehouse spells 2024Q3.
shequ.periods maps between the two in one place."""

import dagster as dg

from shequ.periods import partition_to_quarter

FIRST_QUARTER_START = "2020-01-01"

quarterly = dg.TimeWindowPartitionsDefinition(
    start=FIRST_QUARTER_START,
    cron_schedule="0 0 1 1,4,7,10 *",
    fmt="%Y-%m-%d",
    timezone="Asia/Shanghai",
)


def quarters_of(context) -> list[str]:
    """Quarter keys of the run: one, or a range when a backfill runs as a single run."""
    return [partition_to_quarter(k) for k in context.partition_keys]
