"""Manual corrections and inputs with an audit trail (issue 14, item 6).

A correction recorded with `shequ correct` wins over the file's value at the next refresh of its quarter, changes
the ranking, is listed in the quarter's report and in the 公示 publication diff, and keeps who, when, why and the
previous value. A bonus event recorded with `shequ bonus add` moves the score by its points within the scheme's
cap. Registry and alias edits by command validate, write the CSVs and log each change; refusals are in Chinese.
"""

import csv
import json
import shutil
from pathlib import Path

import duckdb
import pytest

from shequ import config, pipeline
from shequ.appraisal.store import publish
from shequ.cli import main
from shequ.corrections import rederive_quarter
from shequ.report import write_report
from shequ.sample import write_sample_inbox
from shequ.scoring import load_scheme
from shequ.warehouse import connect, ensure_schema

from conftest import run_quarter

Q = "2024Q3"


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> dict:
    """One generated quarter of the sample, built by the pipeline's stage functions (no Monte Carlo)."""
    d = tmp_path_factory.mktemp("corr")
    inbox = d / "inbox"
    write_sample_inbox(inbox, [Q])
    wh = d / "warehouse.duckdb"
    with connect(wh) as con:
        pipeline.stage_dimensions(con)
        pipeline.stage_staged(con, inbox, Q)
        rederive_quarter(con, Q, draws=0)
    return {"warehouse": wh, "inbox": inbox}


@pytest.fixture
def ws(tmp_path, small, monkeypatch) -> dict:
    wh = tmp_path / "warehouse.duckdb"
    shutil.copy(small["warehouse"], wh)
    monkeypatch.setenv("SHEQU_WAREHOUSE", str(wh))
    return {"warehouse": wh, "inbox": small["inbox"], "tmp": tmp_path}


def _closest_top_pair(con) -> tuple[str, str, str]:
    """(district, code ranked first, its name) in the district where first and second are closest."""
    return con.execute(f"""
        WITH r AS (SELECT scope_name, entity_code, entity_name, rank, score_rounded FROM fact_ranking
                   WHERE period_key = '{Q}' AND scope_level = 'district' AND entity_level = 'community')
        SELECT a.scope_name, a.entity_code, a.entity_name FROM r a JOIN r b ON a.scope_name = b.scope_name
        WHERE a.rank = 1 AND b.rank = 2 ORDER BY a.score_rounded - b.score_rounded, a.entity_code LIMIT 1
    """).fetchall()[0]


def _rank(con, code: str) -> int:
    return con.execute(f"""SELECT rank FROM fact_ranking WHERE period_key = '{Q}' AND entity_code = ?
                           AND scope_level = 'district'""", [code]).fetchall()[0][0]


def test_a_correction_wins_at_the_next_refresh_changes_the_ranking_and_is_reported_and_diffed(ws, capsys):
    wh = ws["warehouse"]
    scheme = load_scheme()
    with connect(wh) as con:
        district, code, name = _closest_top_pair(con)
        before = con.execute("""SELECT f.value FROM fact_indicator_value f JOIN dim_community d USING (community_key)
                                WHERE f.period_key = ? AND d.community_code = ?
                                AND f.indicator_code = 'resident_satisfaction_rate'""", [Q, code]).fetchall()[0][0]
        v1 = publish(con, Q, scheme, by="测试", note="首次公示")
    assert _rank_of(wh, code) == 1

    # the analyst types the Chinese name of the indicator, the quarter in Chinese, and a percentage
    rc = main(["correct", "--community", f"{name}（{_street(wh, code)}）", "--indicator", "居民对社区工作满意度",
               "--quarter", "2024年第三季度", "--value", "10%", "--reason", "第三方入户复核：原报数据有误",
               "--by", "区民政局 张三"])
    out = capsys.readouterr().out
    assert rc == 0 and "已记录更正 #1" in out and "下次刷新该季度时生效" in out
    assert _rank_of(wh, code) == 1                  # recorded, not yet applied

    # the next refresh of the quarter (the real Dagster job, as `shequ refresh --quarter 2024Q3` runs it)
    result = run_quarter(wh, ws["inbox"], Q)
    assert result.success
    from shequ.corrections import manual_summary

    with connect(wh, read_only=True) as con:
        assert manual_summary(con, [Q]) == [
            f"{Q} 人工更正生效 1 条（事实表中 1 个数值取更正值）；人工加分 0 项共 0 分（按方案封顶计入）；"
            f"明细：shequ correct list / shequ bonus list --quarter {Q}"]
    with connect(wh) as con:
        fact = con.execute("""SELECT f.value, f.reported_value, f.qualifier, f.correction_id
                              FROM fact_indicator_value f JOIN dim_community d USING (community_key)
                              WHERE f.period_key = ? AND d.community_code = ?
                              AND f.indicator_code = 'resident_satisfaction_rate'""", [Q, code]).fetchall()[0]
        assert fact[0] == pytest.approx(0.1) and fact[1] == pytest.approx(before, abs=1e-3)
        assert fact[2] == "corrected" and fact[3] == 1
        assert _rank(con, code) > 1                 # the ranking changed
        audit = con.execute("""SELECT recorded_by, recorded_at, reason, previous_value, previous_source, value,
                                      raw_text, active FROM manual_correction WHERE correction_id = 1""").fetchall()[0]
        assert audit[0] == "区民政局 张三" and audit[1] is not None and audit[2] == "第三方入户复核：原报数据有误"
        assert audit[3] == pytest.approx(before) and audit[4].startswith(f"{Q}/") and audit[5] == pytest.approx(0.1)
        assert audit[6] == "10%" and audit[7] is True
        # the publication diff names the correction beside the rank changes it caused
        v2 = publish(con, Q, scheme, by="测试", note="更正满意度后重新公示")
        assert v2["new"] and v2["supersedes"] == v1["version_id"]
        diff = con.execute("""SELECT change, entity_code, item, old_value, new_value FROM publication_diff
                              WHERE version_id = ?""", [v2["version_id"]]).fetchall()
    corr = [d for d in diff if d[0] == "correction_added"]
    assert len(corr) == 1 and corr[0][1] == code and "居民对社区工作满意度" in corr[0][2]
    assert "区民政局 张三" in corr[0][2] and float(corr[0][3]) == pytest.approx(before) and float(corr[0][4]) == 0.1
    assert any(d[0] == "rank" and d[1] == code for d in diff)

    # the quarter's report lists the correction with who, when, why and the previous value
    page = Path(write_report(Q, out=ws["tmp"] / "r.html", warehouse=wh)["path"]).read_text(encoding="utf-8")
    section = page[page.index('id="manual"'):]
    assert "人工更正与加分" in page and "#1" in section and name in section
    assert "第三方入户复核：原报数据有误" in section and "区民政局 张三" in section and f"{before:g}" in section

    # revoking restores the file's value at the next build; the row stays with who and why
    assert main(["correct", "revoke", "1", "--by", "区民政局 李四", "--reason", "复核结论撤回", "--apply"]) == 0
    with connect(wh) as con:
        assert _rank(con, code) == 1
        row = con.execute("SELECT active, revoked_by, revoke_reason FROM manual_correction").fetchall()
    assert row == [(False, "区民政局 李四", "复核结论撤回")]


def _rank_of(wh, code):
    with connect(wh, read_only=True) as con:
        return _rank(con, code)


def _street(wh, code):
    with connect(wh, read_only=True) as con:
        return con.execute("SELECT any_value(street) FROM dim_community WHERE community_code = ?", [code]).fetchall()[0][0]


def test_correction_refusals_are_chinese_with_candidates(ws, capsys):
    assert main(["correct", "--community", "新材社区", "--indicator", "resident_satisfaction_rate", "--quarter", Q,
                 "--value", "0.5", "--reason", "r", "--by", "b"]) == 2
    out = capsys.readouterr().out
    assert "未知社区「新材社区」" in out and "是否为：新村社区（南湖街道）" in out
    assert main(["correct", "--community", "新村社区", "--indicator", "resident_satisfaction_rate", "--quarter", Q,
                 "--value", "0.5", "--reason", "r", "--by", "b"]) == 2
    assert "2 个同名社区" in capsys.readouterr().out
    assert main(["correct", "--community", "白马山社区", "--indicator", "居民满意", "--quarter", Q,
                 "--value", "0.5", "--reason", "r", "--by", "b"]) == 2
    out = capsys.readouterr().out
    assert "未知指标「居民满意」" in out and "是否为" in out and "resident_satisfaction_rate" in out
    assert main(["correct", "--community", "白马山社区", "--indicator", "resident_satisfaction_rate", "--quarter", Q,
                 "--value", "150%", "--reason", "r", "--by", "b"]) == 2
    assert "超出指标「居民对社区工作满意度」的有效范围" in capsys.readouterr().out
    assert main(["correct", "--community", "白马山社区", "--indicator", "resident_satisfaction_rate", "--quarter", Q,
                 "--value", "很多", "--by", "b"]) == 2
    assert "必须填写更正原因" in capsys.readouterr().out
    with connect(ws["warehouse"], read_only=True) as con:
        assert con.execute("SELECT count(*) FROM manual_correction").fetchall()[0][0] == 0


def test_communities_are_found_by_code_name_street_or_alias(ws):
    from shequ.corrections import resolve_community

    with connect(ws["warehouse"], read_only=True) as con:
        got = [resolve_community(con, t, Q)["code"] for t in
               ("320105001001", "南湖社区", "南湖", "新村社区（兴隆街道）", "兴隆街道/新村社区", "莫愁")]
    assert got == ["320105001001", "320105001001", "320105001001", "320105004003", "320105004003", "320105002001"]


def test_a_second_correction_supersedes_the_first_and_keeps_it(ws):
    args = ["correct", "--community", "白马山社区", "--indicator", "resident_satisfaction_rate", "--quarter", Q,
            "--reason", "复核", "--by", "甲"]
    assert main(args + ["--value", "0.5"]) == 0
    assert main(args + ["--value", "0.6"]) == 0
    with connect(ws["warehouse"], read_only=True) as con:
        rows = con.execute("""SELECT correction_id, active, superseded_by, previous_value, previous_source
                              FROM manual_correction ORDER BY 1""").fetchall()
    assert rows[0][:3] == (1, False, 2) and rows[1][:3] == (2, True, None)
    assert rows[1][3] == pytest.approx(0.5) and rows[1][4] == "人工更正 #1"


def test_bonus_add_moves_the_score_by_its_points_within_the_cap(ws, capsys):
    wh = ws["warehouse"]
    with connect(wh, read_only=True) as con:
        code, name, street, score, bonus = con.execute(f"""
            SELECT r.entity_code, r.entity_name, d.street, r.score, r.bonus FROM fact_ranking r
            JOIN dim_community d USING (community_key)
            WHERE r.period_key = '{Q}' AND r.scope_level = 'city' AND r.entity_level = 'community'
              AND r.bonus = 0 AND r.score < 90 AND r.eligibility_reason IS NULL
            ORDER BY r.entity_code LIMIT 1""").fetchall()[0]
    cap = load_scheme().section("adjust")["bonus"]["cap"]
    rc = main(["bonus", "add", "--community", f"{name}（{street}）", "--quarter", Q, "--points", "2",
               "--reason", "区级现场会", "--document", "建民发〔2024〕12号", "--by", "区民政局 王五", "--apply"])
    assert rc == 0 and "已记录加分 #1" in capsys.readouterr().out

    def now():
        with connect(wh, read_only=True) as con:
            return con.execute(f"""SELECT score, bonus FROM fact_ranking WHERE period_key = '{Q}'
                                   AND entity_code = ? AND scope_level = 'city'""", [code]).fetchall()[0]

    s2, b2 = now()
    assert b2 == 2 and s2 == pytest.approx(score + 2)
    # more than the cap: counted up to the cap, and the command says so
    assert main(["bonus", "add", "--community", code, "--quarter", Q, "--points", str(cap + 1),
                 "--reason", "市级表彰", "--by", "区民政局 王五", "--apply"]) == 0
    assert "超过方案加分封顶" in capsys.readouterr().out
    s3, b3 = now()
    assert b3 == cap and s3 == pytest.approx(score + cap)
    with connect(wh, read_only=True) as con:
        audit = con.execute("SELECT points, reason, document, recorded_by, recorded_at, active FROM manual_bonus "
                            "ORDER BY bonus_id").fetchall()
    assert audit[0][:4] == (2.0, "区级现场会", "建民发〔2024〕12号", "区民政局 王五") and audit[0][4] and audit[0][5]
    assert main(["bonus", "list", "--quarter", Q]) == 0 and "区级现场会" in capsys.readouterr().out
    assert main(["bonus", "revoke", "1", "--by", "王五", "--reason", "录入错误", "--apply"]) == 0
    s4, b4 = now()
    assert b4 == cap and s4 == pytest.approx(score + cap)      # the second event alone still reaches the cap
    assert main(["bonus", "add", "--community", code, "--quarter", Q, "--points", "-1", "--reason", "x",
                 "--by", "y"]) == 2
    assert "加分分值应为正数" in capsys.readouterr().out


# ------------------------------------------------------------------ registry and aliases
@pytest.fixture
def reg(tmp_path) -> dict:
    d = tmp_path / "registry"
    shutil.copytree(config.REGISTRY_DIR, d)
    heads = tmp_path / "header_aliases.csv"
    shutil.copy(config.HEADER_ALIASES_CSV, heads)
    return {"dir": d, "heads": heads}


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_registry_add_rename_merge_and_aliases_round_trip_with_a_change_log(reg, capsys, template, tmp_path):
    d = str(reg["dir"])
    common = ["--by", "区民政局 赵六", "--registry-dir", d]
    assert main(["registry", "add", "--code", "320105001099", "--name", "新材社区", "--street", "南湖街道",
                 "--valid-from", "2024-07-01", "--households", "1200", "--population", "3500",
                 "--reason", "新建小区成立社区", *common]) == 0
    assert main(["registry", "rename", "--community", "新材社区", "--new-name", "新材料社区",
                 "--effective", "2024-10-01", "--reason", "区政府批复更名", *common]) == 0
    assert main(["registry", "merge", "--from", "沿河社区", "--into", "南湖社区", "--effective", "2024-10-01",
                 "--reason", "区划调整", *common]) == 0
    assert main(["alias", "add", "--alias", "新材", "--community", "新材料社区", "--reason", "报表常用简称",
                 *common]) == 0
    assert main(["alias", "add", "--header", "居民满意率（%）", "--indicator", "居民对社区工作满意度",
                 "--reason", "天桥区报表写法", "--header-aliases", str(reg["heads"]), *common]) == 0
    capsys.readouterr()

    comms = _rows(reg["dir"] / "communities.csv")
    mine = [r for r in comms if r["community_code"] == "320105001099"]
    assert [(r["name"], r["valid_from"], r["valid_to"]) for r in mine] == [
        ("新材社区", "2024-07-01", "2024-10-01"), ("新材料社区", "2024-10-01", "")]
    assert mine[0]["district"] == "建邺区" and mine[0]["street_code"] == "320105001"
    yanhe = [r for r in comms if r["name"] == "沿河社区"]
    assert yanhe[-1]["valid_to"] == "2024-10-01"
    lineage = _rows(reg["dir"] / "community_lineage.csv")
    assert {"predecessor_code": yanhe[0]["community_code"], "successor_code": "320105001001", "event": "merge",
            "effective_date": "2024-10-01", "note": "区划调整"} in lineage
    aliases = {a["alias"]: a for a in _rows(reg["dir"] / "community_aliases.csv")}
    assert aliases["新材"]["community_code"] == "320105001099"
    assert aliases["新材社区"]["valid_from"] == "2024-10-01"          # the old name, from the rename on
    assert aliases["沿河社区"]["community_code"] == "320105001001"
    heads = {h["alias"]: h for h in _rows(reg["heads"])}
    assert heads["居民满意率（%）"]["indicator_code"] == "resident_satisfaction_rate"

    # every change is logged with who, when, why and the previous value
    log = _rows(reg["dir"] / "changes.csv")
    assert [r["action"] for r in log] == ["registry add", "registry rename", "registry merge", "alias add", "alias add"]
    assert all(r["changed_by"] == "区民政局 赵六" and r["changed_at"] and r["reason"] for r in log)
    assert json.loads(log[1]["previous_value"]) == {"name": "新材社区", "valid_to": ""}
    assert json.loads(log[2]["previous_value"])["name"] == "沿河社区"

    # the edited registry loads into a warehouse: versions, lineage and aliases
    db = tmp_path / "t.duckdb"
    shutil.copy(template, db)
    with connect(db) as con:
        pipeline.stage_dimensions(con, reg["dir"])
        got = con.execute("""SELECT name, valid_from::VARCHAR, is_current FROM dim_community
                             WHERE community_code = '320105001099' ORDER BY valid_from""").fetchall()
        assert [g[:2] for g in got] == [("新材社区", "2024-07-01"), ("新材料社区", "2024-10-01")]
        assert con.execute("SELECT count(*) FROM community_alias WHERE alias = '新材'").fetchall()[0][0] == 1
    from shequ.catalogue import HeaderMatcher, load_header_aliases

    m = HeaderMatcher(aliases=load_header_aliases(reg["heads"])).match("居民满意率（%）")
    assert [t.indicator_code for t in m.targets] == ["resident_satisfaction_rate"]


def test_registry_edits_refused_in_chinese_and_nothing_written(reg, capsys):
    d = str(reg["dir"])
    before = {p.name: p.read_bytes() for p in reg["dir"].iterdir()}
    common = ["--by", "赵六", "--reason", "测试", "--registry-dir", d]
    cases = [
        (["registry", "add", "--code", "3201050010", "--name", "甲社区", "--street", "南湖街道", *common], "应为 12 位数字"),
        (["registry", "add", "--code", "320105001001", "--name", "甲社区", "--street", "南湖街道", *common], "已在登记表中"),
        (["registry", "add", "--code", "320105002099", "--name", "甲社区", "--street", "南湖街道", *common],
         "前 9 位应为南湖街道的街道代码 320105001"),
        (["registry", "add", "--code", "320105001099", "--name", "甲社区", "--street", "南糊街道", *common],
         "未知街道「南糊街道」"),
        (["registry", "add", "--code", "320105001099", "--name", "沿河社区", "--street", "南湖街道", *common],
         "已有名为「沿河社区」的社区"),
        (["registry", "rename", "--community", "新材社区", "--new-name", "甲", *common], "未知社区「新材社区」"),
        (["registry", "rename", "--community", "新村社区", "--new-name", "甲", *common], "2 个同名社区"),
        (["registry", "merge", "--from", "南湖社区", "--into", "南湖社区", *common], "不能把社区合并到它自己"),
        (["alias", "add", "--alias", "莫愁", "--community", "南湖社区", *common], "别名「莫愁」已登记给社区"),
        (["alias", "add", "--header", "一肩挑", "--indicator", "office_area", "--header-aliases",
          str(reg["heads"]), *common], "表头别名「一肩挑」已登记给指标"),
        (["alias", "add", "--header", "某表头", "--indicator", "不存在的指标", "--header-aliases",
          str(reg["heads"]), *common], "未知指标「不存在的指标」"),
        (["registry", "add", "--code", "320105001099", "--name", "甲社区", "--street", "南湖街道",
          "--registry-dir", d, "--by", "赵六"], "必须填写修改原因"),
    ]
    for argv, msg in cases:
        assert main(argv) == 2, argv
        out = capsys.readouterr().out
        assert msg in out, (argv, out)
    assert {p.name: p.read_bytes() for p in reg["dir"].iterdir()} == before   # no file touched, no log row


def test_nothing_regenerates_the_registry_csvs():
    assert not (config.REGISTRY_DIR / "build_registry.py").exists()
    files = [p for d in ("shequ", "pipelines", "models", "scripts", "tests") for p in (config.ROOT / d).rglob("*")
             if p.suffix in (".py", ".sh", ".toml", ".md") and p.name != Path(__file__).name]
    hits = [p for p in files + [config.ROOT / "pyproject.toml", config.ROOT / ".ci" / "run"]
            if p.exists() and "build_registry" in p.read_text(encoding="utf-8", errors="ignore")]
    assert hits == []


def test_migration_0005_adds_the_audit_tables_to_an_old_warehouse(tmp_path):
    wh = tmp_path / "old.duckdb"
    con = duckdb.connect(str(wh))
    con.execute((Path(__file__).parent / "fixtures" / "schema_v2.sql").read_text(encoding="utf-8"))
    con.execute("INSERT INTO meta_schema VALUES (2, now()::TIMESTAMP)")
    ensure_schema(con)
    cols = {r[0] for r in con.execute("SELECT column_name FROM information_schema.columns "
                                      "WHERE table_name = 'fact_indicator_value'").fetchall()}
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert "correction_id" in cols and {"manual_correction", "manual_bonus", "published_manual_input"} <= tables
    assert 5 in {r[0] for r in con.execute("SELECT version FROM meta_schema").fetchall()}
    con.close()


def test_an_edit_leaves_every_other_line_of_the_csvs_as_it_was(reg, capsys):
    """The CSVs are hand-readable, git-tracked sources: an edit adds or changes its own lines only."""
    from shequ.registry_edit import read_csv, write_csv

    for name in ("communities.csv", "community_aliases.csv", "community_lineage.csv"):
        p = reg["dir"] / name
        before = p.read_bytes()
        write_csv(p, *read_csv(p))
        assert p.read_bytes() == before, name
    old = (reg["dir"] / "communities.csv").read_text(encoding="utf-8").splitlines()
    assert main(["registry", "add", "--code", "320105001099", "--name", "新材社区", "--street", "南湖街道",
                 "--reason", "新建", "--by", "赵六", "--registry-dir", str(reg["dir"])]) == 0
    new = (reg["dir"] / "communities.csv").read_text(encoding="utf-8").splitlines()
    assert [x for x in new if x not in old] == [x for x in new if x.startswith("320105001099,")] and \
        [x for x in old if x not in new] == []
