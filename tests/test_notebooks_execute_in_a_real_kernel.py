"""The notebooks in a real kernel, as an analyst opens them: each one is executed by nbclient with ipykernel
against the snapshot of the test warehouse and exported to HTML with nbconvert. The export carries plotly.js
once and one chart per chart cell (it works offline), the top-10 table shows every row, and the community profile
explains its 一票否决. `shequ notebook` serves JupyterLab on 127.0.0.1 and SIGTERM stops it and its kernels.

(tests/test_notebooks.py checks the notebooks' numbers by executing their code in the test process.)"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import psutil
import pytest
from nbclient import NotebookClient
from nbconvert import HTMLExporter
from plotly.offline import get_plotlyjs

from browser_helpers import browser, new_page, open_html_collect_errors  # noqa: F401
from shequ.config import ROOT
from shequ.warehouse import connect

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
PLOTLY_MIME = "application/vnd.plotly.v1+json"
PORT = 3401                                      # this test's ports: 3401-3403 (range 3400-3499)
PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook tab on show in JupyterLab


@pytest.fixture(scope="module")
def executed(built, tmp_path_factory) -> dict:
    """Every notebook executed in a fresh python3 kernel (environment: the test warehouse) and exported."""
    env = dict(os.environ, SHEQU_WAREHOUSE=str(built["warehouse"]))
    out = {}
    old = os.environ.get("SHEQU_WAREHOUSE")
    os.environ["SHEQU_WAREHOUSE"] = env["SHEQU_WAREHOUSE"]      # the kernel inherits this process's environment
    try:
        for path in NOTEBOOKS:
            nb = nbformat.read(path, as_version=4)
            NotebookClient(nb, timeout=600, kernel_name="python3",
                           resources={"metadata": {"path": str(path.parent)}}).execute()
            page, _ = HTMLExporter().from_notebook_node(nb)
            html_path = tmp_path_factory.mktemp("html") / f"{path.stem}.html"
            html_path.write_text(page, encoding="utf-8")
            nbformat.write(nb, html_path.with_suffix(".ipynb"))          # as saved after a run in JupyterLab
            out[path.name] = (nb, page, html_path)
    finally:
        if old is None:
            os.environ.pop("SHEQU_WAREHOUSE", None)
        else:
            os.environ["SHEQU_WAREHOUSE"] = old
    return out


def _chart_cells(nb) -> list:
    """Code cells whose last line shows a figure (a name starting with fig)."""
    return [c for c in nb.cells if c.cell_type == "code"
            and re.fullmatch(r"fig\w*", c.source.strip().splitlines()[-1].strip())]


@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_html_export_embeds_plotly_once_and_draws_every_chart(executed, name):
    nb, page, _ = executed[name]
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    charts = _chart_cells(nb)
    assert charts
    for c in charts:                            # JupyterLab draws the plotly mime type; the export its HTML
        kinds = [set(o.get("data", {})) for o in c.outputs if o.output_type in ("execute_result", "display_data")]
        assert any({PLOTLY_MIME, "text/html"} <= k for k in kinds), (c.id, kinds)
    bundle = get_plotlyjs()
    assert page.count(bundle) == 1                                     # plotly.js inline once: works offline
    assert "cdn.plot.ly" not in page.replace(bundle, "")               # (the bundle itself names its CDN)
    assert page.count('class="plotly-graph-div"') == len(charts)
    assert page.count("Plotly.newPlot(") == len(charts)


def test_top_ten_table_shows_every_row(executed, built):
    nb, page, _ = executed["quarter_overview.ipynb"]
    with connect(built["warehouse"], read_only=True) as c:
        q = c.execute("SELECT max(period_key) FROM fact_ranking WHERE scheme_id = 'default'").fetchall()[0][0]
        top = c.execute("""SELECT entity_name FROM fact_ranking WHERE period_key = ? AND scheme_id = 'default'
                           AND entity_level = 'community' AND scope_level = 'city' AND rank <= 10""",
                        [q]).fetchall()
    assert len(top) >= 30                                               # 3 cities x 10 (ties may add)
    cell = next(c for c in nb.cells if c.get("id") == "c06")
    table = next(o["data"]["text/html"] for o in cell.outputs if "text/html" in o.get("data", {}))
    body = table[table.index("<tbody>"):table.index("</tbody>")]
    assert body.count("<tr>") == len(top)
    assert "&hellip;" not in body and "…" not in body
    for (name,) in top:
        assert name in body and name in page
    assert "一票否决" in table


def test_community_profile_explains_its_veto(executed, built):
    nb, page, _ = executed["community_profile.ipynb"]
    with connect(built["warehouse"], read_only=True) as c:
        details = [d for (d,) in c.execute("""SELECT detail FROM fact_explanation WHERE entity_code = '321204001001'
                                              AND kind = 'veto' ORDER BY period_key, position""").fetchall()]
    assert details, "the sample's 河南社区 is hit by a veto in some quarter"
    cell = next(c for c in nb.cells if c.get("id") == "c14")
    shown = "".join(o.get("text", "") + o.get("data", {}).get("text/html", "") for o in cell.outputs)
    assert "名次只按综合得分从高到低排列" in shown
    for d in details:
        assert d in shown and d in page


@pytest.mark.browser
@pytest.mark.parametrize("name", [p.name for p in NOTEBOOKS])
def test_exported_html_draws_every_chart_offline(executed, browser, name):  # noqa: F811
    """The export opened in Chromium with the network blocked: every chart is drawn, no script fails. (nbconvert's
    own template asks cdnjs for require.js and MathJax; the charts need neither.)"""
    nb, _, path = executed[name]
    errors, page = open_html_collect_errors(browser, path, settle_ms=1500)
    try:
        assert page.locator(".plotly-graph-div .main-svg").count() >= len(_chart_cells(nb))
        drawn = page.locator(".plotly-graph-div").evaluate_all("ds => ds.filter(d => d._fullLayout).length")
        assert drawn == len(_chart_cells(nb))
        titles = page.locator(".plotly-graph-div .gtitle").all_text_contents()
        assert len(titles) == len(_chart_cells(nb)) and all(any("\u4e00" <= ch <= "\u9fff" for ch in t)
                                                            for t in titles), titles
        assert [e for e in errors if not e.startswith("network: https://cdnjs.cloudflare.com/")
                and "Failed to load resource" not in e] == []
    finally:
        page.close()


def _wait_status(base: str, token: str, proc: subprocess.Popen, timeout: float = 180) -> dict | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            return _get(f"{base}/api/status", token)
        except OSError:
            time.sleep(1)
    return None


def _stop(proc: subprocess.Popen, family: list) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    for p in family:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.mark.browser
def test_jupyterlab_draws_every_chart_and_whole_tables(executed, browser, tmp_path):  # noqa: F811
    """The executed notebooks opened in JupyterLab in Chromium: plotly's mime type is drawn by the bundled
    jupyterlab-plotly extension (no trust or network needed) and the top-10 table shows every row. (Two of the
    three notebooks: JupyterLab takes minutes to draw a notebook on a loaded 2-core machine; the third one's charts
    are checked in its HTML export above.)"""
    root = tmp_path / "lab"
    root.mkdir()
    opened = {k: v for k, v in executed.items() if k in ("quarter_overview.ipynb", "community_profile.ipynb")}
    for name, (nb, _, _) in opened.items():
        nbformat.write(nb, root / name)
    # every cell rendered, not only those scrolled into view (JupyterLab 4 windows long notebooks by default)
    settings = tmp_path / "settings" / "@jupyterlab" / "notebook-extension"
    settings.mkdir(parents=True)
    (settings / "tracker.jupyterlab-settings").write_text(json.dumps({"windowingMode": "none"}), encoding="utf-8")
    token, port = "shequ-lab-token", PORT + 2
    env = dict(os.environ, JUPYTER_TOKEN=token, JUPYTERLAB_SETTINGS_DIR=str(tmp_path / "settings"),
               JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    log = tmp_path / "lab.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1",
                                 f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
                                 f"--ServerApp.root_dir={root}", "--no-browser", "--allow-root"],
                                env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    family: list = []
    try:
        assert _wait_status(base, token, proc) is not None, log.read_text(errors="replace")
        family = psutil.Process(proc.pid).children(recursive=True)
        for name, (nb, _, _) in opened.items():
            page = new_page(browser)
            try:
                page.goto(f"{base}/lab/tree/{name}?token={token}")
                want = len(_chart_cells(nb))
                # this notebook's panel (JupyterLab also restores the tabs opened before, in the background)
                plots = page.locator(f"{PANEL} .js-plotly-plot")
                page.wait_for_selector(f"{PANEL} .js-plotly-plot .main-svg", timeout=360_000)
                deadline = time.monotonic() + 180
                while plots.count() < want and time.monotonic() < deadline:
                    page.wait_for_timeout(1000)
                assert plots.count() == want, name
                assert page.locator(f"{PANEL} .js-plotly-plot .main-svg").count() >= want
                assert page.js_errors == [] or all("plotly" not in e.lower() for e in page.js_errors), page.js_errors
                if name == "quarter_overview.ipynb":
                    rows = page.locator(f"{PANEL} .jp-OutputArea-output table").evaluate_all(
                        "ts => ts.map(t => t.querySelectorAll('tbody tr').length)")
                    top = next(c for c in nb.cells if c.get("id") == "c06")
                    html = next(o["data"]["text/html"] for o in top.outputs if "text/html" in o.get("data", {}))
                    assert html[html.index("<tbody>"):].count("<tr>") in rows and max(rows) >= 30
            finally:
                page.close()
        family += psutil.Process(proc.pid).children(recursive=True)       # the kernels opened with the notebooks
    finally:
        _stop(proc, family)


# ------------------------------------------------------------------ shequ notebook
def _get(url: str, token: str) -> dict:
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("sig, port", [(signal.SIGTERM, PORT), (signal.SIGINT, PORT + 1)], ids=["SIGTERM", "SIGINT"])
def test_shequ_notebook_serves_jupyterlab_and_a_signal_leaves_no_process(built, tmp_path, sig, port):
    token = "shequ-test-token"
    env = dict(os.environ, JUPYTER_TOKEN=token, JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTER_CONFIG_DIR=str(tmp_path / "config"), JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "ws"))
    shequ = Path(sys.executable).with_name("shequ")
    log = tmp_path / "notebook.log"              # a file, not a pipe nobody drains (JupyterLab logs a lot)
    with open(log, "wb") as fh:
        proc = subprocess.Popen([str(shequ), "notebook", "--warehouse", str(built["warehouse"]), "--port",
                                 str(port), "--no-browser"], env=env, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    family: list = []
    try:
        deadline = time.monotonic() + 180
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status = _get(f"{base}/api/status", token)
                break
            except OSError:
                time.sleep(1)
        assert status is not None, log.read_text(errors="replace")
        assert "started" in status
        # bound to the loopback address only
        jupyter = [p for p in psutil.Process(proc.pid).children(recursive=True) if "jupyterlab" in " ".join(
            p.cmdline())]
        assert len(jupyter) == 1
        listening = {c.laddr.ip for c in jupyter[0].net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        assert listening == {"127.0.0.1"}
        # a running kernel, as when a notebook is open
        req = urllib.request.Request(f"{base}/api/kernels", data=b"{}", method="POST",
                                     headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            assert r.status == 201
        time.sleep(2)
        family = [jupyter[0], *jupyter[0].children(recursive=True)]
        assert len(family) >= 2                                         # the server and its kernel
        proc.send_signal(sig)                                           # the shequ process only
        proc.wait(timeout=60)
        gone, alive = psutil.wait_procs(family, timeout=10)
        assert not alive, [(p.pid, p.cmdline()) for p in alive]
        with pytest.raises(OSError):
            _get(f"{base}/api/status", token)
        assert "正在关闭 JupyterLab" in log.read_text(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for p in family:                                        # never leave this test's server or kernel behind
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        for p in psutil.process_iter(["cmdline"]):
            if f"--ServerApp.port={port}" in " ".join(p.info["cmdline"] or []):
                p.kill()
