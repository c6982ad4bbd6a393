"""The manual cannot go stale: every figure the code can produce is marked in README.md and docs/*.md as
<!--fig:NAME-->VALUE<!--/fig--> and recomputed here; the mkdocs site builds with warnings as errors; every
relative link of the README points at a file that exists; the README stays a front page (<= 300 lines)."""
import csv
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIG = re.compile(r"<!--fig:([a-z0-9_]+)-->(.*?)<!--/fig-->", re.S)


def _pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def _marked() -> list[tuple[Path, str, str]]:
    return [(p, m.group(1), m.group(2).strip()) for p in _pages() for m in FIG.finditer(p.read_text("utf-8"))]


def _fmt(n: int) -> str:
    return f"{n:,}"


def _static_figures() -> dict[str, str]:
    with open(ROOT / "models/catalogue/indicators.csv", encoding="utf-8") as f:
        indicators = sum(1 for _ in csv.DictReader(f))
    inbox = ROOT / "data" / "inbox"
    files = [p for p in inbox.rglob("*") if p.is_file()]
    quarters = {p.relative_to(inbox).parts[0] for p in files}
    figs = {"indicators": _fmt(indicators), "sample_files": _fmt(len(files)), "sample_quarters": _fmt(len(quarters))}
    codes = ROOT / "models/catalogue/reason_codes.csv"
    if codes.exists():
        with open(codes, encoding="utf-8") as f:
            figs["reason_codes"] = _fmt(sum(1 for _ in csv.DictReader(f)))
    return figs


def test_marked_static_figures_are_true():
    figs = _static_figures()
    marked = [(p, n, v) for p, n, v in _marked() if not n.startswith("sdmx_")]
    assert marked, "README 与手册中没有标记的数字"
    for page, name, value in marked:
        assert name in figs, f"{page.name}: 未知的数字标记 {name}（在本测试中为它写出计算方法）"
        assert value == figs[name], f"{page.name}: {name} 写的是 {value}，实际为 {figs[name]}"


def test_marked_sdmx_row_counts_are_true(full_sample_warehouse):
    from shequ.exports import sdmx_rows
    from shequ.snapshot import snapshot_path
    from shequ.warehouse import connect

    marked = [(p, n, v) for p, n, v in _marked() if n.startswith("sdmx_rows_")]
    assert marked
    with connect(snapshot_path(full_sample_warehouse), read_only=True) as con:
        for page, name, value in marked:
            which = name.removeprefix("sdmx_rows_")
            rows = sdmx_rows(con, None if which == "all" else [which])
            assert value == _fmt(len(rows)), f"{page.name}: {name} 写的是 {value}，实际为 {_fmt(len(rows))}"


def test_readme_is_a_front_page_with_live_links():
    text = (ROOT / "README.md").read_text("utf-8")
    assert len(text.splitlines()) <= 300
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" in target:
            continue
        assert (ROOT / target).exists(), f"README 链接指向不存在的文件：{target}"


def test_manual_builds_strict(tmp_path):
    mkdocs = Path(sys.executable).with_name("mkdocs")
    if not mkdocs.exists():
        pytest.fail("未安装 mkdocs（uv sync 的 dev 依赖 mkdocs-material）")
    r = subprocess.run([str(mkdocs), "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                       capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": "/usr/bin:/bin"},
                       timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    index = (tmp_path / "site" / "index.html").read_text("utf-8")
    assert "shequ 使用手册" in index
    # every page of docs/ is in the navigation (nothing orphaned)
    built = {p.relative_to(tmp_path / "site").as_posix() for p in (tmp_path / "site").rglob("index.html")}
    for md in (ROOT / "docs").glob("*.md"):
        page = "index.html" if md.stem == "index" else f"{md.stem}/index.html"
        assert page in built, f"手册页面 {md.name} 未生成"
