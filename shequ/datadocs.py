"""Offline GX Data Docs for the warehouse's check results.

The suites (expectations/*.json) and the results the DuckDB executor recorded (check_result) are turned into GX
``ExpectationSuiteValidationResult`` objects (with the partial unexpected lists the executor stored in
check_result.partial_unexpected) and rendered by GX's own ValidationResultsPageRenderer and Jinja page view: one
page per quarter x suite (validations/<suite>/<quarter>/run/result.html) and one page per suite
(expectations/<suite>.html, ExpectationSuitePageRenderer); index.html links to both. The pages' CDN links are rewritten to the copies vendored in shequ/static/datadocs/ (see
scripts/vendor_datadocs.py), so the site works without network. GX is imported only here, in a separate
process started by ``shequ refresh`` (python -m shequ.datadocs), never by the Dagster code location.

Text from the warehouse is shown as text: GX escapes the parameters of its string templates, but not the cells of
the unexpected-values tables, so ``partial_result`` escapes every value listed there (a community name holding
``<img onerror=...>`` is shown, not run). Every page carries a Content-Security-Policy meta tag: scripts only from
the site's own files and the page's inline scripts and handlers by sha256, no network (see ``csp``).

    python -m shequ.datadocs --warehouse data/warehouse.duckdb --out data/docs

``--rows-on-stdin`` (used by the data_docs asset, see pipelines/publish.py): the process imports GX at once, then
waits for the check_result rows, pickled by the refresh process on its stdin, and renders them. The refresh starts
it ahead, so the import (the slow part) runs on the second core while the refresh works, and the warehouse is read
by the refresh itself (no second process opens the file while it is written). End of input without rows: the
process exits and writes nothing.
"""

import argparse
import base64
import datetime as dt
import hashlib
import html
import json
import re
import pickle
import shutil
import sys
from pathlib import Path

from .config import DATA_DIR, EXPECTATIONS_DIR, ROOT
from .warehouse import connect

VENDOR = ROOT / "shequ" / "static" / "datadocs"
DEFAULT_OUT = DATA_DIR / "docs"
VALIDATION_SUITE = "validation_rules"


def _manifest() -> dict[str, str]:
    return json.loads((VENDOR / "MANIFEST.json").read_text(encoding="utf-8"))["cdn_to_local"]


def rewrite_offline(page: str, depth: int) -> str:
    """CDN scripts and styles -> vendored relative paths; SRI/crossorigin dropped (file:// has no CORS);
    the GX logo from S3 and the favicon -> local files."""
    up = "../" * depth
    for url, rel in sorted(_manifest().items(), key=lambda kv: -len(kv[0])):
        page = page.replace(f'"{url}"', f'"{up}static/vendor/{rel}"')
    page = re.sub(r'\s+integrity="[^"]*"', "", page)
    page = re.sub(r'\s+crossorigin="[^"]*"', "", page)
    page = re.sub(r'src="https://great-expectations-web-assets[^"]*"', f'src="{up}static/images/favicon.ico"', page)
    page = re.sub(r'href="[./]*static/images/favicon.ico"', f'href="{up}static/images/favicon.ico"', page)
    page = re.sub(r'href="(?:\.\./)+index.html"', f'href="{up}index.html"', page)
    page = with_csp(page)
    # a validation page's link to its suite: the suite page rendered at expectations/<suite>.html
    page = re.sub(r'href="(?:\.\./)*expectations/([^"]*)"', lambda m: f'href="{up}expectations/{m.group(1)}"', page)
    # GX's English headings, with the Chinese first
    for en, zh in LABELS.items():
        page = re.sub(rf">(\s*){re.escape(en)}(\s*)<", lambda m: f">{m.group(1)}{zh} {en}{m.group(2)}<", page)
    return page


LABELS = {"Sampled Unexpected Values": "异常值样例（最多 20 个）", "Unexpected Value": "异常值样例（最多 20 个）",
          "Count": "个数", "Overview": "概览",
          "Expectation Suite:": "期望套件：", "Status:": "状态：", "Statistics": "统计", "Table-Level Expectations":
          "表级期望", "Show more info...": "更多信息…"}


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode() + "'"


def csp(page: str) -> str:
    """The policy of one Data Docs page: scripts, styles, fonts and images only from the site's own files
    ('self': the vendored copies under static/), the page's inline scripts and its two inline handlers (GX's
    "show/hide succeeded" buttons, 'unsafe-hashes') by sha256; inline style allowed (bootstrap-table and GX set
    style attributes); no network, no frames, no plugins, no forms, no base URL. The inline scripts are GX's own
    template code: every text from the warehouse in a page is escaped, so none is a script."""
    scripts = {_sha256(t) for t in re.findall(r"<script>(.*?)</script>", page, re.S)}
    handlers = {_sha256(html.unescape(t)) for t in re.findall(r'\son[a-z]+="([^"]*)"', page)}
    src = " ".join(["'self'", *sorted(scripts), *(["'unsafe-hashes'", *sorted(handlers)] if handlers else [])])
    return (f"default-src 'none'; script-src {src}; style-src 'self' 'unsafe-inline'; font-src 'self'; "
            "img-src 'self' data:; base-uri 'none'; form-action 'none'")


def with_csp(page: str) -> str:
    """``page`` with its Content-Security-Policy meta tag right after its charset declaration (which must stay
    within the first 1,024 bytes), or first in <head>."""
    meta = f'<meta http-equiv="Content-Security-Policy" content="{csp(page)}">'
    anchor = r"<meta charset=[^>]*>" if re.search(r"<meta charset=[^>]*>", page, re.I) else r"<head>"
    return re.sub(anchor, lambda m: m.group(0) + "\n" + meta, page, count=1, flags=re.I)


def _results(con) -> dict[tuple[str, str], list[tuple]]:
    out: dict[tuple[str, str], list[tuple]] = {}
    for row in con.execute("""SELECT period_key, suite, expectation, severity, success, unexpected, checked, detail,
                                     checked_at, partial_unexpected
                              FROM check_result ORDER BY period_key, suite, expectation""").fetchall():
        out.setdefault((row[0], row[1]), []).append(row)
    return out


def _suite_expectations(suite: str, rows: list[tuple]) -> list[dict]:
    """The suite's expectation configurations, in check_result order (labels start with the position)."""
    path = EXPECTATIONS_DIR / f"{suite}.json"
    if path.exists():
        exps = json.loads(path.read_text(encoding="utf-8"))["expectations"]
        return [exps[int(r[2][:2])] if r[2][:2].isdigit() and int(r[2][:2]) < len(exps) else None for r in rows]
    # validation rules (models/quality/validation_rules.csv) render as UnexpectedRowsExpectation over the pivot
    return [{"type": "unexpected_rows_expectation", "severity": "warning",
             "kwargs": {"unexpected_rows_query": f"SELECT * FROM {{batch}} -- {r[2]}: {r[7]}"}, "meta": {"notes": r[2]}} for r in rows]


def _display(v):
    """A partial-list item as GX shows it: values as they are, rows (dicts) as ``column=value, ...``; text
    HTML-escaped, because GX puts these table cells into the page as markup."""
    if isinstance(v, dict):
        return html.escape(", ".join(f"{k}={x}" for k, x in v.items()))
    return html.escape(v) if isinstance(v, str) else v


def partial_result(partial_text: str | None, unexpected: int) -> dict:
    """GX result fields from check_result.partial_unexpected: the list and its value counts (GX renders the
    counts table, ``Sampled Unexpected Values`` and ``Count``, from partial_unexpected_counts)."""
    items = [_display(v) for v in json.loads(partial_text or "[]")]
    counts: dict = {}
    for v in items:
        counts[v] = counts.get(v, 0) + 1
    return {"partial_unexpected_list": items,
            "partial_unexpected_counts": [{"value": v, "count": n} for v, n in
                                          sorted(counts.items(), key=lambda kv: -kv[1])]} if items else {
        "partial_unexpected_list": []}


def _suite_definition(suite: str, rows: list[tuple]) -> dict:
    """The suite as GX JSON: expectations/<suite>.json, or the validation rules as UnexpectedRowsExpectations."""
    path = EXPECTATIONS_DIR / f"{suite}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    exps = _suite_expectations(suite, rows)
    return {"name": suite, "expectations": exps,
            "meta": {"notes": {"format": "markdown", "content": [
                "校验规则来自 models/quality/validation_rules.csv（DHIS2 风格），由 shequ.dq 编译为 DuckDB SQL。"]}}}


def results(warehouse: Path) -> dict[tuple[str, str], list[tuple]]:
    """The check_result rows by (quarter, suite): what ``render`` needs from the warehouse."""
    with connect(warehouse, read_only=True) as con:
        return _results(con)


def build(warehouse: Path, out: Path = DEFAULT_OUT) -> Path:
    return render(results(warehouse), out)


def render(groups: dict[tuple[str, str], list[tuple]], out: Path = DEFAULT_OUT) -> Path:
    """Write the site for ``groups`` (``results``) to ``out``, replacing what was there."""
    import great_expectations as gx
    from great_expectations.core import ExpectationSuiteValidationResult, ExpectationValidationResult
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
    from great_expectations.render.renderer import ExpectationSuitePageRenderer, ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    out = Path(out)
    if out.exists():
        shutil.rmtree(out)
    (out / "static").mkdir(parents=True)
    shutil.copytree(VENDOR, out / "static" / "vendor")
    gx_static = Path(gx.__file__).parent / "render" / "view" / "static"
    shutil.copytree(gx_static / "images", out / "static" / "images")
    renderer, view = ValidationResultsPageRenderer(), DefaultJinjaPageView()
    index_rows = []
    suite_pages: dict[str, str] = {}
    for (period, suite), rows in groups.items():
        if suite not in suite_pages:
            # the suite page (GX ExpectationSuitePageRenderer): what is expected, without results
            spec = _suite_definition(suite, rows)
            configs = [{"type": e["type"], "kwargs": e["kwargs"], "meta": e.get("meta", {}),
                        "severity": e.get("severity", "critical") if e.get("severity", "critical") in
                        ("critical", "warning", "info") else "warning"} for e in spec.get("expectations", [])]
            gsuite = gx.ExpectationSuite(name=suite, expectations=configs, meta=spec.get("meta", {}))
            rel = Path("expectations") / f"{suite}.html"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            (out / rel).write_text(rewrite_offline(view.render(ExpectationSuitePageRenderer().render(gsuite)),
                                                   depth=1), encoding="utf-8")
            suite_pages[suite] = rel.as_posix()
        results = []
        for r, exp in zip(rows, _suite_expectations(suite, rows)):
            if exp is None:
                continue
            sev = exp.get("severity", "critical")
            cfg = ExpectationConfiguration(type=exp["type"], kwargs=exp["kwargs"], meta={
                **exp.get("meta", {}), "shequ_label": r[2], "shequ_detail": r[7]},
                severity=sev if sev in ("critical", "warning", "info") else "warning")
            n, u = int(r[6] or 0), int(r[5] or 0)
            results.append(ExpectationValidationResult(success=bool(r[4]), expectation_config=cfg, result={
                "element_count": n, "unexpected_count": u, "unexpected_percent": (100.0 * u / n) if n else 0.0,
                "missing_count": 0, **partial_result(r[9], u)}))
        ok = sum(x.success for x in results)
        run_time = max(r[8] for r in rows)
        vr = ExpectationSuiteValidationResult(
            success=ok == len(results), results=results, suite_name=suite,
            statistics={"evaluated_expectations": len(results), "successful_expectations": ok,
                        "unsuccessful_expectations": len(results) - ok,
                        "success_percent": 100.0 * ok / len(results) if results else 100.0},
            meta={"active_batch_definition": {"datasource_name": "shequ_warehouse", "data_connector_name": "duckdb",
                                              "data_asset_name": suite, "batch_identifiers": {"period_key": period}},
                  "run_id": {"run_name": period, "run_time": run_time.isoformat()},
                  "batch_spec": {"executor": "shequ.quality (DuckDB SQL)"}, "batch_markers": {},
                  "great_expectations_version": gx.__version__})
        page = view.render(renderer.render(vr))
        rel = Path("validations") / suite / period / "run" / "result.html"
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(rewrite_offline(page, depth=4), encoding="utf-8")
        index_rows.append((period, suite, ok, len(results), rel.as_posix(),
                           sum(1 for r in rows if not r[4] and r[3] == "critical"), suite_pages[suite],
                           sum(int(r[5] or 0) for r in rows if not r[4])))
    (out / "index.html").write_text(_index(index_rows), encoding="utf-8")
    return out / "index.html"


def _index(rows: list[tuple]) -> str:
    m = _manifest()
    css = m["https://maxcdn.bootstrapcdn.com/bootstrap/4.3.1/css/bootstrap.min.css"]
    body = "\n".join(
        f"<tr class=\"{'table-danger' if crit else ('table-warning' if ok < n else '')}\"><td>{html.escape(p)}</td>"
        f"<td><a href=\"{href}\">{html.escape(s)}</a></td><td>{ok}/{n}</td><td>{crit}</td><td>{bad}</td>"
        f"<td><a href=\"{spage}\">期望定义</a></td></tr>"
        for p, s, ok, n, href, crit, spage, bad in sorted(rows, key=lambda r: (r[0], r[1])))
    suites = "\n".join(f"<li><a href=\"{spage}\">{html.escape(s)}</a></li>"
                       for s, spage in sorted({(r[1], r[6]) for r in rows}))
    return with_csp(f"""<!DOCTYPE html>
<html lang="zh-CN"><head><meta charset="UTF-8"><title>shequ 数据质量文档 / Data Docs</title>
<link rel="stylesheet" href="static/vendor/{css}">
<link rel="shortcut icon" href="static/images/favicon.ico" type="image/x-icon"/></head>
<body class="container my-4"><h1>数据质量校验结果</h1>
<p>生成于 {dt.datetime.now():%Y-%m-%d %H:%M}；每行是一个季度的一套期望（expectations/*.json）或校验规则
（models/quality/validation_rules.csv），由 DuckDB 执行、Great Expectations 渲染。点击套件名查看该季度每个期望的结果
和异常值样例（最多 20 个值或行）；“期望定义”是套件本身。红色：有 critical 未通过；黄色：有警告。</p>
<table class="table table-sm table-bordered"><thead><tr><th>季度</th><th>套件（校验结果）</th><th>通过/期望</th>
<th>critical 未通过</th><th>未通过期望的异常数</th><th>套件</th></tr></thead><tbody>
{body}
</tbody></table>
<h2>期望套件 Expectation suites</h2><ul>
{suites}
</ul></body></html>
""")


def _import_gx_quickly() -> None:
    """Import GX in this process (python -m shequ.datadocs only). jsonschema, which GX imports through altair,
    builds the RFC 3987 grammar of the optional package rfc3987_syntax when it is installed (jupyter brings it):
    about 4 s of CPU here for the "iri" format checks, which neither GX's renderers nor these pages use. Marking
    the package absent in this process makes jsonschema skip those two format checks; the pages are the same."""
    sys.modules.setdefault("rfc3987_syntax", None)  # a None entry makes `import rfc3987_syntax` raise ImportError
    import great_expectations  # noqa: F401


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m shequ.datadocs")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--warehouse")
    src.add_argument("--rows-on-stdin", action="store_true",
                     help="read the pickled check_result rows (results()) from stdin, sent by the refresh process")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    a = p.parse_args(argv)
    _import_gx_quickly()
    if a.rows_on_stdin:
        # the pickle comes from the refresh process that started this one (pipelines/publish.py), never from a file
        try:
            groups = pickle.load(sys.stdin.buffer)
        except EOFError:  # the refresh ended before its data_docs step (failed or skipped): nothing to render
            return 0
        print(render(groups, Path(a.out)))
        return 0
    print(build(Path(a.warehouse), Path(a.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
