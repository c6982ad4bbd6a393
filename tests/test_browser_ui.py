"""The Dagster UI as a person uses it, in headless Chromium: `dagster dev` on loopback with a temporary
instance, warehouse and the bundled inbox; open the asset graph, launch one quarter partition from the
Materialize dialog, wait for the run, see the checks pass; launch a backfill of two quarters and find one run.
Screenshots go to data/screenshots/ (git-ignored)."""

import re
import time

import pytest

from browser_helpers import SCREENSHOTS, DagsterDev, browser, new_page, require_browser  # noqa: F401
from shequ.config import DEFAULT_INBOX
from shequ.snapshot import snapshot_path
from shequ.warehouse import connect

pytestmark = pytest.mark.browser

GROUPS = ["s1_raw", "s2_dimensions", "s3_staged", "s4_facts", "s5_rankings", "s6_publish"]
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    require_browser()
    root = tmp_path_factory.mktemp("dagster_ui")
    dev = DagsterDev(home=root / "home", warehouse=root / "warehouse.duckdb", inbox=DEFAULT_INBOX).start()
    TIMINGS["dagster dev 就绪 s"] = dev.ready_seconds
    try:
        yield dev
    finally:
        dev.stop()
        print("\n浏览器测试计时：", {k: round(v, 1) for k, v in TIMINGS.items()})


def _page(browser, ui):
    page = new_page(browser)
    page.set_default_timeout(30_000)
    return page


def _shot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=False)


def _new_run(ui, before: set[str], timeout=60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        new = [r for r in ui.runs() if r["runId"] not in before]
        if new:
            return new[0]
        time.sleep(0.5)
    raise TimeoutError(f"界面未发起运行：{ui.log_tail()}")


def _open_materialize_dialog(page, ui):
    page.goto(f"{ui.url}/asset-groups", wait_until="domcontentloaded")
    for g in GROUPS:
        page.get_by_text(g, exact=True).first.wait_for()
    page.get_by_role("button", name="Materialize all").click()
    dialog = page.get_by_role("dialog").filter(has_text="Partition selection")
    dialog.wait_for()
    return dialog


def _select_quarters(page, dialog, quarters: list[str]) -> None:
    """Pick quarters in the dialog's partition selector as a person does: open it, type 2024Q3 into its filter,
    tick the quarter (static partition keys are listed, so nothing is "created")."""
    dialog.get_by_text("Select a partition or create one").click()
    flt = page.get_by_placeholder("Filter partitions")
    for q in quarters:
        flt.fill(q)
        page.get_by_role("menuitem").filter(has=page.locator(f'[data-tooltip="{q}"]')).first.click()
    flt.fill("")
    dialog.get_by_text("Launch runs to materialize", exact=False).first.click()   # close the popover
    n = len(quarters)
    dialog.get_by_text(f"{n} partition{'s' if n > 1 else ''}", exact=True).wait_for()


def _ranked(ui, quarter: str) -> int:
    with connect(snapshot_path(ui.warehouse), read_only=True) as con:
        return con.execute("SELECT count(*) FROM fact_ranking WHERE period_key = ? AND rank IS NOT NULL",
                           [quarter]).fetchall()[0][0]


CHECKS_OF_RUN = """query($key: AssetKeyInput!, $name: String!) {
  assetCheckExecutions(assetKey: $key, checkName: $name, limit: 5) {
    runId status partition evaluation { success severity } } }"""


def test_asset_graph_materialise_one_quarter_and_checks_pass(browser, ui):
    page = _page(browser, ui)
    t0 = time.monotonic()
    dialog = _open_materialize_dialog(page, ui)
    TIMINGS["资产图打开 s"] = time.monotonic() - t0
    _shot(page, "01_materialize_dialog.png")
    page.keyboard.press("Escape")

    # one asset: description in Chinese and English, group, partitions
    page.goto(f"{ui.url}/assets/fact_ranking", wait_until="domcontentloaded")
    page.get_by_text("三级评比", exact=False).first.wait_for()
    page.get_by_text("The appraisal", exact=False).first.wait_for()
    page.get_by_text("s5_rankings", exact=True).first.wait_for()
    _shot(page, "02_asset_fact_ranking.png")

    # launch the 2024Q3 partition of every asset from the Materialize dialog (partition keys are spelled 2024Q3)
    before = {r["runId"] for r in ui.runs()}
    dialog = _open_materialize_dialog(page, ui)
    _select_quarters(page, dialog, ["2024Q3"])
    t0 = time.monotonic()
    dialog.get_by_role("button", name="Launch 1 run").click()
    try:
        dialog.wait_for(state="hidden")
        run = _new_run(ui, before)
    except Exception:
        _shot(page, "03_launch_failed.png")
        raise
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags.get("dagster/partition") == "2024Q3", tags
    status = ui.wait_run(run["runId"])
    TIMINGS["单季度运行 s"] = time.monotonic() - t0
    assert status == "SUCCESS", ui.log_tail()
    # the run tags itself with its quarter when it starts (a UI launch carries only dagster/partition)
    run = next(r for r in ui.runs() if r["runId"] == run["runId"])
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert tags.get("shequ/quarter") == "2024Q3", tags

    page.goto(f"{ui.url}/runs/{run['runId']}", wait_until="domcontentloaded")
    page.get_by_text("Success", exact=True).first.wait_for()
    _shot(page, "03_run_success.png")

    # the checks tab of the asset shows the suite passed, for that run
    page.goto(f"{ui.url}/assets/fact_ranking?view=checks", wait_until="domcontentloaded")
    page.get_by_text("fact_ranking_suite", exact=True).first.wait_for()
    page.get_by_text("Passed", exact=False).first.wait_for()
    _shot(page, "04_checks_passed.png")
    for asset, check in [("fact_ranking", "fact_ranking_suite"), ("fact_indicator_value", "fact_indicator_value_suite"),
                         ("agg_indicator_value", "agg_indicator_value_suite"), ("dimensions", "dim_community_suite")]:
        ex = ui.graphql(CHECKS_OF_RUN, {"key": {"path": [asset]}, "name": check})["assetCheckExecutions"]
        mine = [e for e in ex if e["runId"] == run["runId"]]
        assert mine and mine[0]["status"] == "SUCCEEDED" and mine[0]["evaluation"]["success"], (check, ex)

    assert _ranked(ui, "2024Q3") > 100                         # the run published its snapshot
    assert not [e for e in page.js_errors if e.startswith("pageerror")], page.js_errors
    page.close()


BACKFILLS = """{ partitionBackfillsOrError(limit: 5) { ... on PartitionBackfills { results {
  id status numPartitions partitionNames runs(limit: 10) { runId status tags { key value } } } } } }"""


def test_backfill_of_two_quarters_runs_as_one_run(browser, ui):
    page = _page(browser, ui)
    dialog = _open_materialize_dialog(page, ui)
    _select_quarters(page, dialog, ["2024Q1", "2024Q2"])
    _shot(page, "05_backfill_dialog.png")
    t0 = time.monotonic()
    dialog.get_by_role("button", name="Launch backfill").click()
    deadline = time.monotonic() + 180
    while True:
        backfills = ui.graphql(BACKFILLS)["partitionBackfillsOrError"]["results"]
        assert backfills or time.monotonic() < t0 + 30, "界面未创建回填"
        bf = backfills[0] if backfills else {"status": None}
        if bf["status"] in ("COMPLETED", "COMPLETED_SUCCESS", "COMPLETED_FAILED", "FAILED", "CANCELED"):
            break
        assert time.monotonic() < deadline, (bf, ui.log_tail())
        time.sleep(1)
    TIMINGS["两季度回填 s"] = time.monotonic() - t0
    assert bf["status"] in ("COMPLETED", "COMPLETED_SUCCESS"), bf
    assert bf["numPartitions"] == 2
    assert len(bf["runs"]) == 1, bf["runs"]                   # BackfillPolicy.single_run: one run, two quarters
    run = bf["runs"][0]
    tags = {t["key"]: t["value"] for t in run["tags"]}
    assert run["status"] == "SUCCESS"
    assert (tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"]) == \
        ("2024Q1", "2024Q2"), tags
    assert _ranked(ui, "2024Q1") > 100 and _ranked(ui, "2024Q2") > 100
    page.goto(f"{ui.url}/runs/b/{bf['id']}", wait_until="domcontentloaded")
    page.wait_for_timeout(1500)
    _shot(page, "06_backfill_one_run.png")
    page.close()
