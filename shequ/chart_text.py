"""Text from data shown as text in plotly charts (the report, the notebooks).

plotly.js draws titles, legends, tick labels, annotations and hover text as a subset of HTML: ``<b>``, ``<i>``,
``<br>``, ``<sup>``, ``<sub>``, ``<span style>`` and ``<a href>`` become markup (a registry name holding ``<b>``
turns bold, an ``<a>`` becomes a link), and a hover template fills in every ``%{...}`` it holds, including one
inside a name that plotly express wrote into the template (``区=%{x}``). plotly.js decodes ``&amp;`` ``&lt;``
``&gt;`` and numeric entities when it draws a text, after filling in templates, so a text with ``&``, ``<``, ``>``
and ``%`` written as entities is drawn exactly as written and never matches ``%{``. Quotes stay as they are
(plotly would draw ``&quot;`` literally). There is no plotly option that turns its HTML off, hence by hand.

    fig = px.box(plain_frame(scores).to_pandas(), x="区", y="得分", title=f"{plain(name)} 得分")
"""

import polars as pl

ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "%": "&#37;"}   # "&" first


def plain(v) -> str | None:
    """``v`` as text plotly.js draws literally; None stays None (a gap, not the word "None")."""
    if v is None:
        return None
    s = str(v)
    for ch, ent in ENTITIES.items():
        s = s.replace(ch, ent)
    return s


def plain_expr(col: pl.Expr) -> pl.Expr:
    for ch, ent in ENTITIES.items():
        col = col.str.replace_all(ch, ent, literal=True)
    return col


def plain_frame(df: pl.DataFrame) -> pl.DataFrame:
    """Every text column of ``df`` escaped for plotly (values only: column names are the caller's labels)."""
    cols = [c for c, t in df.schema.items() if t == pl.String]
    return df.with_columns(plain_expr(pl.col(c)) for c in cols) if cols else df
