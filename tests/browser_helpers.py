"""Browser-test support: the system Chromium driven by Playwright, a `dagster dev` on loopback, and a helper
that opens a local HTML file and collects its JavaScript errors.

Chromium and the CJK font come from the system package manager (`bash scripts/install_browser.sh`);
Playwright drives /usr/bin/chromium through ``executable_path``, so `playwright install` is never run.
Without Chromium the tests skip, except under CI=1, where they fail: CI must not pass by skipping them.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from shequ.config import ROOT

SCREENSHOTS = ROOT / "data" / "screenshots"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]


def chromium_path() -> str | None:
    for cand in (os.environ.get("SHEQU_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                 shutil.which("chromium-browser")):
        if cand and Path(cand).exists():
            return cand
    return None


def require_browser() -> str:
    """The Chromium executable, or skip (fail under CI=1) with the command that installs it."""
    path = chromium_path()
    msg = "未找到 Chromium：运行 bash scripts/install_browser.sh"
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(msg + "（CI=1：浏览器测试不得跳过）")
        pytest.skip(msg)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("未安装 playwright（uv sync 的 dev 依赖）")
        pytest.skip("未安装 playwright")
    return path


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium per test module (Playwright, system executable). Module scope, so Playwright's
    event loop is closed before later modules run Dagster in-process."""
    exe = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def new_page(browser, **kw):
    """A page that records console errors and uncaught exceptions in ``page.js_errors``."""
    page = browser.new_page(viewport={"width": 1500, "height": 950}, locale="zh-CN", **kw)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console.{m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
    page.js_errors = errors
    return page


def open_html_collect_errors(browser, path: str | os.PathLike, screenshot: str | os.PathLike | None = None,
                             settle_ms: int = 500, block_network: bool = True) -> tuple[list[str], object]:
    """Open a local HTML file; return (JavaScript errors, the open page). Requests that leave the file
    system are blocked and reported as errors too, so a page that needs a CDN fails here as it would offline.
    The caller closes the page (``page.close()``)."""
    page = new_page(browser)
    if block_network:
        def route(r):
            if r.request.url.startswith(("file:", "data:", "blob:")):
                return r.continue_()
            page.js_errors.append(f"network: {r.request.url}")
            return r.abort()
        page.route("**/*", route)
    page.goto(Path(path).resolve().as_uri(), wait_until="load")
    page.wait_for_timeout(settle_ms)
    if screenshot:
        Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)
    return page.js_errors, page


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


DAGSTER_YAML = """# written by tests/browser_helpers.py: runs launched from the UI start at once
run_coordinator:
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
"""


class DagsterDev:
    """`dagster dev` on 127.0.0.1 in its own session, with its own DAGSTER_HOME, warehouse and inbox."""

    def __init__(self, home: Path, warehouse: Path, inbox: Path, port: int | None = None):
        self.home, self.warehouse, self.inbox = Path(home), Path(warehouse), Path(inbox)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.ready_seconds: float | None = None

    def start(self, timeout: float = 300) -> "DagsterDev":
        self.home.mkdir(parents=True, exist_ok=True)
        # the project's instance settings (concurrency pool, telemetry) plus a run coordinator that launches
        (self.home / "dagster.yaml").write_text(
            DAGSTER_YAML + (ROOT / "dagster.yaml").read_text(encoding="utf-8"), encoding="utf-8")
        env = dict(os.environ, DAGSTER_HOME=str(self.home), SHEQU_WAREHOUSE=str(self.warehouse),
                   SHEQU_INBOX=str(self.inbox), PYTHONUNBUFFERED="1")
        self.log = open(self.home / "dagster_dev.log", "w")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "dagster", "dev", "-h", "127.0.0.1", "-p", str(self.port)],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=lambda: (signal.signal(signal.SIGINT, signal.SIG_DFL),
                                signal.signal(signal.SIGTERM, signal.SIG_DFL)))
        try:
            self._wait_ready(t0, timeout)
        except BaseException:
            self.stop()
            raise
        self.ready_seconds = time.monotonic() - t0
        # the UI opens a "Join the Dagster community" dialog on loopback at a moment of its choosing, over
        # whatever the test is doing; mark it seen in this instance, as its Skip button does
        self.graphql("mutation { setNuxSeen }")
        return self

    def _wait_ready(self, t0: float, timeout: float) -> None:
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"dagster dev 退出（{self.proc.returncode}）：{self.log_tail()}")
            if time.monotonic() - t0 > timeout:
                raise TimeoutError(f"dagster dev {timeout:.0f}s 内未就绪：{self.log_tail()}")
            try:
                urllib.request.urlopen(f"{self.url}/server_info", timeout=2).read()
                entries = self.graphql("{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
                                       "locationOrLoadError { __typename ... on PythonError { message } } } } } }")
                entries = entries["workspaceOrError"]["locationEntries"]
                if entries and all(e["loadStatus"] == "LOADED" for e in entries):
                    errs = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
                    if errs:
                        raise RuntimeError(f"代码位置加载失败：{errs}")
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.5)

    def graphql(self, query: str, variables: dict | None = None) -> dict:
        req = urllib.request.Request(f"{self.url}/graphql", headers={"Content-Type": "application/json"},
                                     data=json.dumps({"query": query, "variables": variables or {}}).encode())
        out = json.loads(urllib.request.urlopen(req, timeout=30).read())
        if out.get("errors"):
            raise RuntimeError(out["errors"])
        return out["data"]

    def runs(self) -> list[dict]:
        data = self.graphql("{ runsOrError(limit: 50) { ... on Runs { results { runId status "
                            "tags { key value } } } } }")
        return data["runsOrError"]["results"]

    def wait_run(self, run_id: str, timeout: float = 400) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.graphql("query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }",
                              {"id": run_id})["runOrError"]["status"]
            if st in ("SUCCESS", "FAILURE", "CANCELED"):
                return st
            time.sleep(1)
        raise TimeoutError(f"run {run_id} 未在 {timeout}s 内结束：{self.log_tail()}")

    def log_tail(self, n: int = 3000) -> str:
        self.log.flush()
        return (self.home / "dagster_dev.log").read_text(encoding="utf-8", errors="replace")[-n:]

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
