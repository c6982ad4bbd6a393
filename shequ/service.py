"""The Dagster instance a `shequ refresh` records its runs in.

1. DAGSTER_HOME set: the instance there (so the UI that reads the same home shows what the CLI did).
2. Else, when the service is configured (SHEQU_HOME, default data/service/, holds the dagster.yaml that
   `shequ serve start` generates): the service's PostgreSQL instance, so the service UI lists CLI runs and their
   materialisations next to the scheduled and sensor runs (issue 10 item 4).
3. Else an ephemeral instance (nothing kept).
"""

import os


def refresh_instance():
    """(instance, Chinese sentence saying where the run history goes)."""
    import dagster as dg

    home = os.environ.get("DAGSTER_HOME")
    if home:
        return dg.DagsterInstance.get(), f"运行记录写入 Dagster 实例 DAGSTER_HOME={home}"
    from .serve import ServeError, is_configured, service_home, service_instance

    sh = service_home()
    if is_configured(sh):
        try:
            return service_instance(sh), f"运行记录写入 shequ 服务的 Dagster 实例（{sh}，PostgreSQL），界面中可见"
        except ServeError as e:
            first = str(e).splitlines()[0]
            return dg.DagsterInstance.ephemeral(), (f"[yellow]运行记录未保存：服务已配置（{sh}）但其 PostgreSQL "
                                                    f"不可用（{first}）；先运行 shequ serve start[/yellow]")
    return dg.DagsterInstance.ephemeral(), "运行记录未保存（未设置 DAGSTER_HOME，也未配置 shequ serve 服务）"
