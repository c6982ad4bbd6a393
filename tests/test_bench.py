"""The benchmark at a small size (CI): every stage of the refresh runs on a synthetic national set, next to the
bare-DuckDB yardstick, and the JSON reports the right figures and row counts."""

import json

import pytest
from rich.console import Console

from shequ.bench import run_bench
from shequ.catalogue import load_catalogue


@pytest.mark.bench
def test_bench_json_keys_and_row_counts(tmp_path, capsys):
    """`shequ bench --communities 2000 --draws 10 --json PATH` (issue 11 item 6)."""
    from shequ.cli import main

    n = 2_000
    path = tmp_path / "out.json"
    assert main(["bench", "--communities", str(n), "--draws", "10", "--out", str(tmp_path / "b"),
                 "--json", str(path)]) == 0
    res = json.loads(path.read_text(encoding="utf-8"))
    assert {"communities", "total_seconds", "peak_rss_mb", "appraisal_seconds", "mc_seconds",
            "yardstick_seconds", "stages"} <= set(res)
    assert res["communities"] == n and res["draws"] == 10
    stages = {s["name"].split()[0]: s for s in res["stages"]}
    assert set(stages) >= {"generate", "dimensions", "staged_values", "fact_indicator_value", "agg_indicator_value",
                           "quality", "fact_ranking", "checks", "snapshot", "yardstick"}
    for s in res["stages"]:
        assert {"name", "seconds", "values", "peak_rss_mb", "rows"} <= set(s)
        assert s["seconds"] > 0 and s["peak_rss_mb"] > 0
    n_ind = len(load_catalogue())
    assert n_ind == res["indicators"]
    # every value of every file shape landed: one fact per community x indicator, numerator and denominator rows
    # staged beside them
    assert stages["fact_indicator_value"]["rows"] == n * n_ind == res["fact_rows"]
    assert stages["staged_values"]["values"] == stages["staged_values"]["rows"] == n * 118
    assert stages["dimensions"]["rows"] >= n
    assert stages["agg_indicator_value"]["rows"] > 0 and stages["fact_ranking"]["rows"] > n
    assert stages["yardstick"]["rows"] == n          # every community scored and ranked by bare DuckDB
    # the total is the refresh without generation and without the yardstick
    refresh = [s for s in res["stages"] if s["name"].split()[0] not in ("generate", "yardstick")]
    assert res["total_seconds"] == pytest.approx(sum(s["seconds"] for s in refresh))
    assert 0 < res["mc_seconds"] < stages["fact_ranking"]["seconds"]
    assert res["appraisal_seconds"] > 0 and res["yardstick_seconds"] > 0
    assert 0 < res["fact_bytes_per_row"] <= 40
    assert "评比" in capsys.readouterr().out


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
