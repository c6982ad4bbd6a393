"""End to end: the Dagster job materialised in-process on a generated sample inbox; assertions on warehouse
contents, not on return codes alone."""

import shutil

import polars as pl
import pytest

from conftest import QUARTERS, run_quarter
from shequ.registry import load_communities
from shequ.sample import generate_values
from shequ.warehouse import connect, frame

N_COMMUNITIES = {"2023Q4": 20 + 75 + 38 + 1, "2024Q1": 20 + 75 + 36 + 1, "2024Q2": 20 + 75 + 36 + 1}


def test_runs_succeed_and_every_check_passes(built):
    for q, result in built["results"].items():
        assert result.success, q
        evals = result.get_asset_check_evaluations()
        assert len(evals) >= 8
        assert all(e.passed for e in evals), [(q, e.check_name) for e in evals if not e.passed]


def test_row_counts(con):
    n = lambda sql: con.execute(sql).fetchall()[0][0]
    assert n("SELECT count(*) FROM dim_indicator") == 70
    assert n("SELECT count(*) FROM dim_community") == 136
    assert n("SELECT count(*) FROM community_lineage") == 4
    assert n("SELECT count(*) FROM dim_period WHERE period_type = 'quarter'") == 36 * 4
    assert n("SELECT label FROM dim_period WHERE period_key = '2024Q3'") == "2024年第三季度"
    assert n("SELECT count(*) FROM raw_file WHERE status = 'loaded'") == 4 * len(QUARTERS)
    assert n("SELECT count(*) FROM quarantine") == 0
    for q, k in N_COMMUNITIES.items():
        assert n(f"SELECT count(*) FROM fact_indicator_value WHERE period_key = '{q}'") == k * 70
        assert n(f"SELECT count(DISTINCT community_key) FROM fact_indicator_value WHERE period_key = '{q}'") == k
        assert n(f"SELECT count(*) FROM fact_ranking WHERE period_key = '{q}' AND entity_level = 'community'") == 3 * k
    # streets (20 in 2024: 2 姜堰 + 5 建邺 + 12 天桥 + 1 江宁) ranked in their district, districts in their city
    assert n("SELECT count(*) FROM fact_ranking WHERE period_key = '2024Q1' AND entity_level = 'street'") == 20
    assert n("SELECT count(*) FROM fact_ranking WHERE period_key = '2024Q1' AND entity_level = 'district'") == 4


def test_every_value_round_trips_from_the_generator(con):
    """Generate -> write as xlsx / GBK CSV / JSON / BOM CSV -> read -> the warehouse holds the same numbers."""
    comms = load_communities()
    truth = generate_values(comms, QUARTERS).rename({"quarter": "period_key"})
    got = frame(con, """SELECT c.community_code, f.indicator_code, f.period_key, f.value, i.value_kind
                        FROM fact_indicator_value f JOIN dim_community c USING (community_key)
                        JOIN dim_indicator i USING (indicator_code)""")
    both = got.join(truth, on=["community_code", "indicator_code", "period_key"], how="inner")
    assert both.height == got.height == sum(N_COMMUNITIES.values()) * 70
    # files carry rounded numbers: 2 decimals for amounts, one decimal of a percent for % text
    tol = pl.when(pl.col("value_kind").is_in(["ratio", "survey"])).then(0.0006).otherwise(0.006)
    bad = both.filter((pl.col("value") - pl.col("value_right")).abs() > tol)
    assert bad.height == 0, bad.head()


def test_known_values_from_the_seeds(con):
    means = dict(con.execute("""
        SELECT c.district, avg(f.value) FROM fact_indicator_value f JOIN dim_community c USING (community_key)
        WHERE f.indicator_code = 'office_area' AND f.period_key = '2024Q1' GROUP BY 1""").fetchall())
    assert 50 < means["姜堰区"] < 70 and 10 < means["天桥区"] < 20
    wage = dict(con.execute("""
        SELECT c.district, avg(f.value) FROM fact_indicator_value f JOIN dim_community c USING (community_key)
        WHERE f.indicator_code = 'staff_monthly_wage' AND f.period_key = '2024Q1' GROUP BY 1""").fetchall())
    assert 750 <= wage["建邺区"] <= 850 and 400 <= wage["天桥区"] <= 500
    row = con.execute("""
        SELECT f.value, f.numerator, f.denominator, f.source_file, f.source_sheet, f.source_cell
        FROM fact_indicator_value f JOIN dim_community c USING (community_key)
        WHERE c.name = '河南社区' AND f.indicator_code = 'owners_committee_rate' AND f.period_key = '2024Q1'
    """).fetchall()[0]
    value, num, den, src, sheet, cell = row
    assert value == pytest.approx(num / den) and 0.4 < value <= 1
    assert src.endswith("姜堰区2024年第一季度社区建设统计表.xlsx") and sheet == "2024年第一季度" and cell[0].isalpha()


def test_ranks_consistent_with_scores(con):
    df = frame(con, "SELECT * FROM fact_ranking WHERE rank IS NOT NULL")
    for (_, _, _, _), g in df.group_by(["period_key", "entity_level", "scope_level", "scope_code"]):
        g = g.with_columns(pl.col("score").round(2).alias("r")).sort("r", descending=True)
        assert g["rank"][0] == 1
        assert g["rank"].is_sorted()
        assert (g["n_ranked"] == g.height).all()
        # competition ranking: rank = 1 + number of strictly better rounded scores
        better = [int((g["r"] > r).sum()) + 1 for r in g["r"]]
        assert g["rank"].to_list() == better


def test_street_and_district_aggregates_follow_the_rules(con):
    a = frame(con, """SELECT * FROM agg_indicator_value WHERE period_key = '2024Q1' AND entity_level = 'street'
                      AND entity_name = '罗塘街道'""")
    f = frame(con, """SELECT f.* FROM fact_indicator_value f JOIN dim_community c USING (community_key)
                      WHERE f.period_key = '2024Q1' AND c.street = '罗塘街道'""")
    agg = dict(zip(a["indicator_code"], a["value"]))
    sel = lambda code: f.filter(pl.col("indicator_code") == code)
    assert agg["office_area"] == pytest.approx(sel("office_area")["value"].sum())              # sum
    r = sel("owners_committee_rate")
    assert agg["owners_committee_rate"] == pytest.approx(r["numerator"].sum() / r["denominator"].sum())
    assert agg["owners_committee_rate"] != pytest.approx(r["value"].mean(), abs=1e-9)  # never a mean of rates
    assert agg["office_phone"] == pytest.approx(sel("office_phone")["value"].mean())         # share of flags
    assert agg["staff_monthly_wage"] == pytest.approx(sel("staff_monthly_wage")["value"].mean())
    # 天桥 sends only the rate (no parts) for some rates: the rule refuses to average them
    m = con.execute("""SELECT method, value FROM agg_indicator_value WHERE period_key = '2024Q1'
                       AND entity_level = 'district' AND entity_name = '天桥区'
                       AND indicator_code = 'closed_compound_rate'""").fetchall()[0]
    assert m == ("ratio_missing_parts", None)


def test_merger_read_as_it_was_and_on_todays_boundaries(con):
    as_was = con.execute("""
        SELECT c.community_code, f.value FROM fact_indicator_value f JOIN dim_community c USING (community_key)
        JOIN community_lineage l ON l.predecessor_code = c.community_code
        WHERE f.period_key = '2023Q4' AND f.indicator_code = 'office_area' AND l.successor_code = '320105004009'
    """).fetchall()
    assert len(as_was) == 2
    today = con.execute("""SELECT value, n_sources FROM fact_indicator_value_current
                           WHERE period_key = '2023Q4' AND indicator_code = 'office_area'
                             AND community_code = '320105004009'""").fetchall()
    assert today == [(pytest.approx(sum(v for _, v in as_was)), 2)]
    rate = con.execute("""
        SELECT sum(f.numerator) / sum(f.denominator) FROM fact_indicator_value f
        JOIN dim_community c USING (community_key) JOIN community_lineage l ON l.predecessor_code = c.community_code
        WHERE f.period_key = '2023Q4' AND f.indicator_code = 'owners_committee_rate' AND l.successor_code = '320105004009'
    """).fetchall()[0][0]
    cur = con.execute("""SELECT value FROM fact_indicator_value_current WHERE period_key = '2023Q4'
                         AND indicator_code = 'owners_committee_rate' AND community_code = '320105004009'""").fetchall()
    assert cur[0][0] == pytest.approx(rate)
    # in 2024 the successors report themselves and predecessors are not expected
    n = con.execute("""SELECT count(*) FROM fact_indicator_value f JOIN dim_community c USING (community_key)
                       WHERE f.period_key = '2024Q1' AND c.community_code IN ('320105004005', '320105004009')""").fetchall()
    assert n[0][0] == 70


def test_half_year_and_year_roll_up_by_each_indicators_time_rule(con):
    def fact(code, q):
        return con.execute("""SELECT f.value, f.numerator, f.denominator FROM fact_indicator_value f
                              JOIN dim_community c USING (community_key)
                              WHERE c.name = '河南社区' AND f.indicator_code = ? AND f.period_key = ?""",
                           [code, q]).fetchall()[0]

    def rolled(code, period):
        return con.execute("""SELECT r.value, r.n_periods, r.n_expected, r.last_period, r.method
                              FROM fact_indicator_value_rollup r JOIN dim_community c USING (community_key)
                              WHERE c.name = '河南社区' AND r.indicator_code = ? AND r.period_key = ?""",
                           [code, period]).fetchall()[0]

    # flow: placements add up over the half-year
    v, n, e, last, m = rolled("jobs_placed", "2024H1")
    assert v == pytest.approx(fact("jobs_placed", "2024Q1")[0] + fact("jobs_placed", "2024Q2")[0])
    assert (n, e, last, m) == (2, 2, "2024Q2", "sum")
    # stock: the staff count at the end of the half-year is Q2's, not a sum
    assert rolled("staff_count", "2024H1")[0] == fact("staff_count", "2024Q2")[0]
    assert rolled("staff_count", "2024H1")[4] == "last"
    # end-of-period rate: Q2's coverage; event rate: summed cases over summed cases, not a mean of rates
    assert rolled("medical_insurance_rate", "2024H1")[0] == pytest.approx(fact("medical_insurance_rate", "2024Q2")[0])
    (_, n1, d1), (_, n2, d2) = fact("mediation_success_rate", "2024Q1"), fact("mediation_success_rate", "2024Q2")
    assert rolled("mediation_success_rate", "2024H1")[0] == pytest.approx((n1 + n2) / (d1 + d2))
    # a partial year says so
    assert rolled("jobs_placed", "2024")[1:3] == (2, 4)


def _snapshot(wh):
    with connect(wh, read_only=True) as c:
        # every column but load timestamps, every table a refresh writes
        return {t: frame(c, f"SELECT * {f'EXCLUDE ({ex})' if ex else ''} FROM {t} ORDER BY ALL")
                for t, ex in [("fact_indicator_value", "loaded_at"), ("fact_ranking", ""),
                              ("raw_file", "ingested_at"), ("stg_value", ""), ("agg_indicator_value", ""),
                              ("fact_score", ""), ("quarantine", "quarantined_at"), ("dim_community", ""),
                              ("check_result", "checked_at")]}


def test_rerun_is_idempotent(workspace):
    before = _snapshot(workspace["warehouse"])
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    after = _snapshot(workspace["warehouse"])
    for t in before:
        assert before[t].equals(after[t]), t


def test_corrected_resubmission_replaces_and_keeps_history(workspace):
    src = next((workspace["inbox"] / "2024Q1").glob("天桥区*.csv"))
    text = src.read_bytes().decode("gbk")
    lines = text.split("\r\n")
    cells = lines[1].split(",")
    header = lines[0].split(",")
    col = header.index("志愿者组织数")
    old = cells[col]
    cells[col] = "99"
    lines[1] = ",".join(cells)
    revised = src.with_name(src.stem + "(修改后).csv")
    revised.write_bytes("\r\n".join(lines).encode("gbk"))
    res = run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1")
    assert res.success
    with connect(workspace["warehouse"], read_only=True) as c:
        name = cells[2]
        v = c.execute("""SELECT f.value, f.n_versions, f.source_file FROM fact_indicator_value f
                         JOIN dim_community c USING (community_key)
                         WHERE f.period_key = '2024Q1' AND f.indicator_code = 'volunteer_orgs'
                           AND c.name = ?""", [name.replace("居委会", "社区")]).fetchall()
        assert v == [(99.0, 2, str(revised.relative_to(workspace["inbox"])))]
        hist = c.execute("""SELECT value, is_latest FROM fact_indicator_value_history h
                            JOIN dim_community c USING (community_key)
                            WHERE h.period_key = '2024Q1' AND h.indicator_code = 'volunteer_orgs'
                              AND c.name = ? ORDER BY ingest_seq""", [name.replace("居委会", "社区")]).fetchall()
        assert hist == [(float(old), False), (99.0, True)]
        # other communities' values from the revised file equal the originals: one fact row each, no duplicates
        assert c.execute("SELECT count(*) FROM fact_indicator_value WHERE period_key = '2024Q1'").fetchall()[0][0] \
            == N_COMMUNITIES["2024Q1"] * 70


def test_unreadable_file_is_rejected_by_name_and_the_rest_still_loads(workspace):
    before = _snapshot(workspace["warehouse"])["fact_indicator_value"]
    bad = workspace["inbox"] / "2024Q1" / "天桥区_2024Q1_补充表.xlsx"
    bad.write_bytes(b"this is not a zip archive")
    garbled = workspace["inbox"] / "2024Q1" / "建邺区_2024Q1_说明.csv"
    garbled.write_text("社区名称,说明\n南湖社区,。ㄒ唬┣袑加强┣ㄒ唬┣\n", encoding="utf-8")
    res = run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1")
    assert res.success
    readable = [e for e in res.get_asset_check_evaluations() if e.check_name == "files_readable"]
    assert readable and not readable[0].passed and readable[0].severity.value == "WARN"
    with connect(workspace["warehouse"], read_only=True) as c:
        rej = dict(c.execute("SELECT reason_code, message FROM raw_file WHERE status = 'rejected'").fetchall())
        assert set(rej) == {"file_unreadable", "mojibake"}
        assert "天桥区_2024Q1_补充表.xlsx" in rej["file_unreadable"]
        assert c.execute("SELECT count(*) FROM quarantine WHERE reason_code IN ('file_unreadable', 'mojibake')"
                         ).fetchall()[0][0] == 2
    after = _snapshot(workspace["warehouse"])["fact_indicator_value"]
    assert before.equals(after)


def test_cells_that_cannot_land_are_quarantined_with_reasons(workspace):
    p = workspace["inbox"] / "2024Q1" / "天桥区_2024Q1_抽查.csv"
    p.write_bytes(("街道,居委会,志愿者组织数,参保率,奇怪指标\r\n"
                   "北村街道,北村居委会,abc,95%,1\r\n"
                   "北村街道,不存在社区,3,95%,1\r\n"
                   "北村街道,北村社区,2,350,1\r\n").encode("gbk"))
    assert run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    with connect(workspace["warehouse"], read_only=True) as c:
        q = c.execute("""SELECT reason_code, count(*) FROM quarantine WHERE source_file LIKE '%抽查%'
                         GROUP BY 1 ORDER BY 1""").fetchall()
        # one reason per cell, in order: period, header, community, value (奇怪指标 of row 3 is unknown_header)
        assert dict(q) == {"unknown_header": 3, "unknown_community": 2, "unparseable_value": 1,
                           "percent_out_of_scale": 1}
        msg = c.execute("SELECT message, source_cell FROM quarantine WHERE reason_code = 'unparseable_value' "
                        "AND source_file LIKE '%抽查%'").fetchall()
        assert msg == [("无法解析为数值：'abc'", "R2C3")]
        f = c.execute("SELECT n_loaded, n_quarantined, n_cells FROM raw_file WHERE source_file LIKE '%抽查%'"
                      ).fetchall()
        assert f == [(2, 7, 9)]   # 3 rows x 3 columns: every cell accounted for (95% of row 1, 2 of row 3 land)


def _fail_model(monkeypatch, module, name):
    import shequ.warehouse as w

    real = w.model_sql

    def broken(n):
        return "SELECT error('模拟失败') AS x" if n == name else real(n)

    monkeypatch.setattr(module, "model_sql", broken)


def test_failed_ranking_run_leaves_previous_state(workspace, monkeypatch):
    import shequ.appraisal.store

    before = _snapshot(workspace["warehouse"])["fact_ranking"]
    _fail_model(monkeypatch, shequ.appraisal.store, "explanation")  # fails after ranks and titles were inserted
    res = run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1")
    assert not res.success
    assert _snapshot(workspace["warehouse"])["fact_ranking"].equals(before)


def test_failed_fact_build_leaves_previous_state(workspace, monkeypatch):
    import shequ.warehouse

    before = _snapshot(workspace["warehouse"])["fact_indicator_value"]
    _fail_model(monkeypatch, shequ.warehouse, "fact_indicator_value")
    assert not run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1").success
    assert _snapshot(workspace["warehouse"])["fact_indicator_value"].equals(before)


def test_blocking_check_stops_downstream_and_cli_exits_non_zero(workspace):
    from shequ.cli import main

    with connect(workspace["warehouse"]) as c:   # plant an overlapping version of a community
        c.execute("""INSERT INTO dim_community SELECT 9999, community_code, name, street_code, street, district_code,
                     district, city_code, city, province_code, province, community_type, households, population,
                     DATE '2016-01-01', NULL, FALSE FROM dim_community WHERE community_code = '320105001001'""")
    res = run_quarter(workspace["warehouse"], workspace["inbox"], "2024Q1")
    failed = [e for e in res.get_asset_check_evaluations() if not e.passed]
    assert [(e.check_name, e.severity.value) for e in failed] == [("dim_community_suite", "ERROR")]
    assert not res.is_node_success("fact_ranking")
    code = main(["refresh", "--quarter", "2024年第一季度", "--warehouse", str(workspace["warehouse"]),
                 "--inbox", str(workspace["inbox"])])
    assert code == 1


def test_cli_refresh_uses_env_warehouse(tmp_path, built, monkeypatch):
    from shequ.cli import main

    inbox = tmp_path / "inbox"
    shutil.copytree(built["inbox"] / "2024Q1", inbox / "2024Q1")
    wh = tmp_path / "env.duckdb"
    monkeypatch.setenv("SHEQU_WAREHOUSE", str(wh))
    assert main(["refresh", "--inbox", str(inbox)]) == 0
    with connect(wh, read_only=True) as c:
        assert c.execute("SELECT DISTINCT period_key FROM fact_indicator_value").fetchall() == [("2024Q1",)]
