"""DHIS2-grade checks on planted defects: validation rules (cross-indicator, levels, missing-value strategies),
holds and the scoring input, outliers, completeness and timeliness, and the ranking release snapshot."""

import datetime as dt
import shutil

import pytest

from shequ import dq
from shequ.warehouse import connect, model_sql

Q = "2024Q1"


def _ckey(con, name):
    return con.execute("""SELECT community_key FROM dim_community WHERE name = ? AND valid_from <= DATE '2024-03-31'
                          AND (valid_to IS NULL OR valid_to > DATE '2024-03-31')""", [name]).fetchall()[0][0]


def _scoring_input(con, q):
    return con.execute(f"SELECT community_key, indicator_code FROM ({model_sql('scoring_input')})",
                       {"period_key": q}).fetchall()


# ------------------------------------------------------------------ validation rules and holds
def test_clean_sample_has_no_violation_and_no_hold(built):
    with connect(built["warehouse"], read_only=True) as c:
        assert c.execute("SELECT count(*) FROM validation_violation").fetchall()[0][0] == 0
        assert c.execute("SELECT count(*) FROM quality_hold").fetchall()[0][0] == 0
        n_rules = c.execute("SELECT count(*) FROM validation_rule").fetchall()[0][0]
        assert n_rules == len(dq.load_rules())
        # every rule's outcome is recorded per quarter, next to the suites
        assert c.execute("""SELECT count(*) FROM check_result WHERE suite = 'validation_rules'
                            AND period_key = ?""", [Q]).fetchall()[0][0] == n_rules


def test_high_cross_indicator_rule_holds_both_values_out_of_scoring(workspace):
    wh = workspace["warehouse"]
    with connect(wh) as c:
        k = _ckey(c, "河南社区")
        rc = c.execute("""SELECT value FROM fact_indicator_value WHERE community_key = ? AND period_key = ?
                          AND indicator_code = 'residential_compounds'""", [k, Q]).fetchall()[0][0]
        # 已成立业委会小区数 above 住宅小区数, and a MEDIUM defect elsewhere: reported rate != numerator/denominator
        c.execute("""UPDATE fact_indicator_value SET numerator = ? + 2, denominator = ? + 3
                     WHERE community_key = ? AND period_key = ? AND indicator_code = 'owners_committee_rate'""",
                  [rc, rc, k, Q])
        c.execute("""UPDATE fact_indicator_value SET reported_value = value + 0.2 WHERE community_key = ?
                     AND period_key = ? AND indicator_code = 'medical_insurance_rate'""", [k, Q])
        before = len(_scoring_input(c, Q))
        out = dq.run_validation(c, Q)
        viol = c.execute("""SELECT rule_id, entity_level, importance, left_value, right_value
                            FROM validation_violation WHERE period_key = ? ORDER BY 1, 2""", [Q]).fetchall()
        holds = c.execute("SELECT community_key, indicator_code, rule_id, reason FROM quality_hold "
                          "WHERE period_key = ? ORDER BY 2, 3", [Q]).fetchall()
        after = _scoring_input(c, Q)
    by_rule = {(r, lvl) for r, lvl, *_ in viol}
    # VR01 (numerator) and VR02 (denominator) both caught, at the community only: the street sums stay coherent
    assert ("VR01", "community") in by_rule and ("VR02", "community") in by_rule
    assert all(lvl == "community" for _, lvl in by_rule)
    # MEDIUM: the owners' reported rate no longer equals its new parts, and the planted medical-insurance mismatch
    reported_rule = {r.left_expr.split(".")[0]: r.rule_id for r in dq.load_rules() if r.left_expr.endswith(".reported")}
    med = {v[0]: v for v in viol if v[2] == "MEDIUM"}
    assert set(med) == {reported_rule["owners_committee_rate"], reported_rule["medical_insurance_rate"]}
    m = med[reported_rule["medical_insurance_rate"]]
    assert abs(m[3] - m[4] - 0.2) < 1e-9
    # holds: the owners' rate and the compound count, once per HIGH rule; the MEDIUM defect holds nothing
    assert {(i, r) for _, i, r, _ in holds} == {("owners_committee_rate", "VR01"), ("residential_compounds", "VR01"),
                                               ("owners_committee_rate", "VR02"), ("residential_compounds", "VR02")}
    assert {kk for kk, *_ in holds} == {k} and "VR01" in holds[0][3] and "不成立" in holds[0][3]
    assert out["holds"] == 4
    # scoring input: exactly those two values gone
    assert before - len(after) == 2
    assert (k, "owners_committee_rate") not in after and (k, "medical_insurance_rate") in after


def test_deputy_wage_above_director_wage_is_held(workspace):
    """The issue's example rule 副主任工资 <= 主任工资 (VR11, HIGH): a community whose deputy earns more than its
    director is a violation at the community level; both wages are held; the street mean is still coherent."""
    with connect(workspace["warehouse"]) as c:
        k = _ckey(c, "河南社区")
        w = dict(c.execute("""SELECT indicator_code, value FROM fact_indicator_value WHERE community_key = ?
                              AND period_key = ? AND indicator_code LIKE '%director_monthly_wage'""", [k, Q]).fetchall())
        assert w["deputy_director_monthly_wage"] <= w["director_monthly_wage"]      # the sample is coherent
        c.execute("""UPDATE fact_indicator_value SET value = ? WHERE community_key = ? AND period_key = ?
                     AND indicator_code = 'deputy_director_monthly_wage'""", [w["director_monthly_wage"] + 300, k, Q])
        dq.run_validation(c, Q)
        viol = c.execute("""SELECT rule_id, entity_level, importance, community_key, left_value, right_value
                            FROM validation_violation WHERE period_key = ?""", [Q]).fetchall()
        holds = c.execute("SELECT community_key, indicator_code, rule_id FROM quality_hold WHERE period_key = ? "
                          "ORDER BY 2", [Q]).fetchall()
        recorded = c.execute("""SELECT success, unexpected FROM check_result WHERE period_key = ?
                                AND suite = 'validation_rules' AND expectation LIKE 'VR11%'""", [Q]).fetchall()
    assert [(r, lvl, imp, kk) for r, lvl, imp, kk, *_ in viol] == [("VR11", "community", "HIGH", k)]
    assert viol[0][4] == w["director_monthly_wage"] + 300 and viol[0][5] == w["director_monthly_wage"]
    assert holds == [(k, "deputy_director_monthly_wage", "VR11"), (k, "director_monthly_wage", "VR11")]
    assert recorded == [(False, 1)]


def test_generator_keeps_deputy_wage_at_or_below_director_wage():
    import polars as pl

    from shequ.registry import load_communities
    from shequ.sample import generate_values

    v = generate_values(load_communities(), ["2024Q3", "2024Q4"])
    w = (v.filter(pl.col("indicator_code").str.contains("wage"))
         .pivot("indicator_code", index=["community_code", "quarter"], values="value"))
    assert w.height > 0 and w.null_count().sum_horizontal()[0] == 0
    assert (w["deputy_director_monthly_wage"] <= w["director_monthly_wage"]).all()
    assert (w["director_monthly_wage"] > w["staff_monthly_wage"]).mean() > 0.95     # a premium over 社工
    assert 200 <= w["deputy_director_monthly_wage"].min() and w["director_monthly_wage"].max() <= 20000


def test_street_and_district_levels_read_the_aggregates(workspace):
    with connect(workspace["warehouse"]) as c:
        street = c.execute("""SELECT entity_code FROM agg_indicator_value WHERE period_key = ?
                              AND entity_level = 'street' ORDER BY 1 LIMIT 1""", [Q]).fetchall()[0][0]
        c.execute("""UPDATE agg_indicator_value SET numerator = 10 * denominator WHERE period_key = ?
                     AND entity_level = 'street' AND entity_code = ? AND indicator_code = 'mediation_success_rate'""",
                  [Q, street])
        dq.run_validation(c, Q)
        viol = c.execute("SELECT rule_id, entity_level, entity_code FROM validation_violation WHERE period_key = ?",
                         [Q]).fetchall()
        assert c.execute("SELECT count(*) FROM quality_hold WHERE period_key = ?", [Q]).fetchall()[0][0] == 0
    assert viol == [("VR09", "street", street)]   # area violations are events; no community value is held


def _facts(con, rows, q=Q):
    """Insert minimal fact rows (community_key, indicator, value, numerator, denominator, reported)."""
    con.execute("INSERT INTO raw_file (file_id, ingest_seq, source_file, size_bytes, modified_at, file_format, "
                "encoding, period_keys, status, reason_code, message, n_cells, n_loaded, n_quarantined, ingested_at, "
                "notes) VALUES ('f', 1, 'x.csv', 1, TIMESTAMP '2024-04-10 09:00', 'csv', 'utf-8', "
                "['2024Q1'], 'loaded', NULL, NULL, 0, 0, 0, now(), []) ON CONFLICT DO NOTHING")
    con.executemany("""INSERT INTO fact_indicator_value VALUES (?, ?, ?, ?, ?, ?, ?, '', NULL, 'x.csv', NULL, NULL,
                       NULL, NULL, 'f', 1, now(), NULL)""",
                    [[r[0], r[1], r[6] if len(r) > 6 else q, r[2], r[5], r[3], r[4]] for r in rows])


@pytest.fixture
def empty(tmp_path, template):
    db = tmp_path / "t.duckdb"
    shutil.copy(template, db)
    return db


def _rules(tmp_path, lines):
    p = tmp_path / "rules.csv"
    p.write_text("rule_id,name_zh,left_expr,operator,right_expr,tolerance,importance,levels,missing_value_strategy,"
                 "instruction\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return dq.load_rules(p)


def test_missing_value_strategies_and_pairs(empty, tmp_path):
    rules = _rules(tmp_path, [
        "A,任一缺失即跳过,staff_college_rate.numerator,<=,staff_count + it_qualified_staff,,HIGH,community,"
        "SKIP_IF_ANY_VALUE_MISSING,",
        "B,一侧全部缺失才跳过,staff_college_rate.numerator,<=,staff_count + it_qualified_staff,,MEDIUM,community,"
        "SKIP_IF_ALL_VALUES_MISSING,",
        "C,从不跳过,it_qualified_staff + 1,<=,staff_count,,LOW,community,NEVER_SKIP,",
        "D,成对,owners_committee_rate.numerator,compulsory_pair,owners_committee_rate.denominator,,LOW,community,"
        "SKIP_IF_ALL_VALUES_MISSING,",
        "E,差值,staff_count - committee_members,>=,0,,MEDIUM,community,SKIP_IF_ANY_VALUE_MISSING,",
    ])
    with connect(empty) as c:
        k1, k2, k3 = [r[0] for r in c.execute("SELECT community_key FROM dim_community WHERE valid_to IS NULL "
                                              "ORDER BY community_key LIMIT 3").fetchall()]
        _facts(c, [
            (k1, "staff_college_rate", 1.0, 9, 9, None),     # numerator 9, staff_count missing
            (k1, "it_qualified_staff", 3, None, None, None),
            (k2, "staff_college_rate", 0.5, 4, 8, None), (k2, "staff_count", 8, None, None, None),
            (k2, "it_qualified_staff", 2, None, None, None),
            (k2, "committee_members", 9, None, None, None),   # 8 - 9 < 0: E caught
            (k3, "owners_committee_rate", 0.5, 2, None, None),  # numerator without denominator: D caught
        ])
        dq.run_validation(c, Q, rules)
        got = sorted(c.execute("SELECT rule_id, community_key, left_value, right_value FROM validation_violation")
                     .fetchall())
        ev = dict(c.execute("SELECT expectation[1:1], checked FROM check_result WHERE suite = 'validation_rules'")
                  .fetchall())
    # A skips k1 (staff_count missing) and passes k2 (4 <= 10). B skips a side only when all of it is missing:
    # k1's right side has it_qualified_staff, so the missing count is 0 and 9 <= 3 fails. C never skips: k1
    # (3 + 1 > 0) and k3 (0 + 1 > 0, nothing reported) fail, k2 (3 <= 8) passes. D: k3 sent a numerator alone.
    assert got == sorted([("B", k1, 9.0, 3.0), ("C", k1, 4.0, 0.0), ("C", k3, 1.0, 0.0), ("D", k3, 2.0, None),
                          ("E", k2, -1.0, 0.0)])
    assert ev == {"A": 1, "B": 2, "C": 3, "D": 1, "E": 1}   # entities evaluated (not skipped) per rule


def test_rule_catalogue_errors_fail_loudly(tmp_path, empty):
    with pytest.raises(dq.RuleError, match="运算符"):
        _rules(tmp_path, ["X,x,staff_count,=<,1,,HIGH,community,NEVER_SKIP,"])
    with pytest.raises(dq.RuleError, match="reported"):
        _rules(tmp_path, ["X,x,staff_count.reported,<=,1,,HIGH,street,NEVER_SKIP,"])
    with pytest.raises(dq.RuleError, match="无法解析"):
        _rules(tmp_path, ["X,x,staff_count; DROP TABLE x,<=,1,,HIGH,community,NEVER_SKIP,"])
    rules = _rules(tmp_path, ["X,x,deputy_director_wage,<=,director_wage,,HIGH,community,NEVER_SKIP,"])
    with connect(empty) as c, pytest.raises(dq.RuleError, match="指标目录中没有"):
        dq.run_validation(c, Q, rules)


# ------------------------------------------------------------------ outliers
def _quarters(n, last="2024Q1"):
    y, q = int(last[:4]), int(last[-1])
    out = []
    for _ in range(n):
        out.append(f"{y}Q{q}")
        y, q = (y, q - 1) if q > 1 else (y - 1, 4)
    return out[::-1]


def test_outliers_zscore_modified_zscore_minmax(empty):
    qs = _quarters(12)
    with connect(empty) as c:
        k1, k2, k3 = [r[0] for r in c.execute("SELECT community_key FROM dim_community WHERE valid_to IS NULL "
                                              "ORDER BY community_key LIMIT 3").fetchall()]
        rows = []
        for i, q in enumerate(qs):
            last = q == Q
            rows.append((k1, "criminal_cases", 40.0 if last else 10.0 + (i % 3), None, None, None, q))  # spike
            rows.append((k2, "criminal_cases", 12.0 if last else 10.0 + (i % 3), None, None, None, q))  # normal
            rows.append((k3, "criminal_cases", 11.0 if last else 10.0, None, None, None, q))   # MAD = 0: skipped
        rows.append((k2, "staff_avg_age", 75.0, None, None, None, Q))    # above valid_max 70: min-max bound
        _facts(c, rows)
        n = dq.run_outliers(c, Q)
        flags = c.execute("""SELECT community_key, indicator_code, method, round(statistic, 2), threshold,
                             followup_status FROM outlier_flag ORDER BY 1, 3""").fetchall()
        c.execute("UPDATE outlier_flag SET followup_status = 'confirmed' WHERE method = 'zscore'")
        dq.run_outliers(c, Q)
        status = c.execute("SELECT method, followup_status FROM outlier_flag ORDER BY 1").fetchall()
        kept = c.execute("SELECT count(*) FROM fact_indicator_value").fetchall()[0][0]
    # k1: mean 13.33, the spike is z = 3.16 > 3 over 12 quarters; median 11, MAD 1 -> 0.6745 * 29 = 19.56 > 3.5.
    # k3 (10 for eleven quarters, then 11): sd 0.29 makes z = 3.18, while MAD = 0 leaves the modified z-score
    # undefined and skipped. k2 (12 within its usual 10-12) is not flagged at all.
    assert flags == [(k1, "criminal_cases", "modified_zscore", 19.56, 3.5, "open"),
                     (k1, "criminal_cases", "zscore", 3.16, 3.0, "open"),
                     (k2, "staff_avg_age", "minmax", 70.0, 0.0, "open"),
                     (k3, "criminal_cases", "zscore", 3.18, 3.0, "open")]
    assert n == 4
    assert status == [("minmax", "open"), ("modified_zscore", "open"), ("zscore", "confirmed"),
                      ("zscore", "confirmed")]  # follow-up kept
    assert kept == len(rows)                                                 # a flag never deletes a value


def test_zscore_cannot_fire_on_eight_quarters(empty):
    """With sample sd, |z| <= (n-1)/sqrt(n) = 2.47 for n = 8: the documented reason z-score is quiet on the
    sample, while the modified z-score is not."""
    with connect(empty) as c:
        k = c.execute("SELECT min(community_key) FROM dim_community WHERE valid_to IS NULL").fetchall()[0][0]
        _facts(c, [(k, "criminal_cases", 1000.0 if q == Q else 10.0 + (i % 2), None, None, None, q)
                   for i, q in enumerate(_quarters(8))])
        dq.run_outliers(c, Q)
        assert [m for (m,) in c.execute("SELECT method FROM outlier_flag").fetchall()] == ["modified_zscore"]


# ------------------------------------------------------------------ completeness and timeliness
def test_completeness_counts_missing_and_late_reports(workspace):
    with connect(workspace["warehouse"]) as c:
        k = _ckey(c, "河南社区")
        street = c.execute("SELECT street_code FROM dim_community WHERE community_key = ?", [k]).fetchall()[0][0]
        c.execute("DELETE FROM fact_indicator_value WHERE community_key = ? AND period_key = ?", [k, Q])
        cfg = dq.load_completeness_config()
        late = [f for f, in c.execute("""SELECT source_file FROM raw_file WHERE source_file LIKE '2024Q1/建邺区%'
                                         """).fetchall()]
        cfg["_receipts"] = [(f, d if f not in late else dt.date(2024, 4, 20)) for f, d in cfg["_receipts"]]
        dq.run_completeness(c, Q, cfg)
        rep = {(lvl, name): (e, r, ot, ev, rv) for lvl, name, e, r, ot, ev, rv in c.execute(
            """SELECT level, area_name, expected, received, on_time, expected_values, received_values
               FROM completeness_report WHERE period_key = ?""", [Q]).fetchall()}
        s = c.execute("""SELECT expected, received, reporting_rate FROM completeness_report WHERE period_key = ?
                         AND level = 'street' AND area_code = ?""", [Q, street]).fetchall()[0]
        due = c.execute("SELECT DISTINCT due_date FROM completeness_report WHERE period_key = ?", [Q]).fetchall()
    assert due == [(dt.date(2024, 4, 15),)]
    jy = rep[("district", "姜堰区")]
    assert jy[0] == 20 and jy[1] == 19 and jy[2] == 19                 # one community sent nothing
    assert s[1] == s[0] - 1 and s[2] == pytest.approx((s[0] - 1) / s[0])
    jianye = rep[("district", "建邺区")]
    assert jianye[1] == jianye[0] and jianye[2] == 0                   # everything arrived, all of it late
    # 村代居 are not expected to report the 小区/物业 indicators; per-election indicators are never expected
    n_village = 2
    from shequ.catalogue import load_catalogue

    per_quarter = sum(not f.startswith("per_election") for f in load_catalogue()["frequency"])
    assert per_quarter == 69                                           # 70 indicators, one per-election
    assert jianye[3] == jianye[0] * per_quarter - n_village * 5 and jianye[4] == jianye[3]
    tq = rep[("district", "天桥区")]
    assert tq == (75, 75, 75, 75 * per_quarter, 75 * per_quarter)


# ------------------------------------------------------------------ the release
def test_ranking_release_records_the_checks_in_force(built):
    with connect(built["warehouse"], read_only=True) as c:
        rows = c.execute("""SELECT suite, count(*), bool_and(success OR severity <> 'critical')
                            FROM ranking_release WHERE period_key = ? GROUP BY 1 ORDER BY 1""", [Q]).fetchall()
        released = c.execute("SELECT DISTINCT scheme_id FROM ranking_release WHERE period_key = ?", [Q]).fetchall()
    suites = {s for s, _, _ in rows}
    assert {"stg_value", "fact_indicator_value", "agg_indicator_value", "quality_hold", "validation_rules",
            "completeness_report", "fact_ranking", "fact_score"} <= suites
    assert all(ok for _, _, ok in rows) and released == [("default",)]
