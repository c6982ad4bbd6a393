"""Notebooks run end to end against the test warehouse (code cells executed in order, as a kernel would)."""

import json

import pytest

from shequ.config import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_executes(path, built, monkeypatch):
    monkeypatch.setenv("SHEQU_WAREHOUSE", str(built["warehouse"]))
    nb = json.loads(path.read_text(encoding="utf-8"))
    ns: dict = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{path.name}:{cell['id']}", "exec"), ns)
    assert ns["QUARTER"] == "2024Q2"
    assert ns["top"].height > 0 and set(ns["top"]["市"]) == {"南京市", "泰州市", "济南市"}
    assert len(ns["fig"].data) == 4   # one bar trace per indicator facet
