"""Shared fixtures: a generated two-quarter sample inbox (2023Q4 and 2024Q1, either side of the 兴隆 merger)
and a warehouse built from it by the real Dagster job, executed in-process."""

import shutil
import warnings
from pathlib import Path

import pytest

warnings.filterwarnings("ignore", module="dagster")

QUARTERS = ["2023Q4", "2024Q1", "2024Q2"]


def run_quarter(warehouse: Path, inbox: Path, quarter: str):
    """Materialise every asset of the quarterly_refresh job for one quarter, as `shequ refresh` does."""
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.resources import ShequWarehouse
    from shequ.periods import quarter_to_partition

    from shequ.cli import QUIET

    job = defs.resolve_job_def("quarterly_refresh")
    # the GX Data Docs asset is skipped (a subprocess importing GX, 8-25 s; tests/test_datadocs.py builds them)
    return job.execute_in_process(
        partition_key=quarter_to_partition(quarter), instance=dg.DagsterInstance.ephemeral(), run_config=QUIET,
        tags={"shequ/datadocs": "skip"},
        resources={"warehouse": ShequWarehouse(path=str(warehouse), inbox=str(inbox))}, raise_on_error=False)


@pytest.fixture(scope="session")
def sample_inbox(tmp_path_factory) -> Path:
    from shequ.sample import write_sample_inbox

    inbox = tmp_path_factory.mktemp("sample") / "inbox"
    write_sample_inbox(inbox, QUARTERS)
    return inbox


@pytest.fixture(scope="session")
def full_sample_warehouse(tmp_path_factory) -> Path:
    """The bundled 8-quarter sample inbox refreshed by `shequ refresh` (the README's main job), once per session."""
    import subprocess
    import sys

    wh = tmp_path_factory.mktemp("full_sample") / "warehouse.duckdb"
    shequ = Path(sys.executable).with_name("shequ")
    subprocess.run([str(shequ), "refresh", "--warehouse", str(wh)], check=True, capture_output=True)
    return wh


@pytest.fixture(scope="session")
def built(tmp_path_factory, sample_inbox) -> dict:
    wh = tmp_path_factory.mktemp("wh") / "warehouse.duckdb"
    results = {q: run_quarter(wh, sample_inbox, q) for q in QUARTERS}
    return {"warehouse": wh, "inbox": sample_inbox, "results": results}


@pytest.fixture
def con(built):
    from shequ.warehouse import connect

    with connect(built["warehouse"], read_only=True) as c:
        yield c


@pytest.fixture
def workspace(tmp_path, built) -> dict:
    """A private copy of the built warehouse and inbox for tests that change them."""
    wh = tmp_path / "warehouse.duckdb"
    shutil.copy(built["warehouse"], wh)
    inbox = tmp_path / "inbox"
    shutil.copytree(built["inbox"], inbox)
    return {"warehouse": wh, "inbox": inbox}


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """An empty warehouse with the schema and dimensions loaded, to copy per test."""
    from shequ import pipeline
    from shequ.warehouse import connect

    db = tmp_path_factory.mktemp("tpl") / "t.duckdb"
    with connect(db) as con:
        pipeline.stage_dimensions(con)
    return db


def transposed_month_workbook(communities=("北村社区", "标山南社区"), title=True):
    """H25: indicators as rows, communities as columns, one sheet per month (7月, 8月, 9月份)."""
    from openpyxl import Workbook

    wb = Workbook()
    for i, name in enumerate(["7月", "8月", "9月份"]):
        ws = wb.active if i == 0 else wb.create_sheet()
        ws.title = name
        if title:
            ws.append([f"天桥区2024年{name}社区工作月报"])
        ws.append(["街道", None, "北村街道", "北村街道"])
        ws.append(["指标", "单位", *communities])
        ws.append(["帮助就业安置人次", "人次", 10 + i, 20 + i])
        ws.append(["社区工作者人数", "人", 7, 8 + i])
    return wb
