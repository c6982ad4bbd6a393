"""The appraisal engine against the warehouse: read one quarter's facts, score every review stage, rank at three
levels, award titles tier by tier, estimate rank intervals, explain, and write fact_score / fact_ranking /
fact_award / fact_explanation for that quarter and scheme in one transaction. Publishing (公示) freezes a
quarter's ranking and titles under a version id (publish()).
"""

import contextlib
import datetime as dt
import hashlib
import math
import re
import time
from concurrent.futures import ThreadPoolExecutor

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa

from ..periods import previous_quarter, split_quarter
from ..warehouse import bind, model_sql, transaction
from .analysis import write_quick
from .engine import (Appraisal, Groups, Units, grade_of, rank_desc, round_scores, run, score_components,
                     veto_hits)
from .mc import AreaSeries, Series, free_heap, run_uncertainty
from .scheme import Scheme, SchemeError

SCOPES = ("street", "district", "city")
FLAG_NAMES = {1: "winsorised_high", -1: "winsorised_low", 2: "log", 3: "boxcox"}
VETO_HIT_SCHEMA = {"entity_code": pl.String, "position": pl.Int32, "veto_name": pl.String,
                   "indicator_code": pl.String, "op": pl.String, "threshold": pl.Float64, "value": pl.Float64,
                   "effect": pl.String, "cap": pl.Float64, "grade_before": pl.String, "grade_after": pl.String}


# ------------------------------------------------------------------------------------------------------
# Reading


def period_units(con: duckdb.DuckDBPyConnection, period_key: str) -> pl.DataFrame:
    """Communities appraised in a quarter: every registry version valid on its last day, plus any version that
    reported for it. Ordered by code, the row order of every matrix."""
    return con.sql("""
        WITH p AS (SELECT end_date FROM dim_period WHERE period_key = $q),
        keys AS (
            SELECT c.community_key FROM dim_community c, p
            WHERE c.valid_from <= p.end_date AND (c.valid_to IS NULL OR c.valid_to > p.end_date)
            UNION SELECT DISTINCT community_key FROM fact_indicator_value WHERE period_key = $q
        )
        SELECT c.community_key, c.community_code, c.name, c.street_code, c.street, c.district_code, c.district,
               c.city_code, c.city, c.province_code, c.province, c.community_type
        FROM dim_community c JOIN keys USING (community_key)
        QUALIFY row_number() OVER (PARTITION BY c.community_code ORDER BY c.valid_from DESC) = 1
        ORDER BY c.community_code""", params={"q": period_key}).pl()


def _has_table(con, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?",
                            [name]).fetchall()[0][0])


def _matrix(con, period_key: str, codes: list[str], by: str = "community_key") -> np.ndarray:
    """Values of the registered _ap_units x _ap_inds for one period, as a dense matrix (NaN = not reported).
    Values held back by a HIGH quality rule (quality_hold, via models/sql/scoring_input.sql) are left out."""
    if by == "community_key":
        join = "JOIN _ap_units u USING (community_key)"
    else:   # previous period: match on the stable community code (registry versions may differ)
        join = "JOIN dim_community d USING (community_key) JOIN _ap_units u ON u.community_code = d.community_code"
    # models/sql/scoring_input.sql: the quarter's facts minus values held back by a HIGH quality rule
    source = f"({model_sql('scoring_input')})" if _has_table(con, "quality_hold") else \
        "(SELECT * FROM fact_indicator_value WHERE period_key = $period_key)"
    df = con.sql(f"""SELECT u.row_idx, i.col_idx, f.value FROM {source} f {join}
                     JOIN _ap_inds i USING (indicator_code)""", params={"period_key": period_key}).pl()
    n = con.execute("SELECT count(*) FROM _ap_units").fetchall()[0][0]
    X = np.full((n, len(codes)), np.nan)
    if df.height:
        X[df["row_idx"].to_numpy(), df["col_idx"].to_numpy()] = df["value"].to_numpy()
    return X


def load_units(con: duckdb.DuckDBPyConnection, period_key: str, scheme: Scheme,
               units_df: pl.DataFrame | None = None) -> tuple[Units, pl.DataFrame]:
    units_df = period_units(con, period_key) if units_df is None else units_df
    adjust = scheme.section("adjust") or {}
    refs = [r["indicator"] for r in (adjust.get("bonus") or {}).get("items", []) + (adjust.get("vetoes") or [])]
    codes = scheme.indicators + [r for r in dict.fromkeys(refs) if r not in scheme.indicators]
    con.register("_ap_u", units_df.select("community_key", "community_code").with_row_index("row_idx"))
    con.execute("CREATE OR REPLACE TEMP TABLE _ap_units AS SELECT * FROM _ap_u")
    con.unregister("_ap_u")
    con.register("_ap_i", pl.DataFrame({"indicator_code": codes, "col_idx": list(range(len(codes)))}))
    con.execute("CREATE OR REPLACE TEMP TABLE _ap_inds AS SELECT * FROM _ap_i")
    con.unregister("_ap_i")
    M = _matrix(con, period_key, codes)
    prev = None
    if any(s.get("method") == "last_value" for s in scheme.section("impute") or []):
        prev = _matrix(con, previous_quarter(period_key), codes, by="community_code")[:, :len(scheme.indicators)]
    m = len(scheme.indicators)
    history = history_t = t_now = None
    panel = [s for s in scheme.section("impute") or [] if s.get("method") == "panel"]
    if panel:   # only when the scheme asks for it: the default scheme reads one quarter (and the previous one)
        history, history_t, t_now = _panel_history(con, period_key, codes, m, panel)
    na = dict(con.execute("SELECT indicator_code, not_applicable_to FROM dim_indicator "
                          "WHERE not_applicable_to IS NOT NULL").fetchall())
    ctype = units_df["community_type"].to_numpy()
    applicable = np.ones((units_df.height, m), bool)
    for j, c in enumerate(scheme.indicators):
        if na.get(c):
            applicable[:, j] = ~np.isin(ctype, [t.strip() for t in re.split(r"[|,，]", na[c]) if t.strip()])
    groups = {g: units_df[g].to_numpy() for g in ("street_code", "district_code", "city_code", "province_code")}
    u = Units(codes=units_df["community_code"].to_numpy(), names=units_df["name"].to_numpy(), X=M[:, :m],
              indicators=list(scheme.indicators), groups=groups, previous=prev, applicable=applicable,
              extra={c: M[:, m + k] for k, c in enumerate(codes[m:])}, history=history, history_t=history_t,
              t_now=t_now, manual_bonus=_manual_bonus(con, period_key, units_df))
    return u, units_df


def _manual_bonus(con, period_key: str, units_df: pl.DataFrame) -> np.ndarray | None:
    """Points of the quarter's active manual bonus events (shequ bonus add) per unit; None when there are none."""
    if not _has_table(con, "manual_bonus"):
        return None
    rows = con.execute("SELECT community_code, sum(points) FROM manual_bonus WHERE period_key = ? AND active "
                       "GROUP BY 1", [period_key]).fetchall()
    if not rows:
        return None
    pos = {c: i for i, c in enumerate(units_df["community_code"].to_list())}
    out = np.zeros(units_df.height)
    for code, pts in rows:
        if code in pos:
            out[pos[code]] = pts
    return out


def _quarter_index(key: str) -> int:
    y, q = split_quarter(key)
    return y * 4 + q - 1


def _panel_history(con, period_key: str, codes: list[str], m: int, steps: list[dict]):
    """The same communities' values in the quarters around ``period_key`` for panel imputation: up to
    ``window`` quarters before (default 4) and, unless ``later: false``, up to ``window`` after that the
    warehouse holds. Returns (T x n x m stack, quarter indices, this quarter's index)."""
    window = max(int(s.get("window", 4)) for s in steps)
    later = any(s.get("later", True) for s in steps)
    now = _quarter_index(period_key)
    held = [r[0] for r in con.execute("SELECT DISTINCT period_key FROM fact_indicator_value").fetchall()]
    keys = sorted(k for k in held if k != period_key and 0 < abs(_quarter_index(k) - now) <= window
                  and (later or _quarter_index(k) < now))
    if not keys:
        return np.zeros((0, con.execute("SELECT count(*) FROM _ap_units").fetchall()[0][0], m)), np.zeros(0), now
    H = np.stack([_matrix(con, k, codes, by="community_code")[:, :m] for k in keys])
    return H, np.array([_quarter_index(k) for k in keys], float), float(now)


def _reviews(con, period_key: str) -> pl.DataFrame:
    return con.sql("SELECT community_code, stage, indicator_code, value FROM review_adjustment "
                   "WHERE period_key = $q", params={"q": period_key}).pl()


def _with_overrides(u: Units, rows: pl.DataFrame) -> Units:
    X = u.X.copy()
    extra = {k: v.copy() for k, v in u.extra.items()}
    pos = {c: i for i, c in enumerate(u.codes)}
    for r in rows.iter_rows(named=True):   # review rows are few (a reviewer's corrections), not a hot path
        i = pos.get(r["community_code"])
        if i is None:
            continue
        if r["indicator_code"] in u.indicators:
            X[i, u.indicators.index(r["indicator_code"])] = r["value"]
        elif r["indicator_code"] in extra:
            extra[r["indicator_code"]][i] = r["value"]
    return Units(codes=u.codes, names=u.names, X=X, indicators=u.indicators, groups=u.groups,
                 denominators=u.denominators, extra=extra, previous=u.previous, applicable=u.applicable,
                 manual_bonus=u.manual_bonus, history=u.history, history_t=u.history_t, t_now=u.t_now)


# ------------------------------------------------------------------------------------------------------
# Awards


def award_titles(app: Appraisal, units_df: pl.DataFrame, candidates: dict | None = None) -> pl.DataFrame:
    """Titles tier by tier for every campaign of the scheme. A candidate must be eligible (ranked), hold the
    lower tier's title when the tier requires it, reach the tier's minimum grade, and have no veto that
    excludes it from titles. Within each scope the best `quota` candidates by the campaign's score (on the
    ranking's rounding) get the title; `tie_at_quota: include` also admits those tied with the last place.

    ``candidates`` (a dict) receives, per (campaign, tier), the candidate mask, the score node and the scope's
    group column, for the Monte Carlo (see ``with_intervals``)."""
    scheme = app.scheme
    spec = scheme.section("awards") or {}
    if not spec:
        return pl.DataFrame()
    ranking = scheme.section("ranking") or {}
    digits, mode = int(ranking.get("round", 2)), ranking.get("round_mode", "half_even")
    bands = [b["grade"] for b in (scheme.section("grades") or {}).get("bands") or []]
    grade_pos = np.array([bands.index(g) if g in bands else len(bands) for g in app.grade])
    excluded = np.array(["exclude_titles" in e for e in app.veto_effects])
    scope_col = {"street": "street_code", "district": "district_code", "city": "city_code",
                 "province": "province_code"}
    name_col = {"street": "street", "district": "district", "city": "city", "province": "province"}
    rows = []
    for camp in spec.get("campaigns") or []:
        node = camp["node"]
        base = app.score if node == scheme.root else app.node(node)
        s = round_scores(base, digits, mode)
        held_prev: dict[str, np.ndarray] = {}
        for tier in spec.get("tiers") or []:
            if camp.get("tiers") and tier["tier"] not in camp["tiers"]:
                continue
            ok = app.eligible & np.isfinite(s) & ~excluded
            if tier.get("min_grade"):
                ok &= grade_pos <= bands.index(tier["min_grade"])
            if tier.get("requires"):
                ok &= held_prev.get(tier["requires"], np.zeros(app.units.n, bool))
            scope = tier["scope"]
            if candidates is not None:
                candidates[(camp["campaign"], tier["tier"])] = (ok.copy(), node, scope_col[scope])
            labels = units_df[scope_col[scope]].to_numpy()
            names = units_df[name_col[scope]].to_numpy()
            held = np.zeros(app.units.n, bool)
            q = tier["quota"]
            g = app.units.grouping(scope_col[scope])   # cached per grouping, not rebuilt per tier
            for gi in range(g.n):
                members = g.perm[g.starts[gi]:g.starts[gi] + g.counts[gi]]
                cand = members[ok[members]]
                n_units = int((app.eligible[members]).sum())
                if "count" in q:
                    quota = int(q["count"])
                else:
                    # rounded to 9 dp first: 0.07 x 100 is 7.000000000000001 in binary, and must give 7 titles
                    raw = round(float(q["share"]) * (n_units if q.get("of", "ranked") == "ranked" else len(cand)), 9)
                    quota = {"floor": math.floor, "round": round, "ceil": math.ceil}[
                        spec.get("quota_rounding", "floor")](raw)
                if quota <= 0 or not len(cand):
                    continue
                order = cand[np.lexsort((app.units.codes[cand], -s[cand]))]
                cut = s[order[min(quota, len(order)) - 1]]
                for pos, i in enumerate(order, start=1):
                    inside = pos <= quota
                    tied = not inside and spec.get("tie_at_quota", "include") == "include" and s[i] == cut
                    if not (inside or tied):
                        break
                    held[i] = True
                    rows.append({"campaign": camp["campaign"], "tier": tier["tier"],
                                 "title": f"{tier['tier']}{camp['campaign']}", "entity_code": app.units.codes[i],
                                 "entity_name": app.units.names[i], "scope_level": scope, "scope_code": labels[i],
                                 "scope_name": names[i], "node_code": node, "score": float(s[i]),
                                 "grade": app.grade[i], "quota": quota, "quota_position": pos,
                                 "n_candidates": len(cand), "tied_at_quota": bool(tied), "rank_low": None,
                                 "rank_high": None, "tie_flag": None, "_row": int(i)})
            held_prev[tier["tier"]] = held
    schema = {"campaign": pl.String, "tier": pl.String, "title": pl.String, "entity_code": pl.String,
              "entity_name": pl.String, "scope_level": pl.String, "scope_code": pl.String, "scope_name": pl.String,
              "node_code": pl.String, "score": pl.Float64, "grade": pl.String, "quota": pl.Int32,
              "quota_position": pl.Int32, "n_candidates": pl.Int32, "tied_at_quota": pl.Boolean,
              "rank_low": pl.Float64, "rank_high": pl.Float64, "tie_flag": pl.Boolean, "_row": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def with_intervals(awards: pl.DataFrame, mc_tiers: dict) -> pl.DataFrame:
    """Fill each title's Monte Carlo rank interval among its tier's candidates. A holder is statistically tied
    (tie_flag, 统计上并列) when the quota binds (more candidates than titles) and its 95th-percentile rank
    falls outside the quota."""
    if not mc_tiers or not awards.height:
        return awards
    lo = np.full(awards.height, np.nan)
    hi = np.full(awards.height, np.nan)
    rows = awards["_row"].to_numpy()
    for (camp, tier), st in mc_tiers.items():
        sel = ((awards["campaign"] == camp) & (awards["tier"] == tier)).to_numpy()
        lo[sel], hi[sel] = st["q_low"][rows[sel]], st["q_high"][rows[sel]]
    # the interval always holds the title's own position among the candidates (the draws' 5th-95th percentile,
    # widened to the nominal position where the nominal configuration is rarer than 1 draw in 20)
    pos = awards["quota_position"].to_numpy().astype(float)
    has = np.isfinite(hi)
    lo, hi = np.where(has, np.fmin(lo, pos), np.nan), np.where(has, np.fmax(hi, pos), np.nan)
    tie = (awards["n_candidates"].to_numpy() > awards["quota"].to_numpy()) & (hi > awards["quota"].to_numpy())
    return awards.with_columns(pl.Series("rank_low", lo).fill_nan(None), pl.Series("rank_high", hi).fill_nan(None),
                               pl.Series("tie_flag", [bool(t) if h else None for t, h in zip(tie, has)],
                                         dtype=pl.Boolean))


def _mc_for_awards(app: Appraisal, units_df: pl.DataFrame, draws: int | None, candidates: dict | None = None
                   ) -> tuple[dict, dict, object]:
    """Monte Carlo rank statistics: the index within each ranking scope (for fact_ranking), and each
    (campaign, tier) score ranked among that tier's candidates within its scope (for fact_award tie flags).
    Returns (by ranking scope, by (campaign, tier), the Uncertainty)."""
    scheme = app.scheme
    if not scheme.section("uncertainty") or draws == 0:
        return {}, {}, None
    scope_col = {"street": "street_code", "district": "district_code", "city": "city_code"}
    series = [Series(f"{scheme.root}@{s}", scheme.root, scope_col[s]) for s in SCOPES]
    for (camp, tier), (mask, node, col) in (candidates or {}).items():
        if mask.any():
            series.append(Series(f"{camp}/{tier}", node, col, mask=mask))
    areas = _area_series(app, units_df)
    ua = run_uncertainty(app, series, draws=draws, areas=areas)
    by_scope = {s: ua.stats[f"{scheme.root}@{s}"] for s in SCOPES}
    by_tier = {k: ua.stats[f"{k[0]}/{k[1]}"] for k, (mask, _, _) in (candidates or {}).items() if mask.any()}
    # streets and districts: rank statistics keyed by area code, for _area_rows
    for a in areas:
        by_scope[a.name] = {"codes": a.members.labels, **ua.stats[a.name]}
    return by_scope, by_tier, ua


AREA_LEVELS = (("street", "street_code", "district_code"), ("district", "district_code", "city_code"))


def _area_series(app: Appraisal, units_df: pl.DataFrame) -> list[AreaSeries]:
    """Streets within districts and districts within cities for the Monte Carlo, scored as _area_rows scores
    them (areas: member_mean; an area is ranked when at least min_coverage of its communities are ranked).
    An area scored from its aggregated components (aggregate_components) gets no interval."""
    spec = app.scheme.section("areas") or {"method": "member_mean", "min_coverage": 0.6}
    if spec.get("method", "member_mean") != "member_mean":
        return []
    min_cov = float(spec.get("min_coverage", 0.0))
    out = []
    order = np.argsort(units_df["community_code"].to_numpy(), kind="stable")
    pos = np.empty(len(order), np.int64)
    pos[order] = np.arange(len(order))
    for level, code, pcode in AREA_LEVELS:
        g = Groups(units_df[code].to_numpy())
        # the parent of an area: its first member by community code, as _area_rows takes it
        first_pos = np.full(g.n, len(order), np.int64)
        np.minimum.at(first_pos, g.inv, pos)
        first = order[first_pos]
        parent = units_df[pcode].to_numpy()[first]
        n_ok = np.bincount(g.inv, weights=app.eligible.astype(float), minlength=g.n)
        with np.errstate(invalid="ignore"):
            score = g.nanmean(np.where(app.eligible, app.score, np.nan))
        eligible = (n_ok / g.counts >= min_cov - 1e-12) & np.isfinite(score)
        out.append(AreaSeries(f"@{level}", g, parent.astype(str), eligible))
    return out


# ------------------------------------------------------------------------------------------------------
# Writing


def _effective_weights(app: Appraisal) -> dict[str, np.ndarray]:
    """Each node's share of the root per unit, with weights re-normalised over children that have a score."""
    scheme = app.scheme
    share = {scheme.root: np.ones(app.units.n)}
    for node in reversed(scheme.aggregates):
        kids = scheme.children(node)
        if scheme.nodes[node].derive:
            # a ratio / product / difference has no weighted shares: its operands' weight is NULL
            for k in kids:
                share[k] = np.full(app.units.n, np.nan)
            continue
        C = np.column_stack([app.node(k) for k in kids])
        w = np.array([scheme.nodes[k].weight for k in kids])
        W = np.where(np.isfinite(C), w, 0.0)
        tot = W.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            for j, k in enumerate(kids):
                share[k] = np.where(tot > 0, share[node] * W[:, j] / tot, np.nan)
    return share


SCORE_BLOCK = 65_536     # units per fact_score block: about 5M rows and 0.3 GB of temporaries at 80 nodes


def _score_tables(app: Appraisal, full: bool, reported: np.ndarray | None = None, block: int = SCORE_BLOCK):
    """_score_table over consecutive blocks of units, in order: the same rows in the same order as one table of
    every unit, in memory bounded by the block (issue 11: at 600,000 communities the whole table's matrices
    and Arrow columns, about 45M rows, took several GB beside the Monte Carlo)."""
    share = _effective_weights(app) if full else None
    starts = range(0, app.units.n, block)
    # the next block is built in a thread while the caller writes this one (numpy and DuckDB release the GIL):
    # at most two blocks are held at once
    with ThreadPoolExecutor(1) as pool:
        nxt = pool.submit(_score_table, app, full, reported, slice(0, block), share) if len(starts) else None
        for start in starts:
            tab = nxt.result()
            nxt = pool.submit(_score_table, app, full, reported, slice(start + block, start + 2 * block), share) \
                if start + block < app.units.n else None
            yield tab


def _score_table(app: Appraisal, full: bool, reported: np.ndarray | None = None, rows: slice = slice(None),
                 share: dict[str, np.ndarray] | None = None) -> pa.Table:
    """fact_score rows (long) of the units in ``rows``: full = every node, else the aggregates only. ``share``:
    _effective_weights(app), when the caller already has it.

    Rows come out entity by entity (row-major flattening of units x nodes), so entity_code arrives in runs that
    DuckDB stores compactly; at 600,000 communities this is 45M rows, the largest write of the appraisal."""
    scheme, u = app.scheme, app.units
    aggs = scheme.aggregates
    nodes = (u.indicators if full else []) + aggs
    codes = u.codes[rows]
    m = len(codes)
    A = np.column_stack([app.nodes[c][rows] for c in aggs]) if aggs else np.zeros((m, 0))
    S = np.concatenate([app.normalised[rows], A], axis=1) if full else A
    if full:
        share = share if share is not None else _effective_weights(app)
        W = np.column_stack([share[c][rows] for c in nodes])
        # value: only where the scored value differs from the reported fact (imputed, winsorised, log);
        # NULL = the fact as reported (fact_indicator_value), which keeps 45M rows cheap to write
        imputed_mask, tf = app.imputed_mask[rows], app.treat_flags[rows]
        changed = imputed_mask | (tf != 0)
        if reported is not None:
            # a review stage's value (街道初评 / 区复评) replaced what the community reported: not "as reported"
            X, R = app.units.X[rows], reported[rows]
            changed = changed | ((X != R) & ~(np.isnan(X) & np.isnan(R)))
        V = np.concatenate([np.where(changed, app.treated[rows], np.nan), np.full(A.shape, np.nan)], axis=1)
        F = np.zeros(S.shape, np.int8)
        F[:, :len(u.indicators)] = np.where(imputed_mask, 1, 0)
        F[:, :len(u.indicators)] = np.where(tf == 1, 2, np.where(tf == -1, 3, np.where(tf == 2, 4, np.where(
            tf == 3, 5, F[:, :len(u.indicators)]))))
    mask = np.isfinite(S)
    ent, col = np.nonzero(mask)
    level_of = [scheme.level_name(scheme.nodes[c].level) for c in nodes]
    flag_codes = [None, "imputed", *FLAG_NAMES.values()]
    col32 = col.astype(np.int32)
    out = {
        "entity_code": pa.DictionaryArray.from_arrays(pa.array(ent.astype(np.int32)),
                                                      pa.array(codes.tolist(), pa.string())),
        "node_level": pa.DictionaryArray.from_arrays(pa.array(col32), pa.array(level_of)),
        "node_code": pa.DictionaryArray.from_arrays(pa.array(col32), pa.array(nodes)),
        "score": pa.array(S[mask], pa.float64()),
    }
    if full:
        out["value"] = pa.array(V[mask], pa.float64(), from_pandas=True)
        out["weight"] = pa.array(W[mask], pa.float64(), from_pandas=True)
        out["flag"] = pa.DictionaryArray.from_arrays(pa.array(F[mask].astype(np.int32)), pa.array(flag_codes))
    else:
        n = int(mask.sum())
        out["value"] = pa.nulls(n, pa.float64())
        out["weight"] = pa.nulls(n, pa.float64())
        out["flag"] = pa.nulls(n, pa.string())
    return pa.table(out)


def _area_rows(app: Appraisal, units_df: pl.DataFrame, period_key: str, con, mc: dict | None = None
               ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Street scores ranked within their district, district scores within their city (scheme: areas). ``mc``
    (from _mc_for_awards) holds each area's Monte Carlo rank statistics under "@street" / "@district"."""
    scheme = app.scheme
    spec = scheme.section("areas") or {"method": "member_mean", "min_coverage": 0.6}
    method = spec.get("method", "member_mean")
    min_cov = float(spec.get("min_coverage", 0.0))
    ranking = scheme.section("ranking") or {}
    digits, mode = int(ranking.get("round", 2)), ranking.get("round_mode", "half_even")
    cats = scheme.children(scheme.root)
    base = units_df.select("community_code", "street_code", "street", "district_code", "district", "city_code",
                           "city").with_columns(
        pl.Series("score", np.where(app.eligible, app.score, np.nan)).fill_nan(None),
        pl.Series("ok", app.eligible),
        *[pl.Series(f"c_{c}", np.where(app.eligible, app.node(c), np.nan)).fill_nan(None) for c in cats])
    out, scores = [], []
    for level, code, name, pcode, pname, plevel in (("street", "street_code", "street", "district_code", "district",
                                                     "district"),
                                                    ("district", "district_code", "district", "city_code", "city",
                                                     "city")):
        agg = base.sort("community_code").group_by(code, maintain_order=True).agg(
            pl.col(name).first().alias("entity_name"), pl.col(pcode).first().alias("scope_code"),
            pl.col(pname).first().alias("scope_name"), pl.col("city_code").first().alias("_city_code"),
            pl.col("score").mean().alias("score"),
            (pl.col("ok").sum() / pl.len()).alias("coverage"),
            *[pl.col(f"c_{c}").mean().alias(c) for c in cats]).rename({code: "entity_code"}).sort("entity_code")
        if method == "aggregate_components":
            agg = _components_scores(app, con, period_key, level, agg)
        sc = agg["score"].to_numpy().astype(float)
        eligible = (agg["coverage"].to_numpy() >= min_cov - 1e-12) & np.isfinite(sc)
        sr = round_scores(sc, digits, mode)
        g = Groups(agg["scope_code"].to_numpy())
        rk = rank_desc(np.where(eligible, sr if ranking.get("basis", "rounded") == "rounded" else sc, np.nan), g,
                       ranking.get("ties", "min"))
        gspec = scheme.section("grades") or {}
        grade = grade_of(round_scores(sc, int(gspec.get("round", digits)), gspec.get("round_mode", mode)),
                         gspec.get("bands") or [])
        grade[~eligible] = None
        n_ranked = np.bincount(g.inv, weights=eligible.astype(float), minlength=g.n)[g.inv].astype(int)
        med = lo = hi = np.full(agg.height, np.nan)
        st = (mc or {}).get(f"@{level}")
        if st:
            # the draws' median and 5th-95th percentile rank within the parent, widened to hold the nominal rank
            # as the community rows are (the nominal configuration can be rarer than 1 draw in 20)
            pos = {c: k for k, c in enumerate(st["codes"])}
            at = np.array([pos[c] for c in agg["entity_code"].to_list()], dtype=np.int64)
            med, lo, hi = st["median"][at], st["q_low"][at], st["q_high"][at]
            has = np.isfinite(lo) & np.isfinite(rk)
            lo, hi = np.where(has, np.fmin(lo, rk), np.nan), np.where(has, np.fmax(hi, rk), np.nan)
            med = np.where(has, med, np.nan)
        out.append(pl.DataFrame({
            "entity_level": level, "entity_code": agg["entity_code"], "entity_name": agg["entity_name"],
            "community_key": pl.Series([None] * agg.height, dtype=pl.Int32), "scope_level": plevel,
            "scope_code": agg["scope_code"], "scope_name": agg["scope_name"],
            "score": pl.Series(sc).fill_nan(None), "score_rounded": pl.Series(sr).fill_nan(None),
            "rank": pl.Series(rk).fill_nan(None).cast(pl.Int32), "n_ranked": n_ranked,
            "rank_median": pl.Series(med, dtype=pl.Float64).fill_nan(None),
            "rank_low": pl.Series(lo, dtype=pl.Float64).fill_nan(None),
            "rank_high": pl.Series(hi, dtype=pl.Float64).fill_nan(None),
            "grade": pl.Series(list(grade), dtype=pl.String), "coverage": agg["coverage"],
            "eligibility_reason": pl.Series([None if e else "coverage_below_min" for e in eligible],
                                            dtype=pl.String)}))
        long = agg.select("entity_code", *cats).unpivot(
            index="entity_code", variable_name="node_code", value_name="node_score")
        scores.append(pl.concat([
            agg.select("entity_code", pl.lit(scheme.root).alias("node_code"), pl.col("score").alias("node_score")),
            long]).with_columns(pl.lit(level).alias("entity_level")).drop_nulls("node_score"))
    return pl.concat(out), pl.concat(scores)


def _components_scores(app: Appraisal, con, period_key: str, level: str, agg: pl.DataFrame) -> pl.DataFrame:
    """HDI-style area score: the scheme applied to the area's aggregated indicators (agg_indicator_value; sums
    divided by the number of communities so they compare with a community's value)."""
    comp = con.sql("""SELECT entity_code, indicator_code,
                             CASE WHEN method LIKE 'sum%' THEN value / nullif(n_expected, 0) ELSE value END AS v
                      FROM agg_indicator_value WHERE period_key = $q AND entity_level = $l""",
                   params={"q": period_key, "l": level}).pl()
    wide = comp.pivot(on="indicator_code", index="entity_code", values="v")
    for c in app.units.indicators:
        if c not in wide.columns:
            wide = wide.with_columns(pl.lit(None, dtype=pl.Float64).alias(c))
    parents = agg.select("entity_code", pl.col("_city_code").alias("city_code"))   # the area's own city
    wide = parents.join(wide, on="entity_code", how="left")
    scored = score_components(app, wide, "entity_code", groups={"city_code": "city_code"})
    return agg.drop("score").join(scored.select("entity_code", "score"), on="entity_code", how="left")


LAST_TIMINGS: dict[str, float] = {}   # seconds per step of the last appraise_period call (shequ bench reads it)


class _Clock:
    def __init__(self):
        LAST_TIMINGS.clear()
        self.t = time.perf_counter()

    def __call__(self, label: str) -> None:
        now = time.perf_counter()
        LAST_TIMINGS[label] = LAST_TIMINGS.get(label, 0.0) + now - self.t
        self.t = now


def appraise_period(con: duckdb.DuckDBPyConnection, period_key: str, scheme: Scheme, draws: int | None = None
                    ) -> dict[str, int]:
    """Score, rank, award and explain one quarter under ``scheme``; replace its rows in one transaction."""
    clock = _Clock()
    units_df_all = period_units(con, period_key)
    u_self, units_df = load_units(con, period_key, scheme, units_df_all)
    review = scheme.section("review") or {}
    stages = list(review.get("stages") or ["自评"])
    rv = _reviews(con, period_key)
    unknown = set(rv["stage"].unique().to_list()) - set(stages)
    if unknown:
        raise SchemeError(f"复核数据中的评审阶段 {sorted(unknown)} 不在方案 review.stages {stages} 中")
    runs: list[tuple[str, Appraisal]] = [(stages[0], run(u_self, scheme))]
    for k, st in enumerate(stages[1:], start=1):
        if rv.filter(pl.col("stage") == st).height:
            rows = rv.filter(pl.col("stage").is_in(stages[1:k + 1]))
            # apply in stage order so a later stage's value wins
            rows = rows.with_columns(pl.col("stage").replace_strict({s: i for i, s in enumerate(stages)},
                                                                     return_dtype=pl.Int32).alias("_o")).sort("_o")
            runs.append((st, run(_with_overrides(u_self, rows), scheme)))
    clock("load + score")
    # what only the scoring read is let go before the Monte Carlo and the writes (issue 11: 0.6 GB of the
    # ranking stage's peak at 600,000 units): the previous quarter's values (last_value imputation) and each
    # run's denominated matrix. Nothing after this point reads them; the runs do not leave this function.
    for _, a in runs:
        a.units.previous = None
        a.denominated = None
    final_stage, app = runs[-1]
    self_app = runs[0][1]
    # every community is ranked from the final run: a reviewer's correction of one community moves the pool
    # (min-max bounds, group means) and so everyone's score, so every row is labelled with the final stage
    last_stage = np.full(app.units.n, final_stage, dtype=object)
    candidates: dict = {}
    awards = award_titles(app, units_df, candidates)
    clock("titles")
    free_heap()      # the scoring's freed temporaries, before the Monte Carlo allocates its own
    mc, mc_tiers, ua = _mc_for_awards(app, units_df, draws, candidates)
    awards = with_intervals(awards, mc_tiers)
    clock("monte carlo")
    clock("titles")
    area_rank, area_scores = _area_rows(app, units_df, period_key, con, mc)
    clock("areas")

    p = {"q": period_key, "sid": scheme.scheme_id, "sv": scheme.version}
    free_heap()      # the Monte Carlo's freed arrays, before DuckDB's writes
    with transaction(con):
        for t in ("fact_score", "fact_ranking", "fact_award", "fact_explanation"):
            con.execute(f"DELETE FROM {t} WHERE period_key = ? AND scheme_id = ?", [period_key, scheme.scheme_id])
        # the long fact_score rows are built and written block by block of units, after the Monte Carlo has
        # freed its arrays (built whole, in a thread beside it, they peaked at several GB at 600,000 units)
        for k, (st, a) in enumerate(runs):
            for tab in _score_tables(a, k == len(runs) - 1, u_self.X if k else None):
                con.register("_ap_scores", tab)
                con.execute("""INSERT INTO fact_score SELECT 'community', entity_code::VARCHAR, $q, $sid, $sv, $st,
                               node_level::VARCHAR, node_code::VARCHAR, value, score, weight, flag::VARCHAR
                               FROM _ap_scores""", {**p, "st": st})
                con.unregister("_ap_scores")
            clock("write fact_score")
        con.register("_ap_area_scores", area_scores)
        con.execute("""INSERT INTO fact_score SELECT entity_level, entity_code, $q, $sid, $sv, $st,
                       CASE WHEN node_code = $root THEN 'index' ELSE 'category' END, node_code, NULL, node_score,
                       NULL, NULL FROM _ap_area_scores""", {**p, "st": final_stage, "root": scheme.root})
        con.unregister("_ap_area_scores")
        # communities: one row per ranking scope
        n = app.units.n
        vet = ["；".join(v) if v else None for v in app.vetoes]
        comm = pl.DataFrame({
            "entity_code": app.units.codes, "entity_name": app.units.names,
            "community_key": units_df["community_key"], "stage": pl.Series(list(last_stage), dtype=pl.String),
            "score": pl.Series(app.score).fill_nan(None), "score_rounded": pl.Series(app.score_rounded).fill_nan(None),
            "grade": pl.Series(list(app.grade), dtype=pl.String), "bonus": app.bonus,
            "vetoes": pl.Series(vet, dtype=pl.String),
            "self_score": pl.Series(self_app.score).fill_nan(None),
            "coverage": app.availability,
            "eligibility_reason": pl.Series(list(app.reason), dtype=pl.String)})
        parts = []
        sc_map = {"street": ("street_code", "street"), "district": ("district_code", "district"),
                  "city": ("city_code", "city")}
        for sc_name in SCOPES:
            r = app.ranks[(scheme.root, sc_name)]
            g = app.units.grouping(sc_map[sc_name][0])
            n_ranked = np.bincount(g.inv, weights=np.isfinite(r).astype(float), minlength=g.n)[g.inv]
            st = mc.get(sc_name, {}) if mc else {}
            # the published interval always holds the published rank: the draws' 5th-95th percentile, widened
            # to the nominal rank where the nominal configuration is rarer than 1 draw in 20
            lo_r = np.fmin(st["q_low"], r) if "q_low" in st else np.full(n, np.nan)
            hi_r = np.fmax(st["q_high"], r) if "q_high" in st else np.full(n, np.nan)
            st = {**st, "q_low": np.where(np.isfinite(st.get("q_low", lo_r)), lo_r, np.nan),
                  "q_high": np.where(np.isfinite(st.get("q_high", hi_r)), hi_r, np.nan)} if st else st
            parts.append(comm.with_columns(
                pl.lit(sc_name).alias("scope_level"), units_df[sc_map[sc_name][0]].alias("scope_code"),
                units_df[sc_map[sc_name][1]].alias("scope_name"),
                pl.Series("rank", r).fill_nan(None).cast(pl.Int32), pl.Series("n_ranked", n_ranked.astype(np.int32)),
                pl.Series("rank_median", st.get("median", np.full(n, np.nan))).fill_nan(None),
                pl.Series("rank_low", st.get("q_low", np.full(n, np.nan))).fill_nan(None),
                pl.Series("rank_high", st.get("q_high", np.full(n, np.nan))).fill_nan(None)))
        con.register("_ap_rank", pl.concat(parts))
        con.execute("""INSERT INTO fact_ranking BY NAME SELECT 'community' AS entity_level, entity_code, entity_name,
                       community_key, scope_level, scope_code, scope_name, $q AS period_key, $sid AS scheme_id,
                       $sv AS scheme_version, stage, score, score_rounded, rank, n_ranked, rank_median, rank_low,
                       rank_high, CASE WHEN eligibility_reason IS NULL THEN grade END AS grade, bonus, vetoes,
                       self_score, self_score - score AS self_gap, coverage, eligibility_reason FROM _ap_rank""", p)
        con.unregister("_ap_rank")
        con.register("_ap_area", area_rank)
        con.execute("""INSERT INTO fact_ranking BY NAME SELECT *, $q AS period_key, $sid AS scheme_id,
                       $sv AS scheme_version, $st AS stage FROM _ap_area""", {**p, "st": final_stage})
        con.unregister("_ap_area")
        clock("write fact_ranking")
        if awards.height:
            con.register("_ap_award", awards.drop("_row"))
            con.execute("""INSERT INTO fact_award BY NAME SELECT *, $q AS period_key, $sid AS scheme_id,
                           $sv AS scheme_version, 'community' AS entity_level FROM _ap_award""", p)
            con.unregister("_ap_award")
        sql = model_sql("explanation")
        # the 一票否决 rules each community hit, with the value the rule read (explanation.sql reads it as
        # veto_hit): the value is the engine's imputed one, which the warehouse does not otherwise keep
        con.register("veto_hit", pl.DataFrame(veto_hits(app), schema=VETO_HIT_SCHEMA))
        try:
            con.execute(f"INSERT INTO fact_explanation SELECT * FROM ({sql})",
                        bind(sql, {"period_key": period_key, "prev_key": previous_quarter(period_key),
                                   "scheme_id": scheme.scheme_id, "root": scheme.root}))
        finally:
            with contextlib.suppress(duckdb.Error):       # an aborted transaction refuses it; the error above wins
                con.unregister("veto_hit")
        clock("explanations")
        # robustness analysis, the cheap part (correlations, reliability; docs/robustness.md)
        quick = write_quick(con, period_key, app)
        clock("analysis")
    clock("commit")
    counts = dict(con.execute("SELECT entity_level, count(*) FROM fact_ranking WHERE period_key = ? AND scheme_id = ? "
                              "GROUP BY 1", [period_key, scheme.scheme_id]).fetchall())
    for t in ("fact_score", "fact_award", "fact_explanation"):
        counts[t] = con.execute(f"SELECT count(*) FROM {t} WHERE period_key = ? AND scheme_id = ?",
                                [period_key, scheme.scheme_id]).fetchall()[0][0]
    counts["mc_draws"] = ua.draws if ua else 0
    counts.update(quick)
    return counts


# ------------------------------------------------------------------------------------------------------
# Publishing (公示)


def _content(con, period_key: str, scheme_id: str) -> tuple[pl.DataFrame, pl.DataFrame, str]:
    r = con.sql("""SELECT * FROM fact_ranking WHERE period_key = $q AND scheme_id = $s
                   ORDER BY entity_level, entity_code, scope_level""", params={"q": period_key, "s": scheme_id}).pl()
    a = con.sql("""SELECT * FROM fact_award WHERE period_key = $q AND scheme_id = $s
                   ORDER BY campaign, tier, entity_code""", params={"q": period_key, "s": scheme_id}).pl()
    # every published column counts (intervals, tie flags, quotas, stages, vetoes, scheme version): any change
    # to what a 公示 shows is a new version
    h = hashlib.sha256()
    h.update(r.write_csv(float_precision=10).encode())
    h.update(a.write_csv(float_precision=10).encode())
    return r, a, h.hexdigest()[:16]


def publication_status(con: duckdb.DuckDBPyConnection, period_key: str, scheme_id: str) -> dict | None:
    """The latest published version of a quarter and whether the live ranking still matches it."""
    row = con.execute("""SELECT version_id, content_hash, published_at FROM appraisal_publication
                         WHERE period_key = ? AND scheme_id = ? ORDER BY seq DESC LIMIT 1""",
                      [period_key, scheme_id]).fetchall()
    if not row:
        return None
    _, _, live = _content(con, period_key, scheme_id)
    return {"version_id": row[0][0], "published_at": row[0][2], "matches_live": row[0][1] == live}


def publish(con: duckdb.DuckDBPyConnection, period_key: str, scheme: Scheme, by: str | None = None,
            note: str | None = None) -> dict:
    """Freeze the live ranking and titles of a quarter under a new version id, with a diff against the previous
    version. Publishing an unchanged appraisal again returns the existing version and writes nothing."""
    ranks, awards, digest = _content(con, period_key, scheme.scheme_id)
    if not ranks.height:
        raise SchemeError(f"{period_key} 尚无 {scheme.scheme_id} 方案的排名，无法发布（请先运行 shequ refresh）")
    prev = con.execute("""SELECT version_id, content_hash, seq FROM appraisal_publication
                          WHERE period_key = ? AND scheme_id = ? ORDER BY seq DESC LIMIT 1""",
                       [period_key, scheme.scheme_id]).fetchall()
    if prev and prev[0][1] == digest:
        return {"version_id": prev[0][0], "new": False, "changes": 0}
    seq = prev[0][2] + 1 if prev else 1
    vid = f"{period_key}-{scheme.scheme_id}-v{seq}"
    with transaction(con):
        con.execute("INSERT INTO appraisal_publication VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [vid, period_key, scheme.scheme_id, scheme.version, scheme.digest, seq,
                     prev[0][0] if prev else None, dt.datetime.now(), by, note, ranks.height, awards.height, digest])
        con.execute("""INSERT INTO published_ranking SELECT ?, * FROM fact_ranking
                       WHERE period_key = ? AND scheme_id = ?""", [vid, period_key, scheme.scheme_id])
        con.execute("""INSERT INTO published_award SELECT ?, * FROM fact_award
                       WHERE period_key = ? AND scheme_id = ?""", [vid, period_key, scheme.scheme_id])
        if _has_table(con, "published_manual_input"):   # the manual inputs this version carries
            con.execute("""INSERT INTO published_manual_input
                           SELECT DISTINCT ?, 'correction', correction_id FROM fact_indicator_value
                           WHERE period_key = ? AND correction_id IS NOT NULL
                           UNION SELECT ?, 'bonus', bonus_id FROM manual_bonus WHERE period_key = ? AND active""",
                        [vid, period_key, vid, period_key])
        if prev:
            sql = model_sql("publication_diff")
            con.execute(f"INSERT INTO publication_diff SELECT * FROM ({sql})",
                        bind(sql, {"version_id": vid, "previous_id": prev[0][0]}))
    changes = con.execute("SELECT count(*) FROM publication_diff WHERE version_id = ?", [vid]).fetchall()[0][0]
    return {"version_id": vid, "new": True, "changes": changes, "supersedes": prev[0][0] if prev else None}


# ------------------------------------------------------------------------------------------------------
# Robustness analysis, the heavy part (Sobol sensitivity; docs/robustness.md)


def final_appraisal(con: duckdb.DuckDBPyConnection, period_key: str, scheme: Scheme
                    ) -> tuple[Appraisal, pl.DataFrame]:
    """The run the quarter is ranked from: the communities' own values with every review stage's corrections
    applied in stage order (as appraise_period's last run)."""
    u_self, units_df = load_units(con, period_key, scheme)
    stages = list((scheme.section("review") or {}).get("stages") or ["自评"])
    rows = _reviews(con, period_key).filter(pl.col("stage").is_in(stages[1:]))
    if rows.height:
        rows = rows.with_columns(pl.col("stage").replace_strict({s: i for i, s in enumerate(stages)},
                                                                 return_dtype=pl.Int32).alias("_o")).sort("_o")
        return run(_with_overrides(u_self, rows), scheme), units_df
    return run(u_self, scheme), units_df


def sensitivity_period(con: duckdb.DuckDBPyConnection, period_key: str, scheme: Scheme, n: int | None = None,
                       nboot: int = 100) -> dict[str, float]:
    """Sobol sensitivity of the quarter's community ranks (within the uncertainty section's
    ``sensitivity_group``, default city_code) to the scheme's uncertain assumptions; replaces the quarter's
    analysis_sensitivity rows. Returns the row count, runs and seconds."""
    from .analysis import factors, sensitivity, write_sensitivity

    t0 = time.perf_counter()
    app, _ = final_appraisal(con, period_key, scheme)
    spec = scheme.section("uncertainty") or {}
    if len(factors(app, 1)) < 2 or not app.eligible.any():
        # nothing to analyse: fewer than two uncertain assumptions declared, or no community ranked
        with transaction(con):
            con.execute("DELETE FROM analysis_sensitivity WHERE period_key = ? AND scheme_id = ?",
                        [period_key, scheme.scheme_id])
        return {"analysis_sensitivity": 0, "runs": 0, "seconds": round(time.perf_counter() - t0, 2)}
    group = spec.get("sensitivity_group", "city_code" if "city_code" in app.units.groups else None)
    sa = sensitivity(app, N=n, nboot=nboot, group=group)
    with transaction(con):
        rows = write_sensitivity(con, period_key, app, sa)
    return {"analysis_sensitivity": rows, "runs": sa.runs, "seconds": round(time.perf_counter() - t0, 2)}
