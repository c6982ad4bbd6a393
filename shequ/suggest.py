"""Candidate suggestions for names a person typed or a file carried that the registry or catalogue does not hold:
未知社区「新材社区」，是否为：新村社区（南湖街道）？

difflib (standard library) ranks by characters in common; a name that sounds the same (pypinyin without tones:
星隆/兴隆) ranks first. Suggestions are for a person to confirm, never applied automatically.
"""

import difflib

import duckdb

from .registry import _pinyin


def _core(name: str) -> str:
    import polars as pl

    from .registry import name_core
    from .text import clean_text

    return pl.select(name_core(pl.lit(clean_text(name or "")))).item() or (name or "")


def registry_cores(con: duckdb.DuckDBPyConnection, as_of=None):
    """Registry names valid on ``as_of`` (default: latest versions) with their name cores, computed once."""
    import polars as pl

    from .registry import name_core

    return con.sql("""
        SELECT community_code, name, street, district FROM dim_community
        WHERE ($d::DATE IS NULL OR (valid_from <= $d AND (valid_to IS NULL OR valid_to > $d)))
        QUALIFY row_number() OVER (PARTITION BY community_code ORDER BY valid_from DESC) = 1""",
                   params={"d": as_of}).pl().with_columns(name_core(pl.col("name")).alias("core"))


def community_candidates(con: duckdb.DuckDBPyConnection, text: str, street: str | None = None, limit: int = 3,
                         as_of=None, cores=None) -> list[dict]:
    """Registry communities close to ``text`` (same street first when ``street`` is given): dicts with code,
    name, street, district. ``as_of`` (a date) keeps versions valid then; default: the latest version.

    Name cores are computed column-wise and the pool is cut to names sharing a character and of about the same
    length before difflib and pinyin run per name, so a national registry (600,000 names) stays quick."""
    import re

    import polars as pl

    core = _core(text)
    if not core:
        return []
    reg = registry_cores(con, as_of) if cores is None else cores
    reg = reg.filter(
        pl.col("core").str.contains("[" + re.escape(core) + "]")
        & ((pl.col("core").str.len_chars() - len(core)).abs() <= 2))
    if reg.height > 5000:   # very common characters: keep names sharing at least two of them
        reg = reg.filter(sum(pl.col("core").str.contains(re.escape(ch), literal=True).cast(pl.Int32)
                             for ch in dict.fromkeys(core)) >= 2)
    py = _pinyin(core)
    scored = []
    for code, name, st, district, c in reg.iter_rows():
        if c == core:
            score = 1.0
        elif _pinyin(c) == py:
            score = 0.99
        else:
            score = difflib.SequenceMatcher(None, core, c).ratio()
        if street and st and (street in st or st in street):
            score += 0.05
        if score >= 0.5:
            scored.append((score, code, name, st, district))
    scored.sort(key=lambda r: (-r[0], r[1]))
    return [{"code": c, "name": n, "street": s, "district": d} for _, c, n, s, d in scored[:limit]]


def format_community_candidates(cands: list[dict]) -> str:
    return "、".join(f"{c['name']}（{c['street']}）" for c in cands)


def unknown_community_message(text: str, cands: list[dict]) -> str:
    if cands:
        return f"未知社区「{text}」，是否为：{format_community_candidates(cands)}？"
    return f"未知社区「{text}」：登记表中没有相近的社区"


def indicator_candidates(con: duckdb.DuckDBPyConnection, text: str, limit: int = 3) -> list[tuple[str, str]]:
    """(code, name_zh) of catalogue indicators close to ``text`` by Chinese name or code."""
    rows = con.execute("SELECT indicator_code, name_zh FROM dim_indicator").fetchall()
    scored = []
    for code, name in rows:
        s = max(difflib.SequenceMatcher(None, text, name).ratio(), difflib.SequenceMatcher(None, text.lower(), code).ratio())
        if text in name or name in text:
            s = max(s, 0.8)
        if s >= 0.4:
            scored.append((s, code, name))
    scored.sort(key=lambda r: (-r[0], r[1]))
    return [(c, n) for _, c, n in scored[:limit]]


def header_candidates(header: str, limit: int = 3) -> list[str]:
    """Catalogue names and declared aliases close to a file's unknown column header."""
    from .catalogue import HeaderMatcher

    return list(HeaderMatcher().match(header).candidates)[:limit]


def unknown_header_message(header: str, cands: list[str]) -> str:
    if cands:
        return f"未知表头「{header}」，是否为：{'、'.join(cands)}？"
    return f"未知表头「{header}」：指标目录中没有相近的指标名称"


def refresh_suggestions(con: duckdb.DuckDBPyConnection, quarters: list[str], limit: int = 20) -> list[str]:
    """One line per distinct unknown community and unknown header quarantined for ``quarters`` (the files of
    those quarters, and rejected files), with candidates: what `shequ refresh` prints under its summary."""
    q = list(quarters)
    where = """(list_has_any(f.period_keys, $qs::VARCHAR[]) OR f.status = 'rejected'
                OR x.period_key IN (SELECT unnest($qs::VARCHAR[])))"""
    comms = con.execute(f"""
        SELECT x.community_raw, any_value(x.period_key), count(*) FROM quarantine x JOIN raw_file f USING (file_id)
        WHERE x.reason_code = 'unknown_community' AND x.community_raw IS NOT NULL AND {where}
        GROUP BY 1 ORDER BY 3 DESC, 1 LIMIT {int(limit)}""", {"qs": q}).fetchall()
    heads = con.execute(f"""
        SELECT x.header_raw, count(*) FROM quarantine x JOIN raw_file f USING (file_id)
        WHERE x.reason_code = 'unknown_header' AND x.header_raw IS NOT NULL AND {where}
        GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT {int(limit)}""", {"qs": q}).fetchall()
    from .periods import period_end

    out, frames = [], {}
    for name, period, _ in comms:
        as_of = None
        try:
            as_of = period_end(period) if period else None
        except Exception:  # an unusual period key: suggest among the latest versions instead
            as_of = None
        if as_of not in frames:      # registry cores once per quarter end, not once per unknown name
            frames[as_of] = registry_cores(con, as_of)
        out.append(unknown_community_message(name, community_candidates(con, name, as_of=as_of,
                                                                         cores=frames[as_of])))
    for h, _ in heads:
        out.append(unknown_header_message(h, header_candidates(h)))
    return out


def print_refresh_hints(console, con: duckdb.DuckDBPyConnection, quarters: list[str]) -> None:
    """Under the refresh summary: manual corrections and bonuses in force (shequ/corrections.py), then unknown
    communities and headers with candidates, for a person to confirm with `shequ alias add`."""
    from rich.markup import escape

    from .corrections import manual_summary

    for line in manual_summary(con, quarters):
        console.print(escape(line))
    lines = refresh_suggestions(con, quarters)
    if lines:
        console.print("需人工确认（确认后用 shequ alias add 登记别名）：")
        for line in lines:
            console.print(f"  [yellow]{escape(line)}[/yellow]")
