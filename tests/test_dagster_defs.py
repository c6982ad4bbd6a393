"""The code location: what `dagster dev` shows, the schedule, the sensor, and what must not be imported."""

import datetime as dt
import subprocess
import sys
import zoneinfo

import dagster as dg

from pipelines.automation import inbox_sensor, quarterly_refresh_schedule
from pipelines.definitions import defs
from shequ.config import ROOT


def test_code_location_loads_without_great_expectations():
    out = subprocess.run([sys.executable, "-c", "import sys, pipelines.definitions as d; "
                          "print('great_expectations' in sys.modules)"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


def test_code_location_loads_without_the_stages_libraries():
    """The code location imports what defines the assets; plotly (reports), cn2an and the readers (staging), the
    appraisal engine and the quality executor load when a run needs them (README: code location load time)."""
    heavy = ["plotly", "cn2an", "shequ.readers", "shequ.ingest", "shequ.report", "shequ.appraisal.engine",
             "shequ.dq", "shequ.quality", "great_expectations"]
    out = subprocess.run([sys.executable, "-c", "import sys, pipelines.definitions as d; "
                          f"print([m for m in {heavy!r} if m in sys.modules])"], capture_output=True, text=True,
                         cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_assets_checks_pool_and_partitions():
    job = defs.resolve_job_def("quarterly_refresh")
    assert job.executor_def.name == "in_process"
    specs = {s.key.to_user_string(): s for s in defs.resolve_all_asset_specs()}
    assert set(specs) == {"inbox_files", "dimensions", "staged_values", "fact_indicator_value",
                          "agg_indicator_value", "quality_checks", "fact_ranking", "warehouse_snapshot",
                          "quarterly_report", "data_docs", "analysis_sensitivity"}
    for name in specs:
        a = defs.resolve_assets_def(name)
        assert a.partitions_def is not None
        assert a.partitions_def.get_partition_keys()[:2] == ["2020Q1", "2020Q2"]
        assert {n.pool for n in a.node_def.iterate_op_defs()} == {"shequ_warehouse"}
    checks = defs.resolve_asset_graph().asset_check_keys
    names = {c.name for c in checks}
    assert {"dim_community_suite", "fact_indicator_value_suite", "fact_ranking_suite", "files_readable"} <= names
    suite_checks = [s for n in specs for s in defs.resolve_assets_def(n).check_specs if s.name.endswith("_suite")]
    assert len(suite_checks) == 12 and all(s.blocking for s in suite_checks)
    # the quality stage sits between the facts and the ranking
    graph = defs.resolve_asset_graph()
    ranking_deps = {k.to_user_string() for k in graph.get(dg.AssetKey("fact_ranking")).parent_keys}
    assert "quality_checks" in ranking_deps
    assert {k.to_user_string() for k in graph.get(dg.AssetKey("quality_checks")).parent_keys} == \
        {"fact_indicator_value", "agg_indicator_value"}
    # the quarterly report is written from the published snapshot, in the publish stage
    assert {k.to_user_string() for k in graph.get(dg.AssetKey("quarterly_report")).parent_keys} == \
        {"warehouse_snapshot"}
    # the sensitivity analysis runs after the ranking, in its stage, and the snapshot waits for it
    assert {k.to_user_string() for k in graph.get(dg.AssetKey("analysis_sensitivity")).parent_keys} == \
        {"fact_ranking"}
    assert "analysis_sensitivity" in {k.to_user_string() for k in graph.get(dg.AssetKey("warehouse_snapshot")).parent_keys}
    assert defs.resolve_assets_def("analysis_sensitivity").group_names_by_key[
        dg.AssetKey("analysis_sensitivity")] == "s5_rankings"
    report = defs.resolve_assets_def("quarterly_report")
    assert report.group_names_by_key[dg.AssetKey("quarterly_report")] == "s6_publish"
    assert report.backfill_policy == dg.BackfillPolicy.single_run()


def test_schedule_targets_the_quarter_just_ended_in_shanghai():
    assert quarterly_refresh_schedule.execution_timezone == "Asia/Shanghai"
    when = dt.datetime(2024, 10, 5, 6, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Shanghai"))
    ctx = dg.build_schedule_context(scheduled_execution_time=when, repository_def=defs.get_repository_def())
    req = quarterly_refresh_schedule.evaluate_tick(ctx).run_requests[0]
    assert req.partition_key == "2024Q3" and req.tags["shequ/quarter"] == "2024Q3"


def test_sensor_notices_new_files(tmp_path, monkeypatch):
    monkeypatch.setenv("SHEQU_INBOX", str(tmp_path))
    monkeypatch.setenv("SHEQU_WAREHOUSE", str(tmp_path.parent / "no_warehouse.duckdb"))
    (tmp_path / "2024Q2").mkdir()
    (tmp_path / "2024Q2" / "天桥区_2024Q2.csv").write_text("社区名称,参保率\n", encoding="utf-8")
    ctx = dg.build_sensor_context(cursor=None)
    res = inbox_sensor(ctx)
    assert [r.partition_key for r in res.run_requests] == ["2024Q2"]
    ctx2 = dg.build_sensor_context(cursor=res.cursor)
    assert inbox_sensor(ctx2).run_requests == []           # nothing new
    # (different bytes: a copy of a file already in the inbox is not new content and queues nothing)
    (tmp_path / "2024Q2" / "姜堰区_2024Q3.csv").write_text("社区名称,参保率\n北村社区,90\n", encoding="utf-8")
    assert [r.partition_key for r in inbox_sensor(dg.build_sensor_context(cursor=res.cursor)).run_requests] == \
        ["2024Q3"]


def _bilingual(text: str | None) -> bool:
    import re
    return bool(text) and re.search(r"[\u4e00-\u9fff]", text) is not None and re.search(r"[A-Za-z]{4,}", text) \
        is not None and "/" in text


def test_ui_descriptions_groups_and_automation():
    """What the UI shows: every asset and check described in Chinese and English, assets grouped by stage,
    the schedule and the sensor described, and every asset backfilled as one run."""
    import re

    for spec in defs.resolve_all_asset_specs():
        assert _bilingual(spec.description), spec.key
        assert re.fullmatch(r"s[1-9]_[a-z_]+", spec.group_name), (spec.key, spec.group_name)
        a = defs.resolve_assets_def(spec.key)
        assert a.backfill_policy == dg.BackfillPolicy.single_run(), spec.key
        for check in a.check_specs:
            assert _bilingual(check.description), check.name
    groups = [s.group_name for s in defs.resolve_all_asset_specs()]
    assert sorted(set(groups)) == ["s1_raw", "s2_dimensions", "s3_staged", "s4_facts", "s4_quality", "s5_rankings",
                                  "s6_publish"]
    for d in (quarterly_refresh_schedule, inbox_sensor, defs.resolve_job_def("quarterly_refresh")):
        assert _bilingual(d.description), d.name
