"""The code location `dagster dev` loads (pyproject.toml [tool.dg.project] root_module = pipelines)."""

import dagster as dg

from .assets import ASSETS
from .publish import PUBLISH_ASSETS
from .automation import inbox_sensor, quarterly_refresh_schedule, refresh_job
from .resources import ShequWarehouse

defs = dg.Definitions(
    assets=[*ASSETS, *PUBLISH_ASSETS],
    jobs=[refresh_job],
    schedules=[quarterly_refresh_schedule],
    sensors=[inbox_sensor],
    resources={"warehouse": ShequWarehouse()},
    executor=dg.in_process_executor,
)
