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
    # panel imputation (impute: panel): raw values of the same units in other quarters, T x n x m, with each
    # quarter's time index (history_t, e.g. year * 4 + quarter) and the appraised quarter's (t_now)
    history: np.ndarray | None = None
    history_t: np.ndarray | None = None
    t_now: float | None = None
    applicable: np.ndarray | None = None   # n x m, False where an indicator does not apply (村代居)
    manual_bonus: np.ndarray | None = None  # points from manual bonus events (shequ bonus add), per unit
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
    return _denominate(u.X, u, scheme)


def _denominate(X: np.ndarray, u: Units, scheme: Scheme) -> np.ndarray:
    X = X.copy()
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


def impute(X: np.ndarray, u: Units, scheme: Scheme, pool: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Fill NaN by the scheme's imputation steps, in order; each step fills only what is still missing.

    ``pool`` marks the units whose values the statistics (mean, median, group mean/median) are computed from:
    units screened out for low availability are dropped first, as COINr's Screen drops them, so they never
    feed the imputation of the others. They are still filled (from the pool's statistics)."""
    X = X.copy()
    was_missing = np.isnan(X)
    for step in scheme.section("impute") or []:
        miss = np.isnan(X)
        if not miss.any():
            break
        m = step["method"]
        P = X if pool is None or pool.all() else np.where(pool[:, None], X, np.nan)
        if m == "last_value":
            if u.previous is None:
                continue
            fill = u.previous
        elif m == "panel":
            if u.history is None or not len(u.history):
                continue
            # interpolated on the raw panel (COINr's impute_panel works on iData), then denominated by this
            # quarter's denominators like every other value
            fill = _denominate(panel_fill(u.X, u.history, u.history_t, u.t_now, step.get("type", "linear")),
                               u, scheme)
        elif m == "constant":
            fill = np.full_like(X, float(step["value"]))
        elif m in ("mean", "median"):
            with np.errstate(invalid="ignore"), _quiet():
                col = np.nanmean(P, axis=0) if m == "mean" else np.nanmedian(P, axis=0)
            fill = np.broadcast_to(col, X.shape)
        else:
            g = u.grouping(step.get("group"))
            if g is None:
                raise SchemeError(f"插补方法 {m} 需要 group")
            if m == "group_mean":
                per = g.nanmean(P)
            else:
                per = g.apply(P, lambda seg: _nanmedian0(seg))
            fill = per[g.inv]
        X = np.where(miss, fill, X)
    if u.applicable is not None:
        X[~u.applicable] = np.nan          # not applicable is not missing: never imputed, weight re-normalised
    return X, was_missing & ~np.isnan(X)


def panel_fill(X: np.ndarray, H: np.ndarray, times: np.ndarray, t_now: float, kind: str = "linear"
               ) -> np.ndarray:
    """Each unit's value at ``t_now`` from its own time series (the other quarters ``H``, T x n x m, at
    ``times``), as COINr R/impute.R impute_panel(imp_type = "linear" | "constant"), which calls
    stats::approx(time, y, xout = time, rule = 2, method): linear between the nearest observed quarter before
    and the nearest after, y1 + (y2 - y1) (t - t1) / (t2 - t1); with only one side observed, rule = 2 takes
    that side's nearest value (so a single observation is carried, COINr's "linear-constant"). "constant"
    (approx's method = "constant", f = 0) takes the nearest earlier value, else the nearest later one. Where X
    has a value it is returned unchanged; one pass per quarter, never per cell."""
    times = np.asarray(times, float)
    shape = X.shape
    pv, pt = np.full(shape, np.nan), np.full(shape, np.nan)     # nearest observed before t_now
    nv, nt = np.full(shape, np.nan), np.full(shape, np.nan)     # nearest observed after
    for k in np.argsort(times, kind="stable"):                  # ascending: later quarters overwrite "before"
        if times[k] < t_now:
            ok = np.isfinite(H[k])
            pv, pt = np.where(ok, H[k], pv), np.where(ok, times[k], pt)
    for k in np.argsort(-times, kind="stable"):                 # descending: earlier quarters overwrite "after"
        if times[k] > t_now:
            ok = np.isfinite(H[k])
            nv, nt = np.where(ok, H[k], nv), np.where(ok, times[k], nt)
    both = np.isfinite(pv) & np.isfinite(nv)
    if kind == "constant":
        out = np.where(np.isfinite(pv), pv, nv)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            lin = pv + (nv - pv) * (t_now - pt) / (nt - pt)
        out = np.where(both, lin, np.where(np.isfinite(pv), pv, nv))
    return np.where(np.isfinite(X), X, out)


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

    Passes when |skew| < skew_max OR kurt < kurt_max (COINr's check_SkewKurt), so it fails when both reach their
    thresholds. While failing and fewer than ``winmax`` POINTS are winsorised (COINr's winmax counts points, not
    rounds: tied extremes are winsorised together and all count), the maximum value(s) are set to the
    next-highest value if skew >= 0, else the minimum value(s) to the next-lowest. As in COINr's winsorise(),
    the count is the number of points at the extreme(s) last treated at each end (points winsorised high
    earlier sit at the current maximum, so they are counted again). If it still fails, the fallback (log) is
    applied to the ORIGINAL column. Returns (treated, flags, label) with flags +1 winsorised high, -1 low,
    2 log-transformed.
    """
    x = x.copy()
    ok = np.isfinite(x)
    flags = np.zeros(len(x), dtype=np.int8)
    v = x[ok]

    def fails(a):
        sk, ku = _moments(a)
        return abs(sk) >= skew_max and ku >= kurt_max, sk

    if len(v) < 4 or not fails(v)[0]:
        return x, flags, "none"
    orig = v.copy()
    hi = lo = None          # COINr's imax / imin: positions at the extreme treated last, at each end
    nwin = 0
    while nwin < int(winmax):
        bad, sk = fails(v)
        if not bad:
            break
        if sk >= 0:
            top = v == v.max()
            if top.all():
                break
            v[top] = v[~top].max()
            hi = top
        else:
            bot = v == v.min()
            if bot.all():
                break
            v[bot] = v[~bot].min()
            lo = bot
        nwin = int((hi.sum() if hi is not None else 0) + (lo.sum() if lo is not None else 0))
    f = np.zeros(len(v), dtype=np.int8)
    if hi is not None:
        f[hi] = 1
    if lo is not None:
        f[lo] = -1
    fb = fallback_spec(fallback)
    if fails(v)[0] and fb is not None:
        fn, code, label = fallback_fit(orig, fb)
        v = fn(orig, True)
        f[:] = code
    else:
        label = f"winsorised {int((f == -1).sum())} low, {int((f == 1).sum())} high" if f.any() else "none"
    x[ok] = v
    flags[ok] = f
    return x, flags, label


FALLBACKS = {"log", "log_ct", "log_ct_plus", "boxcox"}


def fallback_spec(fallback) -> dict | None:
    """The treat section's ``fallback``: a name (log, log_CT_plus) or a mapping {method: boxcox, lambda, makepos}."""
    if fallback in (None, "none", False):
        return None
    fb = dict(fallback) if isinstance(fallback, dict) else {"method": fallback}
    fb["method"] = str(fb.get("method", "")).lower()
    if fb["method"] not in FALLBACKS:
        raise SchemeError(f"treat.fallback {fb['method']!r} 不支持（可用：log、log_CT_plus、boxcox）")
    if fb["method"] == "boxcox" and not _is_number(fb.get("lambda")):
        raise SchemeError("treat.fallback 为 boxcox 时需要数值 lambda（如 {method: boxcox, lambda: 0.5}）")
    return fb


def fallback_fit(orig: np.ndarray, fb: dict):
    """The non-linear transformation applied to the ORIGINAL column when winsorisation fails (COINr Treat(),
    combine_treat = FALSE), with its parameters fitted on ``orig`` (the pool). Returns (fn, flag code, label):
    fn(values, fitted) transforms values; for units outside the pool (fitted=False) the shift is held at the
    pool's bounds so the logarithm stays defined."""
    lo, hi = float(orig.min()), float(orig.max())
    a = 0.01 * (hi - lo)
    m = fb["method"]
    if m in ("log", "log_ct"):
        # COINr R/treat.R log_CT(): log(x - min(x) + 0.01 (max(x) - min(x)))
        return (lambda x, fitted: np.log(x - lo + a) if fitted else np.log(np.maximum(x - lo, 0) + a)), 2, "log"
    if m == "log_ct_plus":
        # COINr R/treat.R log_CT_plus(): a = 0.01 (max - min); skew(x) > 0: log(x - min + a), else the mirrored
        # -log(max + a - x), so a negatively skewed indicator is pulled the other way (skew as e1071 type 2)
        if _moments(orig)[0] > 0:
            return (lambda x, fitted: np.log(x - lo + a) if fitted else np.log(np.maximum(x - lo, 0) + a)), 2, "log"
        return (lambda x, fitted: -np.log(hi + a - x) if fitted else -np.log(np.maximum(hi - x, 0) + a)), 2, "log_neg"
    # boxcox: COINr R/treat.R boxcox(x, lambda, makepos = TRUE): makepos shifts x - min(x) + 1, then
    # log(x) if lambda == 0 else (x^lambda - 1) / lambda (no optimisation of lambda)
    lam = float(fb["lambda"])
    makepos = bool(fb.get("makepos", True))

    def boxcox(x, fitted):
        if makepos:
            x = (x - lo if fitted else np.maximum(x - lo, 0)) + 1
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log(x) if lam == 0 else (x ** lam - 1) / lam
    return boxcox, 3, "boxcox"


def treat(X: np.ndarray, u: Units, scheme: Scheme, winmax: int | None = None, pool: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Outlier treatment per indicator, decided on the ``pool`` (the units that passed screening, as COINr treats
    the screened data set): screened-out units never move the skew and kurtosis of the others. Their values
    are mapped the same way afterwards (clipped into the pool's winsorised range, or log-transformed with the
    pool's bounds), so their informational scores stay on the same scale."""
    spec = scheme.section("treat") or {}
    Xt, flags, summary = X.copy(), np.zeros(X.shape, dtype=np.int8), []
    if not spec or spec.get("method") in (None, "none"):
        return Xt, flags, summary
    wm = winmax if winmax is not None else spec.get("winmax", 5)
    whole = pool is None or pool.all()
    for j, c in enumerate(u.indicators):
        if not scheme.treated(c):
            continue
        col = X[:, j] if whole else X[pool, j]
        xt, f, label = treat_column(col, float(spec.get("skew", 2)), float(spec.get("kurt", 3.5)),
                                    _winmax(wm, int(np.isfinite(col).sum())), spec.get("fallback"))
        if whole:
            Xt[:, j], flags[:, j] = xt, f
        else:
            Xt[pool, j], flags[pool, j] = xt, f
            out = ~pool & np.isfinite(X[:, j])
            fin = np.isfinite(col)
            if out.any() and fin.any() and (f[fin] >= 2).any():
                # transformed: map the screened-out units with the pool's fitted transformation
                fn, _, _ = fallback_fit(col[fin], fallback_spec(spec.get("fallback")))
                Xt[out, j] = fn(X[out, j], False)
            elif out.any() and fin.any() and label != "none":
                Xt[out, j] = np.clip(X[out, j], xt[fin].min(), xt[fin].max())
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


def normalise_column(x: np.ndarray, m: dict, direction: int, g: Groups | None, fit: np.ndarray | None = None,
                     codes: np.ndarray | None = None) -> np.ndarray:
    """One indicator's scores. ``fit`` marks the units whose values set the relative parameters (eligible
    units); the scores are computed for every unit. ``codes`` (the unit codes) name dist2ref's reference unit."""
    method = m["method"]
    fit = np.ones(len(x), bool) if fit is None else fit
    xf = np.where(fit, x, np.nan)
    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        if method in ("dist2max", "fracmax", "dist2ref"):
            return _coinr_relative(x, xf, m, direction, g, codes)
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
            # ranks among the fitted (eligible) units, ties averaged (or `ties: min | max`, R's rank(ties.method);
            # COINr R/normalise.R n_rank() and n_prank() default to "min"); a unit outside the fit is placed
            # against the same pool, so ineligible units cannot move anyone's score
            out = np.full(len(x), np.nan)
            groups = [np.arange(len(x))] if g is None else np.split(g.perm, g.starts[1:])
            for idx in groups:
                v = x[idx] * direction
                pool = np.sort(v[fit[idx] & np.isfinite(v)])
                ok = np.isfinite(v)
                if not len(pool):
                    continue
                r = _pool_rank(pool, v[ok], m.get("ties", "average"))
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


def _pool_rank(pool_sorted: np.ndarray, v: np.ndarray, ties: str = "average") -> np.ndarray:
    """Rank (1..n, ascending) of each value among a sorted pool, ties as R's rank(ties.method): "average" (R's
    default), "min" (the lowest rank of the tied run: COINr n_rank's default) or "max"; a value that is in the
    pool gets its own tied rank, a value outside it the rank it would take if inserted."""
    below = np.searchsorted(pool_sorted, v, "left")
    upto = np.searchsorted(pool_sorted, v, "right")
    if ties == "min":
        return (below + 1).astype(float)
    if ties == "max":
        return (below + np.maximum(upto - below, 1)).astype(float)
    return below + np.maximum(upto - below, 1) / 2 + 0.5


def _coinr_relative(x: np.ndarray, xf: np.ndarray, m: dict, direction: int, g: Groups | None,
                    codes: np.ndarray | None) -> np.ndarray:
    """COINr's dist2max, fracmax and dist2ref normalisations (R/normalise.R). As COINr's Normalise.numeric(),
    the values are multiplied by the direction first; the parameters (min, max, reference) come from the fitted
    units (``xf``, NaN outside the fit); ``scale`` multiplies the result (COINr's scale is 1)."""
    method = m["method"]
    scale = float(m.get("scale", 1))
    xd, xfd = x * direction, xf * direction
    mn = _by_group(xfd, g, lambda a: np.nanmin(a), lambda a, gg: gg.reduce(a, np.fmin))
    mx = _by_group(xfd, g, lambda a: np.nanmax(a), lambda a, gg: gg.reduce(a, np.fmax))
    if method == "dist2max":
        # COINr n_dist2max(): 1 - (max(x) - x) / (max(x) - min(x)); a range of 0 gives NaN (COINr warns, NaN)
        rng = mx - mn
        out = np.where(rng > 0, 1 - (mx - xd) / np.where(rng > 0, rng, 1), np.nan)
        return np.clip(out, 0, 1) * scale        # a unit outside the fit is held to the same [0, 1]
    if method == "fracmax":
        # COINr n_fracmax(): x / max(x)
        return xd / mx * scale
    # dist2ref: COINr n_dist2ref(x, iref, cap_max): 1 - (x[iref] - x) / (x[iref] - min(x)), capped at 1 when
    # cap_max. The reference is a unit, named by its code (`ref`) or by COINr's 1-based position (`iref`).
    if "ref" in m:
        hit = np.nonzero(np.asarray(codes if codes is not None else [], dtype=object) == str(m["ref"]))[0]
        if not len(hit):
            raise SchemeError(f"dist2ref 的参照单位 {m['ref']!r} 不在数据中")
        iref = int(hit[0])
    else:
        iref = int(m["iref"]) - 1
        if not 0 <= iref < len(x):
            raise SchemeError(f"dist2ref 的 iref {m['iref']!r} 应在 1 到 {len(x)} 之间")
    xref = xd[iref]
    y = 1 - (xref - xd) / (xref - mn)
    if m.get("cap_max", False):
        y = np.where(y > 1, 1.0, y)
    return y * scale


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
        S[:, j] = normalise_column(X[:, j], m, scheme.nodes[c].direction, u.grouping(m.get("within")), fit,
                                   codes=u.codes)
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
        vals[node] = node_scores(scheme, node, vals, weights, method, floor)
    return {c: vals[c] for c in scheme.aggregates}


def node_scores(scheme: Scheme, node: str, vals: dict[str, np.ndarray], weights: dict[str, float] | None = None,
                method: str | None = None, floor: float | None = None) -> np.ndarray:
    """One aggregate's scores from its children's (``vals`` holds every node computed so far), or a derived
    node's from its two operands: ratio a / b (NaN where b is 0), product a x b, difference a - b. A derived node
    takes no weights and no aggregation override (GDI = HDI_female / HDI_male whatever the Monte Carlo draws)."""
    d = scheme.nodes[node].derive
    if d:
        a, b = vals[d["of"][0]], vals[d["of"][1]]
        with np.errstate(invalid="ignore", divide="ignore"):
            if d["op"] == "ratio":
                return np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan)
            if d["op"] == "product":
                return a * b
            return a - b
    kids = scheme.children(node)
    C = np.column_stack([vals[k] for k in kids])
    w = np.array([(weights or {}).get(k, scheme.nodes[k].weight) for k in kids], dtype=float)
    return aggregate_rows(C, w, method or scheme.aggregation_of(node), floor)


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


@dataclass
class Adjustments:
    """What adjust_scores reads that does not depend on the root score: the bonus points before max_score,
    the bonus section, the ranking's rounding and each veto rule's hits. A caller that re-scores the same
    units many times (sensitivity analysis, Monte Carlo) computes it once with ``adjustments``."""
    bonus: np.ndarray
    bspec: dict
    ranking: dict
    vetoes: list          # [(rule, hits)]


def adjustments(u: Units, scheme: Scheme, values: np.ndarray | None = None) -> Adjustments:
    def value_of(code: str) -> np.ndarray:
        if values is not None and code in u.indicators:
            return values[:, u.indicators.index(code)]
        return u.value_of(code)

    adjust = scheme.section_view("adjust") or {}     # read only
    bonus = np.zeros(u.n)
    bspec = adjust.get("bonus") or {}
    for item in bspec.get("items") or []:
        bonus += np.where(_rule_hits(value_of(item["indicator"]), item.get("op", ">="),
                                     float(item.get("value", 1))), float(item["points"]), 0.0)
    # manual bonus events (区级现场会 +2, table manual_bonus) are one more source of points, capped with the
    # items; a scheme opts out with `manual: false`
    if u.manual_bonus is not None and bspec.get("manual", True) is not False:
        bonus += np.nan_to_num(u.manual_bonus)
    if "cap" in bspec:
        bonus = np.minimum(bonus, float(bspec["cap"]))
    hits = [(v, _rule_hits(value_of(v["indicator"]), v.get("op", ">"), float(v.get("value", 0))))
            for v in adjust.get("vetoes") or []]
    return Adjustments(bonus, bspec, scheme.section_view("ranking") or {}, hits)


def adjust_scores(u: Units, scheme: Scheme, root: np.ndarray, names: bool = True, values: np.ndarray | None = None,
                  adj: Adjustments | None = None):
    """Bonus points (capped, total optionally capped) and vetoes (cap_score applied here; drop_grade and
    exclude_titles recorded for grading and awards). Returns (score, bonus, veto names, veto effects); with
    names=False (Monte Carlo) only the score is computed and the last two are None.

    Rules read the value that is scored (``values``: the imputed matrix), so a carried-forward 重大事故 both
    lowers the score and triggers its veto. The bonus returned is the one actually added (after max_score).
    ``adj``: ``adjustments(u, scheme, values)`` computed once by a caller that re-scores many times."""
    adj = adj or adjustments(u, scheme, values)
    bonus, bspec = adj.bonus, adj.bspec
    score = root + bonus
    if "max_score" in bspec:
        score = np.minimum(score, np.maximum(root, float(bspec["max_score"])))
        bonus = np.where(np.isfinite(root), score - root, bonus)
    # the bonus is published: round it by the ranking's declared rounding so max_score - root reads 1.9, not
    # 1.9000000000000057 (the score itself is untouched; ranks and grades round it themselves)
    rk = adj.ranking
    if "round" in rk:
        bonus = np.where(np.isfinite(bonus), round_scores(bonus, int(rk["round"]), rk.get("round_mode", "half_even")),
                         bonus)
    vetoes = effects = None
    if names:
        vetoes = np.empty(u.n, dtype=object)
        effects = np.empty(u.n, dtype=object)
        vetoes[:] = [()] * u.n
        effects[:] = [frozenset()] * u.n
    for v, hit in adj.vetoes:
        if names:
            for i in np.nonzero(hit)[0]:       # only the units hit, not every unit
                vetoes[i] = (*vetoes[i], v["name"])
                effects[i] = effects[i] | {v["effect"]}
        if v["effect"] == "cap_score":
            score = np.where(hit, np.minimum(score, float(v["cap"])), score)
    return score, bonus, vetoes, effects


def adjusted_score(root: np.ndarray, adj: Adjustments) -> np.ndarray:
    """``adjust_scores(..., names=False, adj=adj)[0]`` alone: the score after bonus, max_score and cap_score
    vetoes, without the published bonus (the Monte Carlo ranks the score and discards the rest)."""
    score = root + adj.bonus
    if "max_score" in adj.bspec:
        score = np.minimum(score, np.maximum(root, float(adj.bspec["max_score"])))
    for v, hit in adj.vetoes:
        if v["effect"] == "cap_score":
            score = np.where(hit, np.minimum(score, float(v["cap"])), score)
    return score


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
    # availability on the data as reported (COINr screens the raw set by default; `basis: imputed` screens the
    # imputed set, as COINr's Screen(dset = "Imputed")), by indicator count or by weight. With the raw basis the
    # units are screened FIRST, so screened-out units feed neither imputation nor treatment of the others.
    screen = scheme.section("screen") or {}
    basis = screen.get("basis", "raw")
    appl = u.applicable if u.applicable is not None else np.ones(u.X.shape, bool)

    def screened(data: np.ndarray):
        have = np.isfinite(data) & appl
        if screen.get("by", "count") == "weight":
            lw = scheme.leaf_weights()
            w = np.array([lw[c] for c in u.indicators])
            with np.errstate(invalid="ignore", divide="ignore"):
                av = (have * w).sum(axis=1) / (appl * w).sum(axis=1)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                av = have.sum(axis=1) / appl.sum(axis=1)
        av = np.nan_to_num(av, nan=0.0)
        return av, (av >= float(screen.get("min_availability", 0)) - 1e-12) & (raw_any | (basis == "imputed"))

    raw_any = np.isfinite(D).any(axis=1) if D.shape[1] else np.zeros(u.n, bool)
    if basis == "imputed":
        Xi, imp_mask = impute(D, u, scheme)
        avail, eligible = screened(Xi)
    else:
        avail, eligible = screened(D)
        Xi, imp_mask = impute(D, u, scheme, pool=eligible)
    reason = np.full(u.n, None, dtype=object)
    reason[~eligible & raw_any] = "coverage_below_min"
    reason[~eligible & ~raw_any] = "no_data"
    Xt, flags, summary = treat(Xi, u, scheme, pool=eligible)
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
        r = _pool_rank(v, np.array([x * d]), m.get("ties", "average"))
        return float((_percentile(r, len(v)) if method == "percentile" else r)[0])
    if method in ("dist2max", "fracmax"):
        return float(_coinr_relative(np.array([x]), np.concatenate([[np.nan], pool]), m, d, None, None)[0])
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
