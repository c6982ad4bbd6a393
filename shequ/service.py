"""The Dagster instance a `shequ refresh` records its runs in.

With DAGSTER_HOME set, the instance there (so the UI that reads the same home shows what the CLI did); without
it, an ephemeral instance (nothing kept). The `shequ serve` service (issue 10 item 1) is not built yet.
"""

import os


def refresh_instance():
    """(instance, Chinese sentence saying where the run history goes)."""
    import dagster as dg

    home = os.environ.get("DAGSTER_HOME")
    if home:
        return dg.DagsterInstance.get(), f"运行记录写入 Dagster 实例 DAGSTER_HOME={home}"
    return dg.DagsterInstance.ephemeral(), "运行记录未保存（未设置 DAGSTER_HOME）"
