"""The quarterly report in headless Chromium: no JavaScript error, no request leaves the file system, the six
plotly charts are drawn (three in 稳健性与方法), and the explanations open. Screenshots go to data/screenshots/."""

import os

import pytest

from browser_helpers import SCREENSHOTS, browser, open_html_collect_errors  # noqa: F401
from shequ import config
from shequ.report import report_path, write_report
from shequ.snapshot import source_path
from shequ.warehouse import connect

pytestmark = pytest.mark.browser


def _check_page(browser, path, screenshot):
    errors, page = open_html_collect_errors(browser, path, screenshot=screenshot, settle_ms=1500)
    try:
        assert errors == []                                              # no JS error, no blocked request
        plots = page.locator(".js-plotly-plot")
        assert plots.count() == 6
        for i in range(6):
            assert plots.nth(i).locator("svg.main-svg").count() >= 1       # every chart was drawn
        titles = [t.text_content() for t in page.locator(".gtitle").all()]
        assert any("名次变化" in t for t in titles) and any("类别得分" in t for t in titles), titles
        assert page.locator("#fig_bump .scatterlayer .trace").count() >= 4
        assert page.locator("#fig_profiles .polarlayer, #fig_profiles .polar").count() >= 2
        assert page.locator("#fig_framework .sunburstlayer path").count() > 13      # index, categories, indicators
        assert page.locator("#fig_corr .heatmaplayer image, #fig_corr .hm image").count() >= 1
        assert page.locator("#fig_uncertainty .scatterlayer .trace").count() >= 3    # one per city
        # the explanations are collapsed; opening a district shows its communities' sentences
        district = page.locator("details.district").first
        community = district.locator("details.community").first
        assert not community.is_visible()
        district.locator("summary").first.click()
        community.locator("summary").click()
        assert community.locator("dd").first.is_visible()
        return page.locator("details.community").count()
    finally:
        page.close()


def test_report_of_the_test_warehouse(browser, built):
    path = report_path("2024Q2", built["warehouse"])                     # written by the quarterly_report asset
    with connect(built["warehouse"], read_only=True) as c:
        n = c.execute("""SELECT count(*) FROM fact_ranking WHERE period_key = '2024Q2'
                         AND entity_level = 'community' AND scope_level = 'city'""").fetchall()[0][0]
    assert _check_page(browser, path, SCREENSHOTS / "report_2024Q2_test.png") == n


def test_report_of_the_bundled_sample_2024q3(browser, tmp_path):
    """The report `shequ refresh` writes for the bundled inbox (CI runs the refresh first)."""
    src = source_path(config.DEFAULT_WAREHOUSE)
    if not src.exists():
        msg = f"{src} 不存在：先运行 .venv/bin/shequ refresh"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    out = tmp_path / "report_2024Q3.html"
    info = write_report("2024Q3", out=out, warehouse=config.DEFAULT_WAREHOUSE)
    assert info["ranked"] == 132
    _check_page(browser, out, SCREENSHOTS / "report_2024Q3.png")
