"""Notebooks run end to end against the test warehouse (code cells executed in order, as a kernel would), with
their parameter cell (tagged `parameters`) overridden where a test says so."""

import json

import pytest

from shequ.config import ROOT
from shequ.snapshot import snapshot_path
from shequ.warehouse import connect

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def run_notebook(path, **params) -> dict:
    nb = json.loads(path.read_text(encoding="utf-8"))
    ns: dict = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}:{cell['id']}", "exec"), ns)
            if "parameters" in cell["metadata"].get("tags", []):
                ns.update(params)
    return ns


@pytest.fixture
def env(built, monkeypatch):
    monkeypatch.setenv("SHEQU_WAREHOUSE", str(built["warehouse"]))
    return built


def test_notebooks_exist():
    assert {p.name for p in NOTEBOOKS} >= {"quarter_overview.ipynb", "community_profile.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes_on_the_snapshot_and_leaves_no_connection(path, env):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert sum("parameters" in c["metadata"].get("tags", []) for c in nb["cells"]) == 1
    ns = run_notebook(path)
    assert ns["SOURCE"] == snapshot_path(env["warehouse"])      # reads the published snapshot, not the live file
    figs = [v for k, v in ns.items() if k.startswith("fig")]
    assert figs
    for f in figs:                                              # Chinese titles on every chart
        assert any("\u4e00" <= ch <= "\u9fff" for ch in f.layout.title.text), f.layout.title.text
    # nothing stays open: a writer opens the live warehouse and the snapshot at once, without retrying
    with connect(env["warehouse"], retries=0):
        pass
    with connect(ns["SOURCE"], retries=0):
        pass


def test_quarter_overview(env):
    ns = run_notebook(ROOT / "notebooks" / "quarter_overview.ipynb")
    assert ns["QUARTER"] == "2024Q2" and ns["LABEL"] == "2024年第二季度"
    top = ns["top"]
    assert top.height > 0 and set(top["市"]) == {"南京市", "泰州市", "济南市"}
    assert top.filter(top["市"] == "泰州市")["名次"].to_list()[:1] == [1]
    assert set(ns["areas"]["层级"]) == {"街道", "区"}
    assert ns["areas"].filter(ns["areas"]["层级"] == "区").height == 4
    assert len(ns["fig"].data) == 4                                # one bar trace per indicator facet
    assert ns["fig_dist"].layout.xaxis.title.text == "区" and "综合得分" in ns["fig_dist"].layout.yaxis.title.text
    heat = ns["heat"]
    assert heat.height == 4 and len(heat.columns) == 1 + 13        # districts x 13 categories
    assert ns["grades"]["社区数"].sum() == ns["scores"].height


def test_quarter_overview_for_another_quarter(env):
    ns = run_notebook(ROOT / "notebooks" / "quarter_overview.ipynb", QUARTER="2023Q4")
    assert ns["LABEL"] == "2023年第四季度"
    # 2023Q4 is before the 兴隆 merger: four more communities than after it
    assert ns["scores"].height > run_notebook(ROOT / "notebooks" / "quarter_overview.ipynb")["scores"].height


def test_community_profile(env):
    ns = run_notebook(ROOT / "notebooks" / "community_profile.ipynb")
    assert ns["NAME"] == "河南社区" and ns["QUARTERS"] == ["2023Q4", "2024Q1", "2024Q2"]
    assert ns["values"].height == 70 * 3
    assert set(ns["chosen"]["指标代码"]) == set(ns["INDICATORS"])
    ranks = ns["ranks"]
    assert ranks.height == 9 and set(ranks["评比范围"]) == {"街道内", "区内", "市内"}
    assert ranks["名次"].min() >= 1
    cats = ns["cat_scores"]
    assert cats.filter(cats["层级"] == "category")["类别"].n_unique() == 13
    assert cats.filter(cats["层级"] == "index").height == 3
    assert ns["fig_ranks"].layout.yaxis.autorange == "reversed"
    assert {t.name for t in ns["fig_values"].data} == {"河南社区", "所在区社区中位数"}
    assert ns["wide"].columns[:3] == ["类别", "指标", "单位"] and ns["wide"].height == 70


def test_community_profile_of_a_merger_successor(env):
    """兴达社区 opened on 2024-01-01 from the 兴隆 merger: its lineage shows and it has only the later quarters."""
    ns = run_notebook(ROOT / "notebooks" / "community_profile.ipynb", COMMUNITY_CODE="320105004009")
    assert ns["NAME"] == "兴达社区"
    assert ns["lineage"].height >= 1 and set(ns["lineage"]["事件"]) == {"merge"}
    assert ns["QUARTERS"] == ["2024Q1", "2024Q2"]


def test_data_quality(env):
    ns = run_notebook(ROOT / "notebooks" / "data_quality.ipynb")
    assert ns["QUARTER"] == "2024Q2" and ns["QUARTERS"] == ["2023Q4", "2024Q1", "2024Q2"]
    comp = ns["completeness"]
    assert comp.height == 4 * 3 and set(comp["区"]) == {"天桥区", "姜堰区", "建邺区", "江宁区"}
    assert ns["violations"].height == 3 * 3                    # every quarter x importance, zeros included
    assert ns["fig_completeness"].layout.yaxis.title.text == "比率（%）"
    assert ns["outliers"]["待随访"].sum() >= 0 and ns["checks"]["检查项"].sum() > 0


def test_data_quality_counts_planted_problems(workspace, monkeypatch):
    """Quarantined cells, a violation and an outlier planted in a copy show up in the notebook's tables."""
    wh = workspace["warehouse"]
    with connect(wh) as c:
        fid = c.execute("SELECT file_id, source_file FROM raw_file LIMIT 1").fetchall()[0]
        for i in range(3):
            c.execute("""INSERT INTO quarantine (file_id, source_file, period_key, raw_text, reason_code, message,
                         quarantined_at) VALUES (?, ?, '2024Q1', 'x', 'unparseable_value', '测试', now())""",
                      [fid[0], fid[1]])
        c.execute("""INSERT INTO validation_violation (period_key, rule_id, importance, entity_level, entity_code,
                     entity_name, operator, detected_at) VALUES ('2024Q2', 'VR01', 'HIGH', 'community', 'x', '测试社区',
                     '<=', now())""")
    monkeypatch.setenv("SHEQU_WAREHOUSE", str(wh))     # no snapshot beside the copy: the notebook reads it
    ns = run_notebook(ROOT / "notebooks" / "data_quality.ipynb")
    qz = ns["quarantine"].filter(ns["quarantine"]["原因"] == "unparseable_value")
    assert qz["单元格数"].sum() == 3 and qz["季度"].to_list() == ["2024Q1"]
    assert ns["by_file"].filter(ns["by_file"]["文件"] == fid[1])["原因"][0].startswith("unparseable_value 3")
    v = ns["violations"]
    assert v.filter((v["季度"] == "2024Q2") & (v["重要性"] == "HIGH"))["违规数"][0] == 1
    assert ns["by_rule"]["规则"].to_list() == ["VR01"]


def test_weights_office(env, con):
    """The office that sets the weights: weight shares, importances, the sensitivity table, flagged pairs and a
    proposal whose importances meet the target (checked by recomputing them with the proposed weights)."""
    from shequ.appraisal.analysis import importances

    target = {"社区服务": 0.3, "满意度": 0.3, "治安法治": 0.4}
    ns = run_notebook(ROOT / "notebooks" / "weights_office.ipynb", QUARTER="2024Q2", TARGET=target, TOLERANCE=0.03)
    assert ns["weights"].height == 13 and abs(ns["weights"]["名义权重份额"].sum() - 1) < 1e-9
    assert abs(ns["importance"]["重要性"].sum() - 1) < 1e-9
    assert set(ns["sens"]["假设"]) == {"异常值处理深度", "标准化方法", "权重", "汇总方法"}
    assert ns["reliability"].height == 14
    ties = con.execute("SELECT count(*) FROM fact_award WHERE period_key = '2024Q2' AND tie_flag").fetchall()[0][0]
    assert ns["ties"].height == ties
    opt = ns["opt"]
    got = importances(ns["app"], list(target), opt.weights)
    err = max(abs(g - t) for g, t in zip(got, target.values()))
    assert abs(err - opt.max_error) < 1e-9 and opt.ok == (err <= 0.03)
    assert set(ns["proposal"]["类别"]) == set(target)
