"""The report's charts are written without re-validating plotly's template on every figure (shequ/report.py
figure_div): each chart's HTML must stay byte-identical to plotly's own validated path."""
import plotly.graph_objects as go
import plotly.io as pio

from shequ import report
from shequ.warehouse import connect


def validated_div(fig: go.Figure, div_id: str, top: int) -> str:
    """What figure_div wrote before: the template assigned (and validated) on the figure itself."""
    fig.update_layout(font_family=report.FONT, template="plotly_white", margin=dict(l=60, r=30, t=top, b=50))
    return pio.to_html(fig, full_html=False, include_plotlyjs=False, config=report.PLOTLY_CONFIG, div_id=div_id)


def test_every_report_chart_html_identical_to_validated_template(con, built):
    quarter = "2024Q2"
    d = report.load(con, quarter)
    makers = {"fig_districts": report.district_figure, "fig_bump": report.bump_figure,
              "fig_profiles": lambda d: report.profile_figure(d, 5), "fig_uncertainty": report.uncertainty_figure,
              "fig_framework": report.framework_figure, "fig_corr": report.correlation_figure}
    for div_id, make in makers.items():
        fast = report.figure_div(make(d), div_id, top=120)
        slow = validated_div(make(d), div_id, top=120)
        assert fast == slow, div_id
        assert '"template":{"data"' in fast and div_id in fast


def test_a_figure_with_its_own_template_keeps_the_report_template():
    # the report always applies plotly_white, whatever a figure was built with
    make = lambda: go.Figure(go.Scatter(x=[1, 2], y=[3, 4], text=["<b>甲</b>", "乙"]),
                             layout=dict(title="标题", template="plotly_dark"))
    assert report.figure_div(make(), "x") == validated_div(make(), "x", 60)


def test_csp_finds_the_same_inline_elements_as_the_regex():
    # the policy hashes every <script>/<style> text; element_texts (str.find) must find exactly what
    # re.findall(r"<tag[^>]*>(.*?)</tag>", page, re.S) finds, on any arrangement of tags and fragments
    import random
    import re

    rng = random.Random(7)
    parts = ["<script>", "</script>", '<script type="text/javascript">', "<style>", "</style>", "<style id=a>",
             "文", ">", "<", "<scripts>", "</scr", "<script", "b>", "</style", "\n"]
    for _ in range(5000):
        page = "".join(rng.choice(parts) for _ in range(rng.randint(0, 16)))
        for tag in ("script", "style"):
            assert report.element_texts(page, tag) == re.findall(rf"<{tag}[^>]*>(.*?)</{tag}>", page, re.S), page
