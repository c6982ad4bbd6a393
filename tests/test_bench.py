"""The benchmark at a small size (CI): every stage runs on a synthetic national set and reports its figures."""

import json

import pytest
from rich.console import Console

from shequ.bench import run_bench


@pytest.mark.bench
def test_bench_small(tmp_path):
    assert run_bench(300, 1, tmp_path / "b", Console(file=open("/dev/null", "w"))) == 0
    res = json.loads((tmp_path / "b" / "bench_result.json").read_text(encoding="utf-8"))
    stages = {s["stage"].split()[0]: s for s in res["stages"]}
    assert set(stages) >= {"generate", "dimensions", "staged_values", "fact_indicator_value",
                           "agg_indicator_value", "fact_ranking", "checks"}
    assert stages["fact_indicator_value"]["values"] == 300 * 70       # every value of every shape landed
    assert stages["staged_values"]["values"] == 300 * 118
    assert all(s["seconds"] > 0 and s["peak_rss_mb"] > 0 for s in res["stages"])


@pytest.mark.bench
def test_appraisal_bench_small(tmp_path):
    """The appraisal benchmark at CI size: every community scored, ranked three ways, written; MC draws run."""
    from shequ.bench import run_appraisal_bench

    res = run_appraisal_bench(2_000, 10, tmp_path / "a", Console(file=open("/dev/null", "w")))
    stages = [s["stage"] for s in res["stages"]]
    assert any(s.startswith("appraise") for s in stages) and any(s.startswith("monte carlo") for s in stages)
    assert res["counts"]["community"] == (2_000 + 132) * 3   # bench + the 132 registry communities of 2024Q3
    assert res["counts"]["fact_award"] > 0 and res["counts"]["fact_score"] > 2_000 * 60
    assert all(s["seconds"] > 0 for s in res["stages"])
