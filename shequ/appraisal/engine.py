"""The composite-index engine: denominate -> impute -> screen -> treat -> normalise -> aggregate -> adjust ->
round -> rank -> grade, exactly as a scheme file declares (see scheme.py and models/schemes/README.md).

Plain numpy on a dense units x indicators matrix, one column operation at a time (never per cell): the
iterative skew/kurtosis winsorisation and the Monte Carlo re-runs are not set operations, and a 600,000 x 68
matrix is 330 MB. The methods follow COINr (JRC/OECD handbook) and the UNDP HDI technical notes; the golden
tests in tests/test_appraisal_golden.py hold them to the published results.
"""

import math
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from .scheme import RELATIVE, Scheme, SchemeError

# ------------------------------------------------------------------------------------------------------
# Units: what the engine scores


class Groups:
    """A grouping of units (street, district, EurAsia_group, ...) with a sort order for fast segment ops."""

    def __init__(self, labels: np.ndarray):
        self.labels, self.inv = np.unique(np.asarray(labels), return_inverse=True)
        self.inv = self.inv.astype(np.int64)
        self.n = len(self.labels)
        self.perm = np.argsort(self.inv, kind="stable")
        self.counts = np.bincount(self.inv, minlength=self.n)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)

    def sums(self, x: np.ndarray) -> np.ndarray:
        """Per-group sums of x (n or n x m; NaN counted as 0)."""
        return np.add.reduceat(np.nan_to_num(x[self.perm]), self.starts, axis=0)

    def nanmean(self, x: np.ndarray) -> np.ndarray:
        cnt = np.add.reduceat(np.isfinite(x[self.perm]).astype(np.float64), self.starts, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(cnt > 0, self.sums(x) / np.maximum(cnt, 1), np.nan)

    def reduce(self, x: np.ndarray, ufunc) -> np.ndarray:
        return ufunc.reduceat(x[self.perm], self.starts, axis=0)

    def apply(self, x: np.ndarray, fn) -> np.ndarray:
        """fn over each group's segment (for medians); loops over groups, not cells."""
        xs = x[self.perm]
        return np.stack([fn(xs[s:s + c]) for s, c in zip(self.starts, self.counts)])


@dataclass
class Units:
    codes: np.ndarray                      # unit codes, the row order of every matrix
    names: np.ndarray
    X: np.ndarray                          # raw values, n x m, columns in scheme.indicators order
    indicators: list[str]
    groups: dict[str, np.ndarray] = field(default_factory=dict)      # group column -> labels
    denominators: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, np.ndarray] = field(default_factory=dict)       # values read by bonus / veto rules
    previous: np.ndarray | None = None     # last period's raw values (for last_value imputation)
    applicable: np.ndarray | None = None   # n x m, False where an indicator does not apply (村代居)
    _groups: dict = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return len(self.codes)

    def grouping(self, name: str | None) -> Groups | None:
        if not name:
            return None
        if name not in self._groups:
            if name not in self.groups:
                raise SchemeError(f"分组列 {name} 不在数据中（有：{sorted(self.groups)}）")
            self._groups[name] = Groups(self.groups[name])
        return self._groups[name]

    def value_of(self, code: str) -> np.ndarray:
        if code in self.indicators:
            return self.X[:, self.indicators.index(code)]
        if code in self.extra:
            return self.extra[code]
        raise SchemeError(f"规则引用的指标 {code} 不在数据中")


def units_from_frame(df: pl.DataFrame, scheme: Scheme, unit: str, name: str | None = None,
                     groups: list[str] = (), previous: pl.DataFrame | None = None) -> Units:
    """Wide frame (one row per unit) -> Units. Text values of ordinal indicators are mapped by the scheme."""
    inds = scheme.indicators
    missing = [c for c in inds if c not in df.columns]
    if missing:
        raise SchemeError(f"数据缺少方案中的指标列：{missing}")
    cols = []
    for c in inds:
        s = df[c]
        m = scheme.method_of(c)
        if s.dtype == pl.String and m["method"] == "ordinal":
            # the same code normalise_column compares with: the key itself when numeric, else its position
            keys = {str(k): (float(k) if _is_number(k) else float(i)) for i, k in enumerate(m["map"])}
            s = s.replace_strict(keys, default=None, return_dtype=pl.Float64)
        cols.append(s.cast(pl.Float64).to_numpy())
    X = np.column_stack(cols) if cols else np.zeros((df.height, 0))
    dens = {n.denominator for n in scheme.nodes.values() if n.denominator}
    adjust = scheme.section("adjust") or {}
    refs = {r["indicator"] for r in (adjust.get("bonus") or {}).get("items", []) + (adjust.get("vetoes") or [])}
    prev = None
    if previous is not None:
        p = df.select(unit).join(previous, on=unit, how="left")
        prev = np.column_stack([p[c].cast(pl.Float64).to_numpy() if c in p.columns else np.full(df.height, np.nan)
                                for c in inds])
    return Units(codes=df[unit].cast(pl.String).to_numpy(),
                 names=(df[name] if name else df[unit]).cast(pl.String).to_numpy(), X=X, indicators=list(inds),
                 groups={g: df[g].cast(pl.String).to_numpy() for g in groups},
                 denominators={d: df[d].cast(pl.Float64).to_numpy() for d in dens},
                 extra={r: df[r].cast(pl.Float64).to_numpy() for r in refs if r in df.columns and r not in inds},
                 previous=prev)


# ------------------------------------------------------------------------------------------------------
# Steps


def denominate(u: Units, scheme: Scheme) -> np.ndarray:
    X = u.X.copy()
    scale = float((scheme.section("denominate") or {}).get("scale", 1))
    for j, c in enumerate(u.indicators):
        d = scheme.nodes[c].denominator
        if d:
            if d not in u.denominators:
                raise SchemeError(f"指标 {c} 的分母 {d} 不在数据中")
            with np.errstate(invalid="ignore", divide="ignore"):
                X[:, j] = X[:, j] / u.denominators[d] * scale
    X[~np.isfinite(X)] = np.nan
    return X


def impute(X: np.ndarray, u: Units, scheme: Scheme) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN by the scheme's imputation steps, in order; each step fills only what is still missing."""
    X = X.copy()
    was_missing = np.isnan(X)
    for step in scheme.section("impute") or []:
        miss = np.isnan(X)
        if not miss.any():
            break
        m = step["method"]
        if m == "last_value":
            if u.previous is None:
                continue
            fill = u.previous
        elif m == "constant":
            fill = np.full_like(X, float(step["value"]))
        elif m in ("mean", "median"):
            with np.errstate(invalid="ignore"), _quiet():
                col = np.nanmean(X, axis=0) if m == "mean" else np.nanmedian(X, axis=0)
            fill = np.broadcast_to(col, X.shape)
        else:
            g = u.grouping(step.get("group"))
            if g is None:
                raise SchemeError(f"插补方法 {m} 需要 group")
            if m == "group_mean":
                per = g.nanmean(X)
            else:
                per = g.apply(X, lambda seg: _nanmedian0(seg))
            fill = per[g.inv]
        X = np.where(miss, fill, X)
    if u.applicable is not None:
        X[~u.applicable] = np.nan          # not applicable is not missing: never imputed, weight re-normalised
    return X, was_missing & ~np.isnan(X)


def _nanmedian0(seg: np.ndarray) -> np.ndarray:
    with _quiet():
        return np.nanmedian(seg, axis=0) if len(seg) else np.full(seg.shape[1], np.nan)


class _quiet:
    def __enter__(self):
        import warnings
        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *a):
        self._w.__exit__(*a)


def _moments(x: np.ndarray) -> tuple[float, float]:
    """(skewness, excess kurtosis), both type 2 (Excel SKEW/KURT, e1071 type 2; COINr R/treat.R skew(), kurt()),
    from one pass over the centred values."""
    n = len(x)
    d = x - x.mean()
    d2 = d * d
    s2 = d2.sum()
    if s2 == 0 or n < 4:
        return 0.0, 0.0
    m2 = s2 / n
    sk = float((d2 * d).sum() / n / m2 ** 1.5 * math.sqrt(n * (n - 1)) / (n - 2))
    g = n * (d2 * d2).sum() / s2 ** 2
    ku = float(((n + 1) * (g - 3) + 6) * (n - 1) / ((n - 2) * (n - 3)))
    return sk, ku


def treat_column(x: np.ndarray, skew_max: float, kurt_max: float, winmax: int, fallback: str | None
                 ) -> tuple[np.ndarray, np.ndarray, str]:
    """COINr's default outlier treatment for one indicator.

    Fails when |skew| > skew_max AND kurt > kurt_max. While failing (at most winmax rounds) the maximum
    value(s) are set to the next-highest value if skew >= 0, else the minimum value(s) to the next-lowest.
    If it still fails, the fallback (log) is applied to the ORIGINAL column. Returns (treated, flags, label)
    with flags +1 winsorised high, -1 low, 2 log-transformed.
    """
    x = x.copy()
    ok = np.isfinite(x)
    flags = np.zeros(len(x), dtype=np.int8)
    v = x[ok]

    def fails(a):
        sk, ku = _moments(a)
        return abs(sk) > skew_max and ku > kurt_max, sk

    if len(v) < 4 or not fails(v)[0]:
        return x, flags, "none"
    orig = v.copy()
    f = np.zeros(len(v), dtype=np.int8)
    for _ in range(int(winmax)):
        bad, sk = fails(v)
        if not bad:
            break
        if sk >= 0:
            top = v == v.max()
            if top.all():
                break
            v[top] = v[~top].max()
            f[top] = 1
        else:
            bot = v == v.min()
            if bot.all():
                break
            v[bot] = v[~bot].min()
            f[bot] = -1
    if fails(v)[0] and fallback in ("log", "log_ct"):
        lo, hi = orig.min(), orig.max()
        v = np.log(orig - lo + 0.01 * (hi - lo))
        f[:] = 2
        label = "log"
    else:
        label = f"winsorised {int((f == -1).sum())} low, {int((f == 1).sum())} high" if f.any() else "none"
    x[ok] = v
    flags[ok] = f
    return x, flags, label


def treat(X: np.ndarray, u: Units, scheme: Scheme, winmax: int | None = None
          ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    spec = scheme.section("treat") or {}
    Xt, flags, summary = X.copy(), np.zeros(X.shape, dtype=np.int8), []
    if not spec or spec.get("method") in (None, "none"):
        return Xt, flags, summary
    wm = winmax if winmax is not None else spec.get("winmax", 5)
    for j, c in enumerate(u.indicators):
        if not scheme.treated(c):
            continue
        xt, f, label = treat_column(X[:, j], float(spec.get("skew", 2)), float(spec.get("kurt", 3.5)),
                                    _winmax(wm, int(np.isfinite(X[:, j]).sum())), spec.get("fallback"))
        Xt[:, j], flags[:, j] = xt, f
        summary.append({"indicator": c, "low": int((f == -1).sum()), "high": int((f == 1).sum()),
                        "treatment": label})
    return Xt, flags, summary


def _winmax(wm, n: int) -> int:
    if isinstance(wm, str) and wm.endswith("%"):   # e.g. "10%" = ceiling(0.1 n), COINr v0.6's default
        return math.ceil(float(wm[:-1]) / 100 * n)
    return int(wm)


# ---- normalisation ------------------------------------------------------------------------------------


def _by_group(x: np.ndarray, g: Groups | None, fn_global, fn_group):
    if g is None:
        return fn_global(x)
    return fn_group(x, g)[g.inv]


def normalise_column(x: np.ndarray, m: dict, direction: int, g: Groups | None, fit: np.ndarray | None = None
                     ) -> np.ndarray:
    """One indicator's scores. ``fit`` marks the units whose values set the relative parameters (eligible
    units); the scores are computed for every unit."""
    method = m["method"]
    fit = np.ones(len(x), bool) if fit is None else fit
    xf = np.where(fit, x, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        if method == "minmax":
            lo, hi = float(m.get("lo", 0)), float(m.get("hi", 100))
            xd = x * direction
            xfd = xf * direction
            mn = _by_group(xfd, g, lambda a: np.nanmin(a), lambda a, gg: gg.reduce(a, np.fmin))
            mx = _by_group(xfd, g, lambda a: np.nanmax(a), lambda a, gg: gg.reduce(a, np.fmax))
            rng = mx - mn
            out = np.where(rng > 0, (xd - mn) / np.where(rng > 0, rng, 1) * (hi - lo) + lo, np.nan)
            # fitted units are inside [lo, hi] already; a unit outside the fit is held to the same scale
            return np.clip(out, min(lo, hi), max(lo, hi))
        if method == "zscore":
            mu_t, sd_t = float(m.get("mean", 0)), float(m.get("sd", 1))
            xd, xfd = x * direction, xf * direction
            if g is None:
                mu, sd = np.nanmean(xfd), np.nanstd(xfd, ddof=1)
            else:
                mu = g.nanmean(xfd)
                cnt = g.sums(np.isfinite(xfd).astype(float))
                var = g.sums((xfd - mu[g.inv]) ** 2) / np.maximum(cnt - 1, 1)
                mu, sd = mu[g.inv], np.sqrt(var)[g.inv]
            return np.where(sd > 0, (xd - mu) / np.where(sd > 0, sd, 1) * sd_t + mu_t, np.nan)
        if method in ("rank", "percentile"):
            # ranks among the fitted (eligible) units, ties averaged; a unit outside the fit is placed against
            # the same pool, so ineligible units cannot move anyone's score
            out = np.full(len(x), np.nan)
            groups = [np.arange(len(x))] if g is None else np.split(g.perm, g.starts[1:])
            for idx in groups:
                v = x[idx] * direction
                pool = np.sort(v[fit[idx] & np.isfinite(v)])
                ok = np.isfinite(v)
                if not len(pool):
                    continue
                r = _pool_rank(pool, v[ok])
                out[idx[ok]] = _percentile(r, len(pool)) if method == "percentile" else r
            return out
        if method == "goalposts":
            lo, hi = float(m["min"]), float(m["max"])
            scale = float(m.get("scale", 100))
            v = x
            if m.get("cap", True):
                v = np.clip(v, lo, hi)
            if m.get("log"):
                v, lo, hi = np.log(v), math.log(lo), math.log(hi)
            s = (v - lo) / (hi - lo) if direction > 0 else (hi - v) / (hi - lo)
            return s * scale
        if method == "band":
            lo, hi, scale = float(m["min"]), float(m["max"]), float(m.get("scale", 100))
            dist = np.where(x < lo, lo - x, np.where(x > hi, x - hi, 0.0))
            return np.where(np.isfinite(x), np.maximum(0.0, scale - scale * dist / (hi - lo)), np.nan)
        if method == "distance_to_target":
            # 100 at or past the target; below it, the distance covered from the worst fitted unit. When even
            # the worst fitted unit meets the target, a unit short of it scores 0.
            t, scale = float(m["target"]), float(m.get("scale", 100))
            if direction > 0:
                base = _by_group(xf, g, lambda a: np.nanmin(a), lambda a, gg: gg.reduce(a, np.fmin))
                met, span, gap = x >= t, t - base, x - base
            else:
                base = _by_group(xf, g, lambda a: np.nanmax(a), lambda a, gg: gg.reduce(a, np.fmax))
                met, span, gap = x <= t, base - t, base - x
            s = np.where(met, 1.0, np.where(span > 0, gap / np.where(span > 0, span, 1), 0.0))
            return np.where(np.isfinite(x), np.clip(s, 0, 1) * scale, np.nan)
        if method == "target":
            t, full = float(m["target"]), float(m.get("full", 100))
            ratio = x / t if direction > 0 else t / x
            if direction > 0 and t == 0:
                ratio = np.where(x >= 0, 1.0, 0.0)
            ratio = np.where(np.isfinite(ratio), ratio, np.where(np.isfinite(x), 1.0 if direction < 0 else 0, np.nan))
            below = m.get("below", "pro_rata")
            if below == "pro_rata":
                s = np.clip(ratio, 0, 1) * full
            elif below == "stepped":
                s = np.zeros(len(x))
                for r, pts in sorted(m["steps"], key=lambda p: p[0]):
                    s = np.where(ratio >= float(r), float(pts), s)
                s = np.where(ratio >= 1, full, s)
            elif below == "zero":
                s = np.where(ratio >= 1, full, 0.0)
            else:
                raise SchemeError(f"target.below {below!r} 不支持（pro_rata / stepped / zero）")
            return np.where(np.isfinite(x), s, np.nan)
        if method == "deduction":
            t, full = float(m["target"]), float(m.get("full", 100))
            per, pts, floor = float(m.get("per", 1)), float(m["points"]), float(m.get("floor", 0))
            short = np.maximum(0, t - x) if direction > 0 else np.maximum(0, x - t)
            n_short = np.ceil(short / per - 1e-9)
            return np.maximum(floor, full - pts * n_short)
        if method == "ordinal":
            keys = list(m["map"])
            out = np.full(len(x), np.nan)
            for i, k in enumerate(keys):
                kv = float(k) if _is_number(k) else float(i)
                out = np.where(x == kv, float(m["map"][k]), out)
            return out
        if method == "flag":
            on, off = float(m.get("true", 100)), float(m.get("false", 0))
            good = x > 0.5 if direction > 0 else x < 0.5
            return np.where(np.isfinite(x), np.where(good, on, off), np.nan)
        if method == "identity":
            return x.astype(float)
    raise SchemeError(f"计分方法 {method!r} 不支持")


def _pool_rank(pool_sorted: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Average rank (1..n, ties averaged, R's rank default) of each value among a sorted pool; a value that
    is in the pool gets its own tie-averaged rank, a value outside it the rank it would take if inserted."""
    below = np.searchsorted(pool_sorted, v, "left")
    upto = np.searchsorted(pool_sorted, v, "right")
    return below + np.maximum(upto - below, 1) / 2 + 0.5


def _percentile(r: np.ndarray, n: int) -> np.ndarray:
    return np.clip((r - 1) / (n - 1) * 100, 0, 100) if n > 1 else np.full(len(r), 100.0)


def _is_number(k) -> bool:
    try:
        float(k)
        return True
    except (TypeError, ValueError):
        return False


def normalise(X: np.ndarray, u: Units, scheme: Scheme, fit: np.ndarray | None = None,
              relative_override: dict | None = None) -> np.ndarray:
    S = np.empty_like(X)
    for j, c in enumerate(u.indicators):
        m = scheme.method_of(c)
        if relative_override is not None and m["method"] in RELATIVE:
            m = {**relative_override, "within": m.get("within")}
        S[:, j] = normalise_column(X[:, j], m, scheme.nodes[c].direction, u.grouping(m.get("within")), fit)
    return S


# ---- aggregation ----------------------------------------------------------------------------------------


def aggregate_rows(C: np.ndarray, w: np.ndarray, method: str, floor: float | None = None) -> np.ndarray:
    """Weighted mean of the columns of C per row, weights re-normalised over the non-missing children."""
    ok = np.isfinite(C)
    W = np.where(ok, w, 0.0)
    tot = W.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "arithmetic":
            num = np.where(ok, C, 0.0) @ w if ok.all() else (np.where(ok, C, 0.0) * W).sum(axis=1)
            out = num / tot
        elif method == "geometric":
            Cg = C if floor is None else np.where(ok, np.maximum(C, floor), C)
            if (Cg[ok] <= 0).any():
                raise SchemeError("几何平均遇到 0 或负值：请把该层的标准化下限设为正数（如 minmax lo: 1），"
                                  "或在方案中声明 aggregate.geometric_floor")
            out = np.exp((np.where(ok, np.log(np.where(ok, Cg, 1.0)), 0.0) * W).sum(axis=1) / tot)
        elif method == "harmonic":
            if (C[ok] <= 0).any():
                raise SchemeError("调和平均遇到 0 或负值")
            out = tot / (np.where(ok, W / np.where(ok, C, 1.0), 0.0)).sum(axis=1)
        else:
            raise SchemeError(f"汇总方法 {method!r} 不支持")
    return np.where(tot > 0, out, np.nan)


def aggregate(S: np.ndarray, u: Units, scheme: Scheme, weights: dict[str, float] | None = None,
              method: str | None = None) -> dict[str, np.ndarray]:
    """Scores of every aggregate node, bottom-up. ``weights``/``method`` override the scheme (Monte Carlo)."""
    vals = {c: S[:, j] for j, c in enumerate(u.indicators)}
    floor = (scheme.section("aggregate") or {}).get("geometric_floor")
    for node in scheme.aggregates:
        kids = scheme.children(node)
        C = np.column_stack([vals[k] for k in kids])
        w = np.array([(weights or {}).get(k, scheme.nodes[k].weight) for k in kids], dtype=float)
        vals[node] = aggregate_rows(C, w, method or scheme.aggregation_of(node), floor)
    return {c: vals[c] for c in scheme.aggregates}


# ---- rounding, ranks, grades ------------------------------------------------------------------------------


def round_scores(x: np.ndarray, digits: int, mode: str = "half_even") -> np.ndarray:
    if mode == "half_up":      # as a person rounds: 84.995 -> 85.00, -84.995 -> -85.00 (half away from zero)
        f = 10.0 ** digits
        return np.sign(x) * np.floor(np.abs(x) * f + 0.5 + 1e-9) / f
    return np.round(x, digits)


def rank_desc(score: np.ndarray, g: Groups | None = None, ties: str = "min") -> np.ndarray:
    """Rank 1 = highest score within each group; NaN scores get no rank (NaN). Ties: min (competition),
    dense, or ordinal (unit order breaks ties)."""
    out = np.full(len(score), np.nan)
    idx = np.nonzero(np.isfinite(score))[0]
    if not len(idx):
        return out
    s = score[idx]
    gi = g.inv[idx] if g is not None else np.zeros(len(idx), np.int64)
    order = np.lexsort((idx, -s, gi))
    so, go = s[order], gi[order]
    pos = np.arange(len(order))
    new_g = np.r_[True, go[1:] != go[:-1]]
    gstart = np.maximum.accumulate(np.where(new_g, pos, 0))
    if ties == "ordinal":
        r = pos - gstart + 1
    else:
        new_run = new_g | np.r_[True, so[1:] != so[:-1]]
        if ties == "min":
            r = np.maximum.accumulate(np.where(new_run, pos, 0)) - gstart + 1
        else:
            c = np.cumsum(new_run)
            r = c - c[gstart] + 1
    out[idx[order]] = r
    return out


def grade_of(score_r: np.ndarray, bands: list[dict]) -> np.ndarray:
    """First band that holds the (rounded) score; bounds inclusive unless declared otherwise."""
    out = np.full(len(score_r), None, dtype=object)
    free = np.isfinite(score_r)
    for b in bands:
        hit = free.copy()
        if "min" in b:
            hit &= score_r >= b["min"] if b.get("min_inclusive", True) else score_r > b["min"]
        if "max" in b:
            hit &= score_r <= b["max"] if b.get("max_inclusive", True) else score_r < b["max"]
        out[hit] = b["grade"]
        free &= ~hit
    return out


# ------------------------------------------------------------------------------------------------------
# The whole run


@dataclass
class Appraisal:
    scheme: Scheme
    units: Units
    denominated: np.ndarray
    imputed: np.ndarray
    imputed_mask: np.ndarray
    treated: np.ndarray
    treat_flags: np.ndarray
    treat_summary: list[dict]
    normalised: np.ndarray
    nodes: dict[str, np.ndarray]           # aggregate node -> scores
    availability: np.ndarray
    eligible: np.ndarray
    reason: np.ndarray                     # None = eligible
    bonus: np.ndarray
    vetoes: np.ndarray                     # object array of lists of veto names
    veto_effects: np.ndarray               # object array of sets of effects
    score: np.ndarray                      # root after bonus and caps
    score_rounded: np.ndarray
    grade: np.ndarray
    ranks: dict[tuple[str, str], np.ndarray]

    def node(self, code: str) -> np.ndarray:
        if code in self.nodes:
            return self.nodes[code]
        return self.normalised[:, self.units.indicators.index(code)]

    def frame(self, stage: str) -> pl.DataFrame:
        """A stage as a wide frame (unit x indicators): raw, denominated, imputed, treated, normalised,
        aggregated (normalised + every aggregate)."""
        u = self.units
        mats = {"raw": u.X, "denominated": self.denominated, "imputed": self.imputed, "treated": self.treated,
                "normalised": self.normalised}
        data = {"unit": u.codes}
        if stage == "aggregated":
            data.update({c: self.normalised[:, j] for j, c in enumerate(u.indicators)})
            data.update(self.nodes)
        else:
            data.update({c: mats[stage][:, j] for j, c in enumerate(u.indicators)})
        return pl.DataFrame(data)


def _rule_hits(values: np.ndarray, op: str, ref: float) -> np.ndarray:
    ops = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal, "==": np.equal,
           "=": np.equal, "!=": np.not_equal}
    if op not in ops:
        raise SchemeError(f"规则运算符 {op!r} 不支持")
    with np.errstate(invalid="ignore"):
        return ops[op](values, ref) & np.isfinite(values)


def adjust_scores(u: Units, scheme: Scheme, root: np.ndarray, names: bool = True, values: np.ndarray | None = None):
    """Bonus points (capped, total optionally capped) and vetoes (cap_score applied here; drop_grade and
    exclude_titles recorded for grading and awards). Returns (score, bonus, veto names, veto effects); with
    names=False (Monte Carlo) only the score is computed and the last two are None.

    Rules read the value that is scored (``values``: the imputed matrix), so a carried-forward 重大事故 both
    lowers the score and triggers its veto. The bonus returned is the one actually added (after max_score)."""

    def value_of(code: str) -> np.ndarray:
        if values is not None and code in u.indicators:
            return values[:, u.indicators.index(code)]
        return u.value_of(code)

    adjust = scheme.section("adjust") or {}
    bonus = np.zeros(u.n)
    bspec = adjust.get("bonus") or {}
    for item in bspec.get("items") or []:
        bonus += np.where(_rule_hits(value_of(item["indicator"]), item.get("op", ">="),
                                     float(item.get("value", 1))), float(item["points"]), 0.0)
    if "cap" in bspec:
        bonus = np.minimum(bonus, float(bspec["cap"]))
    score = root + bonus
    if "max_score" in bspec:
        score = np.minimum(score, np.maximum(root, float(bspec["max_score"])))
        bonus = np.where(np.isfinite(root), score - root, bonus)
    # the bonus is published: round it by the ranking's declared rounding so max_score - root reads 1.9, not
    # 1.9000000000000057 (the score itself is untouched; ranks and grades round it themselves)
    rk = scheme.section("ranking") or {}
    if "round" in rk:
        bonus = np.where(np.isfinite(bonus), round_scores(bonus, int(rk["round"]), rk.get("round_mode", "half_even")),
                         bonus)
    vetoes = effects = None
    if names:
        vetoes = np.empty(u.n, dtype=object)
        effects = np.empty(u.n, dtype=object)
        vetoes[:] = [()] * u.n
        effects[:] = [frozenset()] * u.n
    for v in adjust.get("vetoes") or []:
        hit = _rule_hits(value_of(v["indicator"]), v.get("op", ">"), float(v.get("value", 0)))
        if names:
            for i in np.nonzero(hit)[0]:       # only the units hit, not every unit
                vetoes[i] = (*vetoes[i], v["name"])
                effects[i] = effects[i] | {v["effect"]}
        if v["effect"] == "cap_score":
            score = np.where(hit, np.minimum(score, float(v["cap"])), score)
    return score, bonus, vetoes, effects


def veto_hits(app: "Appraisal") -> list[dict]:
    """One row per (unit, 一票否决 rule hit), for explanations: the rule's name, indicator, operator and threshold,
    the value the rule read (the imputed value, as ``adjust_scores`` reads it), its effect, the grade before and
    after the veto, and the cap of a ``cap_score`` veto. Units not hit have no row."""
    u, scheme = app.units, app.scheme
    vetoes = (scheme.section("adjust") or {}).get("vetoes") or []
    if not vetoes or app.vetoes is None:
        return []
    grades_spec = scheme.section("grades") or {}
    ranking = scheme.section("ranking") or {}
    digits, mode = int(ranking.get("round", 2)), ranking.get("round_mode", "half_even")
    gscore = round_scores(app.score, int(grades_spec.get("round", digits)), grades_spec.get("round_mode", mode))
    before = grade_of(gscore, grades_spec.get("bands") or [])   # the grade the score alone earns
    rows = []
    for i in np.nonzero(np.fromiter((bool(v) for v in app.vetoes), bool, u.n))[0]:
        pos = 0
        for v in vetoes:
            if v["name"] not in app.vetoes[i]:
                continue
            code = v["indicator"]
            x = app.imputed[i, u.indicators.index(code)] if code in u.indicators else u.value_of(code)[i]
            pos += 1
            rows.append({"entity_code": str(u.codes[i]), "position": pos, "veto_name": v["name"],
                         "indicator_code": code, "op": v.get("op", ">"), "threshold": float(v.get("value", 0)),
                         "value": float(x), "effect": v["effect"],
                         "cap": float(v["cap"]) if "cap" in v else None,
                         "grade_before": before[i] if app.eligible[i] else None,
                         "grade_after": app.grade[i] if app.eligible[i] else None})
    return rows


def run(u: Units, scheme: Scheme) -> Appraisal:
    D = denominate(u, scheme)
    Xi, imp_mask = impute(D, u, scheme)
    # availability on the data as reported (before imputation; COINr screens the imputed set: `on: imputed`),
    # by indicator count or by weight
    screen = scheme.section("screen") or {}
    appl = u.applicable if u.applicable is not None else np.ones(u.X.shape, bool)
    have = np.isfinite(Xi if screen.get("basis", "raw") == "imputed" else D) & appl
    if screen.get("by", "count") == "weight":
        lw = scheme.leaf_weights()
        w = np.array([lw[c] for c in u.indicators])
        with np.errstate(invalid="ignore", divide="ignore"):
            avail = (have * w).sum(axis=1) / (appl * w).sum(axis=1)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            avail = have.sum(axis=1) / appl.sum(axis=1)
    avail = np.nan_to_num(avail, nan=0.0)
    min_av = float(screen.get("min_availability", 0))
    raw_any = np.isfinite(D).any(axis=1) if D.shape[1] else np.zeros(u.n, bool)
    eligible = (avail >= min_av - 1e-12) & (raw_any | (screen.get("basis", "raw") == "imputed"))
    reason = np.full(u.n, None, dtype=object)
    reason[~eligible & raw_any] = "coverage_below_min"
    reason[~eligible & ~raw_any] = "no_data"
    Xt, flags, summary = treat(Xi, u, scheme)
    S = normalise(Xt, u, scheme, fit=eligible)
    nodes = aggregate(S, u, scheme)
    root = nodes[scheme.root] if scheme.root in nodes else S[:, u.indicators.index(scheme.root)]
    score, bonus, vetoes, effects = adjust_scores(u, scheme, root, values=Xi)
    ranking = scheme.section("ranking") or {}
    digits = int(ranking.get("round", 2))
    mode = ranking.get("round_mode", "half_even")
    score_r = round_scores(score, digits, mode)
    grades_spec = scheme.section("grades") or {}
    gscore = round_scores(score, int(grades_spec.get("round", digits)), grades_spec.get("round_mode", mode))
    grade = grade_of(gscore, grades_spec.get("bands") or [])
    bands = [b["grade"] for b in grades_spec.get("bands") or []]
    for i in np.nonzero(np.fromiter(("drop_grade" in e for e in effects), bool, u.n))[0]:
        if grade[i] in bands and bands.index(grade[i]) + 1 < len(bands):
            grade[i] = bands[bands.index(grade[i]) + 1]
    grade[~eligible] = None
    ranks = {}
    on = score_r if ranking.get("basis", "rounded") == "rounded" else score
    for node in ranking.get("nodes") or [scheme.root]:
        base = on if node == scheme.root else (
            round_scores(nodes[node], digits, mode) if ranking.get("basis", "rounded") == "rounded" else nodes[node])
        base = np.where(eligible, base, np.nan)
        for sc in ranking.get("scopes") or [{"name": "overall"}]:
            ranks[(node, sc["name"])] = rank_desc(base, u.grouping(sc.get("by")), ranking.get("ties", "min"))
    return Appraisal(scheme=scheme, units=u, denominated=D, imputed=Xi, imputed_mask=imp_mask, treated=Xt,
                     treat_flags=flags, treat_summary=summary, normalised=S, nodes=nodes, availability=avail,
                     eligible=eligible, reason=reason, bonus=bonus, vetoes=vetoes, veto_effects=effects,
                     score=score, score_rounded=score_r, grade=grade, ranks=ranks)


# ------------------------------------------------------------------------------------------------------
# Groups of units: the index of aggregated components (HDI) or the mean of members


def weighted_components(df: pl.DataFrame, by: str, columns: list[str], weight: str) -> pl.DataFrame:
    """Weighted mean of each component per group, over members with both value and weight (HDI regions)."""
    return df.group_by(by).agg([
        ((pl.col(c) * pl.col(weight)).filter(pl.col(c).is_not_null() & pl.col(weight).is_not_null()).sum()
         / pl.col(weight).filter(pl.col(c).is_not_null() & pl.col(weight).is_not_null()).sum()).alias(c)
        for c in columns]).sort(by)


def _apply_relative(m: dict, d: int, x: float, pool: np.ndarray) -> float:
    """One value scored against a fitted pool of unit values (areas scored from aggregated components)."""
    method = m["method"]
    if method == "minmax":
        lo, hi = float(m.get("lo", 0)), float(m.get("hi", 100))
        mn, mx = (pool * d).min(), (pool * d).max()
        return float(np.clip((x * d - mn) / (mx - mn), 0, 1) * (hi - lo) + lo) if mx > mn else np.nan
    if method == "zscore":
        sd = (pool * d).std(ddof=1) if len(pool) > 1 else 0.0
        return float((x * d - (pool * d).mean()) / sd * float(m.get("sd", 1)) + float(m.get("mean", 0))) if sd > 0 \
            else np.nan
    if method in ("percentile", "rank"):
        v = np.sort(pool * d)
        r = _pool_rank(v, np.array([x * d]))
        return float((_percentile(r, len(v)) if method == "percentile" else r)[0])
    if method == "distance_to_target":
        t, scale = float(m["target"]), float(m.get("scale", 100))
        base = pool.min() if d > 0 else pool.max()
        s = (x - base) / (t - base) if d > 0 else (base - x) / (base - t)
        return float(np.clip(s, 0, 1) * scale)
    raise SchemeError(f"{method} 方法不能用于汇总成分评分")


def score_components(app: Appraisal, comp: pl.DataFrame, unit: str, groups: dict[str, str] | None = None
                     ) -> pl.DataFrame:
    """Score group-level component values (one row per group) with the scheme, using only methods that do not
    depend on the units (goalposts, targets, flags, ordinals); relative methods take the units' fitted
    bounds of the group's `within` partition. Returns unit, every node, score (root)."""
    scheme = app.scheme
    u = app.units
    out = {unit: comp[unit].to_list()}
    S = np.empty((comp.height, len(u.indicators)))
    for j, c in enumerate(u.indicators):
        m = scheme.method_of(c)
        x = comp[c].cast(pl.Float64).to_numpy()
        if m["method"] in RELATIVE:
            # relative methods are fitted on the (eligible) units of the group's `within` partition and applied
            # to the group's aggregated value
            within = m.get("within")
            d = scheme.nodes[c].direction
            fit_x = np.where(app.eligible, app.treated[:, j], np.nan)
            if within:
                g = u.grouping(within)
                seg = dict(zip(g.labels, np.split(fit_x[g.perm], g.starts[1:])))
                keys = comp[(groups or {}).get(within, within)].to_numpy()
                pools = [seg.get(k, np.array([np.nan])) for k in keys]
            else:
                pools = [fit_x] * comp.height
            out_j = np.full(comp.height, np.nan)
            for r, (xv, pool) in enumerate(zip(x, pools)):
                pool = pool[np.isfinite(pool)]
                if not np.isfinite(xv) or not len(pool):
                    continue
                out_j[r] = _apply_relative(m, d, xv, pool)
            S[:, j] = out_j
        else:
            S[:, j] = normalise_column(x, m, scheme.nodes[c].direction, None)
    fake = Units(codes=np.array(out[unit]), names=np.array(out[unit]), X=S, indicators=u.indicators)
    nodes = aggregate(S, fake, scheme)
    out.update({c: S[:, j] for j, c in enumerate(u.indicators)})
    out.update(nodes)
    out["score"] = nodes.get(scheme.root, S[:, 0] if S.shape[1] else None)
    return pl.DataFrame(out)
