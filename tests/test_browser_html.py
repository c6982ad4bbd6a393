"""The local-HTML helper the report tests use: a self-contained plotly page opens without JavaScript errors in
headless Chromium; a script error, and a script that needs a CDN, are both reported. Also: browser tests fail
instead of skipping under CI=1 when Chromium is missing."""

import plotly.graph_objects as go
import pytest

import browser_helpers
from browser_helpers import SCREENSHOTS, browser, open_html_collect_errors  # noqa: F401

pytestmark = pytest.mark.browser


def _plotly_page(path, include_plotlyjs):
    fig = go.Figure(go.Bar(x=["姜堰区", "建邺区", "天桥区"], y=[71.2, 68.4, 65.0]))
    fig.update_layout(title="各区平均得分", xaxis_title="区", yaxis_title="得分")
    path.write_text(fig.to_html(full_html=True, include_plotlyjs=include_plotlyjs), encoding="utf-8")
    return path


def test_self_contained_plotly_page_has_no_errors(browser, tmp_path):
    page_path = _plotly_page(tmp_path / "ok.html", include_plotlyjs=True)
    errors, page = open_html_collect_errors(browser, page_path, screenshot=SCREENSHOTS / "html_helper_plotly.png")
    try:
        assert errors == []
        assert page.locator(".plotly .main-svg").count() >= 1                 # the chart was drawn
        assert "各区平均得分" in page.locator(".gtitle").text_content()
    finally:
        page.close()


def test_script_error_and_cdn_dependency_are_reported(browser, tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<html><body><script>undefinedFunction()</script></body></html>", encoding="utf-8")
    errors, page = open_html_collect_errors(browser, bad)
    page.close()
    assert any(e.startswith("pageerror") and "undefinedFunction" in e for e in errors), errors

    cdn = _plotly_page(tmp_path / "cdn.html", include_plotlyjs="cdn")
    errors, page = open_html_collect_errors(browser, cdn)
    page.close()
    assert any(e.startswith("network: https://cdn.plot.ly") for e in errors), errors


def test_missing_chromium_fails_under_ci_and_skips_otherwise(monkeypatch):
    monkeypatch.setattr(browser_helpers, "chromium_path", lambda: None)
    monkeypatch.setenv("CI", "1")
    with pytest.raises(pytest.fail.Exception, match="install_browser.sh"):
        browser_helpers.require_browser()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="install_browser.sh"):
        browser_helpers.require_browser()
