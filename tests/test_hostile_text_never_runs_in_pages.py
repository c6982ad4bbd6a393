"""Text from files is shown as text on every page, never run, never markup, never a live link.

A generated registry and inbox plant markup and ``javascript:`` URLs in every field that reaches a page: community,
street, district and city names (registry), a column header, a note under the table, file names and a number cell
(quarantine messages). The real Dagster job builds the quarter; the report, the Data Docs, the quarter_overview
notebook (executed by a real kernel and exported by nbconvert) and the charts of the other two notebooks are opened
in headless Chromium, which must show: no ``window.__pwned``, no dialog, no element or attribute made from the
planted text, no ``javascript:`` link, the planted text visible as text (tables, legends, tick labels, hover), and
no Content-Security-Policy violation by the pages' own scripts (while a script added by hand is refused). The
Dagster metadata built for the same files is plain text, not markdown.
"""

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import plotly.io as pio
import polars as pl
import pytest
from plotly.offline import get_plotlyjs

from browser_helpers import browser, new_page  # noqa: F401
from shequ.config import ROOT

pytestmark = pytest.mark.browser

Q = "2024Q3"
PWN = "window.__pwned=1"
PAYLOADS = [f"<img src=x onerror={PWN}>", f"<script>{PWN}</script>", "<b>粗</b>", f'<a href="javascript:{PWN}">点</a>',
            f'"><svg onload={PWN}>', "{{7*7}}", "%{x}"]
SYL = "甲乙丙丁戊己庚辛壬癸子丑寅卯辰巳午未申酉戌亥天地"
HEADER = f"<img src=x onerror={PWN}>人数"
CELL = f"<script>{PWN}</script>"
NOTE = f'注：<a href="javascript:{PWN}">点</a><b>粗</b>'
CSV_NAME = f'"><svg onload={PWN}>_{Q}.csv'
XLSX_NAME = f"<img src=x onerror={PWN}>_{Q}.xlsx"


def hostile_set(out: Path) -> pl.DataFrame:
    """registry/communities.csv (24 communities, 2 districts, 4 streets, every name a payload) and an inbox of
    two files for Q: a CSV with a hostile name, an extra hostile header and a hostile number cell, and an xlsx
    with a hostile name and a hostile note below the table."""
    from openpyxl import load_workbook

    from shequ.sample import generate_values, synthetic_registry, write_csv, write_xlsx

    reg = synthetic_registry(24, per_street=6, streets_per_district=2)
    streets = {c: f"{PAYLOADS[i % 7]}{SYL[i]}街道" for i, c in enumerate(sorted(set(reg["street_code"])))}
    districts = {c: f"{PAYLOADS[(i + 2) % 7]}{SYL[i]}区" for i, c in enumerate(sorted(set(reg["district_code"])))}
    reg = reg.with_columns(
        pl.Series("name", [f"{PAYLOADS[i % 7]}{SYL[i]}社区" for i in range(reg.height)]),
        pl.col("street_code").replace_strict(streets).alias("street"),
        pl.col("district_code").replace_strict(districts).alias("district"),
        pl.lit("<b>粗</b>市").alias("city"))
    (out / "registry").mkdir(parents=True)
    reg.write_csv(out / "registry" / "communities.csv")
    values = generate_values(reg, [Q], 1)
    (_, a), (_, b) = reg.group_by("district_code", maintain_order=True)
    folder = out / "inbox" / Q
    p = folder / CSV_NAME
    write_csv(p, a["district"][0], Q, a, values.filter(pl.col("district") == a["district"][0]), "utf-8-sig", None,
              suffix_variants=False)
    rows = list(csv.reader(io.StringIO(p.read_text(encoding="utf-8-sig"))))
    rows[0].append(HEADER)
    for r in rows[1:]:
        r.append("1")
    rows[2][4] = CELL
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    p.write_text(buf.getvalue(), encoding="utf-8-sig")
    p = folder / XLSX_NAME
    write_xlsx(p, b["district"][0], Q, b, values.filter(pl.col("district") == b["district"][0]))
    wb = load_workbook(p)
    wb.active.append([NOTE])
    wb.save(p)
    return reg


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    from pipelines.definitions import defs
    from pipelines.resources import ShequWarehouse
    from shequ.cli import QUIET
    from shequ.periods import quarter_to_partition

    root = tmp_path_factory.mktemp("hostile")
    reg = hostile_set(root)
    (root / "reviews").mkdir()
    wh = root / "warehouse.duckdb"
    res = defs.resolve_job_def("quarterly_refresh").execute_in_process(
        partition_key=quarter_to_partition(Q), instance=dg.DagsterInstance.ephemeral(), run_config=QUIET,
        tags={"shequ/datadocs": "skip"}, raise_on_error=False,
        resources={"warehouse": ShequWarehouse(path=str(wh), inbox=str(root / "inbox"),
                                               registry_dir=str(root / "registry"), reviews=str(root / "reviews"))})
    assert res.success
    # the Data Docs (GX import, ~40 s) and the kernel run of a notebook (~60 s) start now, in their own processes,
    # and run while the report and the notebook charts are checked
    env = dict(os.environ, SHEQU_WAREHOUSE=str(wh), PLOTLY_RENDERER="notebook")
    logs = {k: open(root / f"{k}.log", "w") for k in ("docs", "nbconvert")}
    procs = {
        "docs": subprocess.Popen([sys.executable, "-m", "shequ.datadocs", "--warehouse", str(wh), "--out",
                                  str(root / "docs")], cwd=ROOT, env=env, stdout=logs["docs"], stderr=subprocess.STDOUT),
        "nbconvert": subprocess.Popen([sys.executable, "-m", "jupyter", "nbconvert", "--to", "html", "--execute",
                                       "--ExecutePreprocessor.timeout=300", "--output-dir", str(root / "nb"),
                                       str(ROOT / "notebooks" / "quarter_overview.ipynb")],
                                      cwd=ROOT / "notebooks", env=env, stdout=logs["nbconvert"], stderr=subprocess.STDOUT),
    }
    try:
        yield {"root": root, "warehouse": wh, "result": res, "registry": reg, "procs": procs}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for f in logs.values():
            f.close()


def finished(hostile, name: str, timeout: float = 300) -> None:
    """Wait for one of the side processes started by ``hostile``; fail with its log if it failed."""
    rc = hostile["procs"][name].wait(timeout=timeout)
    assert rc == 0, (hostile["root"] / f"{name}.log").read_text(encoding="utf-8", errors="replace")[-3000:]


def test_the_hostile_text_landed(hostile):
    """The planted text reached the warehouse, so the pages below really receive it."""
    from shequ.warehouse import connect

    with connect(hostile["warehouse"], read_only=True) as c:
        names = {r[0] for r in c.execute("""SELECT entity_name FROM fact_ranking WHERE period_key = ?
                                            AND entity_level = 'community' AND rank IS NOT NULL""", [Q]).fetchall()}
        files = {r[0].split("/")[-1]: r[1] for r in c.execute("SELECT source_file, notes FROM raw_file").fetchall()}
        messages = " ".join(r[0] for r in c.execute("SELECT message FROM quarantine").fetchall())
    assert names == set(hostile["registry"]["name"])
    assert set(files) == {CSV_NAME, XLSX_NAME} and NOTE in files[XLSX_NAME]
    assert HEADER in messages and CELL in messages


# ------------------------------------------------------------------ the browser checks
INIT = """window.__csp = [];
document.addEventListener('securitypolicyviolation', e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"""

INERT = """() => {
  const URL_ATTRS = ['href', 'xlink:href', 'src', 'srcdoc', 'action', 'formaction', 'data', 'style'];
  const hits = [];
  for (const e of document.querySelectorAll('*')) {
    for (const a of e.attributes) {      // data-* attributes may hold the text (plotly keeps it): not live
      const live = a.name.startsWith('on') || URL_ATTRS.includes(a.name.toLowerCase());
      if (live && a.value.includes('__pwned')) hits.push(`${a.name}="${a.value}" on <${e.tagName}>`);
      if (live && /^\\s*javascript:/i.test(a.value)) hits.push(`javascript: in ${a.name} on <${e.tagName}>`);
    }
    if (e.tagName.toLowerCase() === 'img' && e.getAttribute('src') === 'x') hits.push('planted <img>');
  }
  for (const s of document.scripts) if (s.textContent.trim().startsWith('window.__pwned')) hits.push('planted <script>');
  for (const e of document.querySelectorAll('b, strong, a, svg a')) {
    const t = e.textContent.trim();
    if (t === '粗' || t === '点') hits.push(`<${e.tagName}>${t}`);
  }
  for (const t of document.querySelectorAll('tspan[style*="bold"]')) if (t.textContent.includes('粗')) hits.push('bold tspan');
  return hits;
}"""

TEXT = """() => {
  const w = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT, {acceptNode: n =>
      n.parentElement && n.parentElement.closest('script, style') ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  const parts = []; let n;
  while ((n = w.nextNode())) parts.push(n.textContent);
  return parts.join('\\n');
}"""

PROBE = """() => new Promise(done => {
  const s = document.createElement('script');
  s.textContent = 'window.__probe = 1';
  document.head.appendChild(s);
  setTimeout(() => done(window.__probe === undefined), 300);
})"""


def open_page(browser, path: Path):
    page = new_page(browser)
    page.dialogs = []
    page.console = []
    page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
    page.on("console", lambda m: page.console.append(m.text))
    page.add_init_script(INIT)

    def route(r):
        if r.request.url.startswith(("file:", "data:", "blob:")):
            return r.continue_()
        page.js_errors.append(f"network: {r.request.url}")
        return r.abort()
    page.route("**/*", route)
    page.goto(path.resolve().as_uri(), wait_until="load")
    page.wait_for_timeout(1000)
    return page


def assert_inert(page, csp: bool = True) -> str:
    """Nothing ran, nothing became markup or a link; returns the page's visible text (text nodes)."""
    assert page.evaluate("typeof window.__pwned") == "undefined"
    assert page.dialogs == []
    assert page.evaluate(INERT) == []
    if csp:
        assert page.evaluate("window.__csp") == []                       # the page's own scripts all allowed
        assert not [m for m in page.console if "Content Security Policy" in m]
        assert page.evaluate("document.querySelectorAll('meta[http-equiv=\"Content-Security-Policy\"]').length") == 1
        assert page.evaluate(PROBE)                                      # ... and an added inline script refused
    return page.evaluate(TEXT)


def svg_texts(page, selector: str) -> list[str]:
    return [t.text_content() for t in page.locator(selector).all()]


def hover_texts(page, div: str) -> str:
    """Move the mouse onto every point of a chart and collect the hover labels plotly draws."""
    out = []
    page.locator(f"#{div}").scroll_into_view_if_needed()
    for pt in page.locator(f"#{div} .point").all():
        bb = pt.bounding_box()
        if bb:
            page.mouse.move(bb["x"] + bb["width"] / 2, bb["y"] + bb["height"] / 2)
            page.wait_for_timeout(80)
            out += page.evaluate(f"[...document.querySelectorAll('#{div} .hoverlayer text')].map(t => t.textContent)")
    return "\n".join(out)


def test_report(browser, hostile):
    reg = hostile["registry"]
    page = open_page(browser, hostile["root"] / "reports" / f"report_{Q}.html")
    try:
        assert page.js_errors == []
        assert page.locator(".js-plotly-plot svg.main-svg").count() >= 3  # the charts drew under the policy
        text = assert_inert(page)
        for s in [*reg["name"], *reg["street"], *reg["district"], HEADER, CELL]:   # tables and the quarantine
            assert s in text, s
        legends = svg_texts(page, ".legendtext")
        assert len(legends) >= 10
        for t in legends:                                                # each legend entry: a name as written
            assert any(t.startswith(n + "（") for n in reg["name"]), t
        ticks = svg_texts(page, "#fig_districts .xtick text")
        assert sorted(ticks) == sorted(set(reg["district"]))
        hover = hover_texts(page, "fig_districts")
        for n in reg["name"]:                                            # %{x} in a name is not filled in
            assert n in hover, n
        bump = hover_texts(page, "fig_bump")
        lines = [t for t in bump.splitlines() if t]
        assert lines and all(any(t.startswith(n + "（") for n in reg["name"]) for t in lines), lines
    finally:
        page.close()


def figures_page(figs: list, path: Path) -> Path:
    """The notebooks' figures as one offline page (plotly.js inline once), as JupyterLab would draw them."""
    divs = "\n".join(pio.to_html(f, full_html=False, include_plotlyjs=False, div_id=f"nbfig{i}")
                     for i, f in enumerate(figs))
    path.write_text(f"<!DOCTYPE html><html><head><meta charset='utf-8'><script>{get_plotlyjs()}</script></head>"
                    f"<body>{divs}</body></html>", encoding="utf-8")
    return path


def run_notebook(name: str, **params) -> dict:
    nb = json.loads((ROOT / "notebooks" / name).read_text(encoding="utf-8"))
    ns: dict = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), f"{name}:{cell['id']}", "exec"), ns)
            if "parameters" in cell["metadata"].get("tags", []):
                ns.update(params)
    return ns


def test_notebook_charts(browser, hostile, monkeypatch, tmp_path):
    """Every chart of the data-quality and community notebooks, computed on the hostile snapshot (the code cells
    run in order, as in tests/test_notebooks.py), drawn in Chromium."""
    monkeypatch.setenv("SHEQU_WAREHOUSE", str(hostile["warehouse"]))
    reg = hostile["registry"]
    code = reg.filter(pl.col("name").str.starts_with("%{x}"))["community_code"][0]
    figs = []
    # quarter_overview.ipynb: executed by a kernel and exported below
    for name, params in (("data_quality.ipynb", {}), ("community_profile.ipynb", {"COMMUNITY_CODE": code})):
        ns = run_notebook(name, **params)
        figs += [v for k, v in ns.items() if k.startswith("fig") and hasattr(v, "to_plotly_json")]
    assert len(figs) >= 9
    page = open_page(browser, figures_page(figs, tmp_path / "figs.html"))
    try:
        assert page.js_errors == []
        assert_inert(page, csp=False)
        drawn = "\n".join(svg_texts(page, "svg text"))
        name = reg.filter(pl.col("community_code") == code)["name"][0]
        for s in ["<b>粗</b>", f'<a href="javascript:{PWN}">点</a>', f"{name} 三级排名", CSV_NAME]:
            assert s in drawn, s                                         # ticks, titles, file names as written
    finally:
        page.close()


def test_data_docs(browser, hostile):
    finished(hostile, "docs")                                            # python -m shequ.datadocs
    index = hostile["root"] / "docs" / "index.html"
    pages = [index] + [p for p in sorted(index.parent.rglob("*.html")) if "static" not in p.parts
                       and "粗" in p.read_text(encoding="utf-8")]
    assert len(pages) >= 2                                               # a failed check lists hostile names
    seen = ""
    for path in pages:
        page = open_page(browser, path)
        try:
            assert page.js_errors == [], path
            seen += assert_inert(page)
        finally:
            page.close()
    assert "<b>粗</b>" in seen and f'<a href="javascript:{PWN}">点</a>' in seen


def test_notebook_exported_by_nbconvert(browser, hostile):
    """quarter_overview.ipynb executed by a real kernel on the hostile snapshot and exported to HTML
    (`jupyter nbconvert --to html --execute`, plotly's "notebook" renderer: plotly.js inline, works offline)."""
    finished(hostile, "nbconvert")
    page = open_page(browser, hostile["root"] / "nb" / "quarter_overview.html")
    try:
        # the lab template asks CDNs for require.js and MathJax (blocked here): not a page of ours
        assert all("cdnjs.cloudflare.com" in e or "ERR_FAILED" in e for e in page.js_errors), page.js_errors
        assert page.locator(".js-plotly-plot svg.main-svg").count() >= 4
        text = assert_inert(page, csp=False)
        drawn = "\n".join(svg_texts(page, "svg text"))
        for s in ["<b>粗</b>", f'<a href="javascript:{PWN}">点</a>']:
            assert s in drawn and s in text
    finally:
        page.close()


# ------------------------------------------------------------------ Dagster metadata
def _values(md: dict) -> list:
    return list(md.values())


def test_dagster_metadata_is_text(hostile):
    res = hostile["result"]
    values = []
    for node in ("inbox_files", "staged_values", "dimensions", "fact_ranking"):
        for m in res.asset_materializations_for_node(node):
            values += _values(m.metadata)
    for ev in res.get_asset_check_evaluations():
        values += _values(ev.metadata)
    assert values
    assert not [v for v in values if isinstance(v, dg.MarkdownMetadataValue)]
    text = "\n".join(v.value for v in values if isinstance(v, dg.TextMetadataValue))
    for s in [CSV_NAME, XLSX_NAME, NOTE, "<b>粗</b>"]:                  # file names, notes, check details
        assert s in text, s                                              # shown exactly as written


def test_check_metadata_of_a_hostile_result_is_text():
    from pipelines.assets import _check_results, text_table
    from shequ.quality import Result

    r = Result(suite="fact_indicator_value", expectation="[点](javascript:alert(1)) <b>粗</b>", severity="critical",
               success=False, unexpected=1, checked=2, detail="例：| a | [x](http://evil.example) |\n# 标题")
    out = _check_results("fact_indicator_value", "fact_indicator_value", {Q: [r]})
    md = out[0].metadata["结果"]
    assert isinstance(md, dg.TextMetadataValue)
    assert "[点](javascript:alert(1)) <b>粗</b>" in md.value and "[x](http://evil.example)" in md.value
    assert len(md.value.splitlines()) == 2                               # a line break in a cell stays in its row
    t = text_table(["a"], [["x\ty"]])
    assert isinstance(t, dg.TextMetadataValue) and t.value == "a\nx y"
