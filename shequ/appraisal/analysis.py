"""Robustness analysis of an appraisal, as COINr does it (Becker et al. 2022, JOSS 7(78) 4567):

- ``correlation``: each indicator/aggregate against its parent, and pairwise within each parent, with COINr's
  flags (``get_corr_flags``: collinear when r > 0.9, its default; negatively correlated when r < -0.4, the
  threshold of COINr's analysis vignette ``get_corr_flags(..., cor_thresh = -0.4, thresh_type = "low")``).
- ``reliability``: Cronbach's alpha of each aggregate's children (``get_cronbach``) and the share of variance
  of the first principal component of the standardised children (``get_PCA``).
- ``sensitivity``: variance-based (Sobol) sensitivity of ranks to the assumptions the scheme declares as
  uncertain (its ``uncertainty`` section), with COINr's design and estimators (``get_sensitivity(SA_type =
  "SA")``, ``SA_sample``, ``SA_estimate``): matrices A and B of N rows, d matrices AB_i (A with column i from
  B), N(d+2) runs; first order Si = mean(yB (yABi - yA)) / var(y) (Saltelli 2010), total STi =
  sum((yA - yABi)^2) / (2 N var(y)) (Jansen 1999); var(y) over yA and yB; 5-95 % bootstrap intervals by
  resampling the N terms of each estimator. The target output is COINr's: the mean absolute rank shift of
  all units against the nominal ranks; each unit's own rank is analysed as well.
- ``optimise_weights``: weights whose importances (squared Pearson correlation of each child with the
  index, normalised to sum 1, as COINr's ``get_opt_weights``) match a target.

Plain functions over an ``Appraisal`` (a scheme run on units); no Dagster, no warehouse. ``write_quick`` and
``write_sensitivity`` store the results (tables analysis_correlation, analysis_reliability,
analysis_sensitivity).
"""

from dataclasses import dataclass

import duckdb
import numpy as np
import polars as pl

from .engine import Appraisal, adjust_scores, adjustments, aggregate_rows, normalise, rank_desc, round_scores, treat
from .scheme import Scheme, SchemeError

COLLINEAR = 0.9        # COINr get_corr_flags(cor_thresh = 0.9, thresh_type = "high") default
NEGATIVE = -0.4        # COINr analysis vignette: get_corr_flags(cor_thresh = -0.4, thresh_type = "low")


# ------------------------------------------------------------------------------------------------------
# Correlations


def _rankdata(x: np.ndarray) -> np.ndarray:
    """Average ranks (Spearman); NaN stays NaN."""
    out = np.full(len(x), np.nan)
    ok = np.isfinite(x)
    v = x[ok]
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v))
    r[order] = np.arange(1, len(v) + 1)
    # average over ties
    uniq, inv = np.unique(v, return_inverse=True)
    sums = np.bincount(inv, weights=r)
    cnt = np.bincount(inv)
    out[ok] = (sums / cnt)[inv]
    return out


def corr(a: np.ndarray, b: np.ndarray, method: str = "pearson") -> tuple[float, int]:
    """Correlation over the units where both are finite (COINr: use = "pairwise.complete.obs"); NaN when a
    side is constant or fewer than 3 units have both."""
    ok = np.isfinite(a) & np.isfinite(b)
    n = int(ok.sum())
    if n < 3:
        return float("nan"), n
    x, y = a[ok], b[ok]
    if method == "spearman":
        x, y = _rankdata(x), _rankdata(y)
    elif method != "pearson":
        raise SchemeError(f"相关方法 {method!r} 不支持（pearson 或 spearman）")
    x, y = x - x.mean(), y - y.mean()
    den = np.sqrt((x * x).sum() * (y * y).sum())
    if den == 0:
        return float("nan"), n
    return float((x * y).sum() / den), n


def _flag(r: float) -> str | None:
    if not np.isfinite(r):
        return None
    if r > COLLINEAR:
        return "collinear"
    if r < NEGATIVE:
        return "negative"
    return None


def correlation(app: Appraisal, method: str = "pearson") -> pl.DataFrame:
    """kind = parent: each node against its parent (r, no flag: a child is expected to correlate with its
    parent; negative ones are flagged); kind = within: every pair of siblings (upper triangle), flagged
    collinear (r > 0.9) or negative (r < -0.4). Eligible units only; values are the normalised indicators
    and the aggregate scores."""
    s, el = app.scheme, app.eligible
    rows = []
    for node in s.aggregates:
        kids = s.children(node)
        pv = app.node(node)[el]
        vals = {k: app.node(k)[el] for k in kids}
        for k in kids:
            r, n = corr(vals[k], pv, method)
            rows.append(("parent", k, node, node, s.nodes[k].level, r, n,
                         "negative" if np.isfinite(r) and r < NEGATIVE else None))
        for i, a in enumerate(kids):
            for b in kids[i + 1:]:
                r, n = corr(vals[a], vals[b], method)
                rows.append(("within", a, b, node, s.nodes[a].level, r, n, _flag(r)))
    return pl.DataFrame(rows, schema={"kind": pl.String, "node_a": pl.String, "node_b": pl.String,
                                      "parent_code": pl.String, "level": pl.Int32, "r": pl.Float64,
                                      "n_units": pl.Int32, "flag": pl.String}, orient="row"
                        ).with_columns(pl.lit(method).alias("method")).with_columns(pl.col("r").fill_nan(None))


# ------------------------------------------------------------------------------------------------------
# Reliability


def cronbach_alpha(C: np.ndarray) -> float:
    """Units x items, complete rows only (COINr get_cronbach: psych-free formula on complete cases)."""
    C = C[np.isfinite(C).all(axis=1)]
    k = C.shape[1]
    if k < 2 or C.shape[0] < 3:
        return float("nan")
    tot = C.sum(axis=1).var(ddof=1)
    if tot == 0:
        return float("nan")
    return float(k / (k - 1) * (1 - C.var(axis=0, ddof=1).sum() / tot))


def pc1_share(C: np.ndarray) -> float:
    """Share of the variance of the standardised items (complete rows) carried by the first principal
    component: largest squared singular value over the sum. Constant items are dropped."""
    C = C[np.isfinite(C).all(axis=1)]
    if C.shape[0] < 3:
        return float("nan")
    sd = C.std(axis=0, ddof=1)
    C = C[:, sd > 0]
    if C.shape[1] < 2:
        return float("nan")
    Z = (C - C.mean(axis=0)) / C.std(axis=0, ddof=1)
    sv = np.linalg.svd(Z, compute_uv=False)
    return float(sv[0] ** 2 / (sv ** 2).sum())


def reliability(app: Appraisal) -> pl.DataFrame:
    s, el = app.scheme, app.eligible
    rows = []
    for node in s.aggregates:
        kids = s.children(node)
        C = np.column_stack([app.node(k)[el] for k in kids])
        rows.append((node, s.nodes[node].level, len(kids), int(np.isfinite(C).all(axis=1).sum()),
                     cronbach_alpha(C), pc1_share(C)))
    return pl.DataFrame(rows, schema={"node_code": pl.String, "level": pl.Int32, "n_children": pl.Int32,
                                      "n_units": pl.Int32, "cronbach_alpha": pl.Float64, "pc1_share": pl.Float64},
                        orient="row").with_columns(pl.col("cronbach_alpha", "pc1_share").fill_nan(None))


# ------------------------------------------------------------------------------------------------------
# Sensitivity (Sobol indices)


@dataclass
class Factor:
    name: str               # Winmax | Normalisation | Weights | Aggregation (COINr's names)
    label: str              # Chinese, for people
    alternatives: list      # discrete alternatives; a draw u in [0, 1) picks alternatives[floor(u * len)]


def factors(app: Appraisal, weight_sets: int = 100, seed: int = 0) -> list[Factor]:
    """The uncertain assumptions of the scheme's ``uncertainty`` section with more than one alternative.
    Weights are COINr's ``get_noisy_weights``: ``weight_sets`` sets, each weight of a noisy level times
    (1 + U(-f, f)), drawn once; the factor picks one set (COINr: Nrep = 100, discrete)."""
    s = app.scheme
    spec = s.section("uncertainty") or {}
    out = []
    if len(spec.get("winmax") or []) > 1:
        out.append(Factor("Winmax", "异常值处理深度", list(spec["winmax"])))
    if len(spec.get("normalise") or []) > 1:
        out.append(Factor("Normalisation", "标准化方法", list(spec["normalise"])))
    noise = {int(k): float(v) for k, v in ((spec.get("weights") or {}).get("noise") or {}).items()}
    if noise:
        rng = np.random.default_rng(np.random.SeedSequence([seed, 7]))
        sets = []
        for _ in range(weight_sets):
            w = {}
            for c, node in s.nodes.items():
                f = noise.get(node.level)
                if f and node.parent is not None:
                    w[c] = node.weight * (1 + rng.uniform(-f, f))
            sets.append(w)
        out.append(Factor("Weights", "权重", sets))
    if len(spec.get("aggregation") or []) > 1:
        out.append(Factor("Aggregation", "汇总方法", list(spec["aggregation"])))
    return out


class _Model:
    """The index of every unit for one choice of each factor (treated matrices cached per winsorisation depth,
    normalised matrices per (depth, normalisation), aggregates without noisy weights per (depth,
    normalisation, aggregation)), as the Monte Carlo of mc.py computes a draw."""

    def __init__(self, app: Appraisal, facs: list[Factor]):
        self.app, self.facs = app, {f.name: f for f in facs}
        s, u = app.scheme, app.units
        spec = s.section("uncertainty") or {}
        self.noisy = set()
        if "Weights" in self.facs:
            for w in self.facs["Weights"].alternatives:
                self.noisy |= set(w)
        # the tree, once (Scheme.aggregates sorts and Scheme.children scans the nodes on every call)
        self.aggregates = s.aggregates
        self.kids = {c: s.children(c) for c in self.aggregates}
        self.fixed = {}
        for c in self.aggregates:
            self.fixed[c] = all(k not in self.noisy and (s.nodes[k].kind == "indicator" or self.fixed[k])
                                for k in self.kids[c])
        self.treated_cols = [j for j, c in enumerate(u.indicators) if s.treated(c)]
        self.adj = adjustments(u, s, app.imputed)   # bonus and veto hits: the same in every re-score
        self.floor = (s.section("aggregate") or {}).get("geometric_floor")
        self.basis = spec.get("rank_basis", (s.section("ranking") or {}).get("basis", "rounded"))
        rk = s.section("ranking") or {}
        self.digits, self.mode = int(rk.get("round", 2)), rk.get("round_mode", "half_even")
        self._treated, self._fixed = {}, {}

    def _nodes(self, wm, norm_i: int | None, agg) -> dict[str, np.ndarray]:
        key = (wm, norm_i, agg)
        if key in self._fixed:
            return self._fixed[key]
        app, s, u = self.app, self.app.scheme, self.app.units
        if wm not in self._treated:
            if wm is None:
                self._treated[wm] = app.treated
            else:
                self._treated[wm] = treat(app.imputed, u, s, winmax=wm, pool=app.eligible)[0]
        X = self._treated[wm]
        norm = self.facs["Normalisation"].alternatives[norm_i] if norm_i is not None else None
        S = app.normalised if (wm is None and norm is None) else normalise(X, u, s, fit=app.eligible,
                                                                           relative_override=norm)
        vals = {c: S[:, j] for j, c in enumerate(u.indicators)}
        for node in self.aggregates:
            if self.fixed[node]:
                kids = self.kids[node]
                C = np.column_stack([vals[k] for k in kids])
                w = np.array([s.nodes[k].weight for k in kids], dtype=float)
                vals[node] = aggregate_rows(C, w, agg or s.aggregation_of(node), self.floor)
        self._fixed[key] = vals
        return vals

    def score(self, choice: dict) -> np.ndarray:
        """The score ranks are taken on (after bonus and caps, rounded when the scheme ranks rounded scores)."""
        s, app = self.app.scheme, self.app
        vals = dict(self._nodes(choice.get("Winmax"), choice.get("Normalisation"), choice.get("Aggregation")))
        weights = choice.get("Weights") or {}
        agg = choice.get("Aggregation")
        for node in self.aggregates:
            if node in vals:
                continue
            kids = self.kids[node]
            C = np.column_stack([vals[k] for k in kids])
            w = np.array([weights.get(k, s.nodes[k].weight) for k in kids], dtype=float)
            vals[node] = aggregate_rows(C, w, agg or s.aggregation_of(node), self.floor)
        score, *_ = adjust_scores(app.units, s, vals[s.root], names=False, adj=self.adj)
        if self.basis == "rounded":
            score = round_scores(score, self.digits, self.mode)
        return np.where(app.eligible, score, np.nan)


def sa_sample(N: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """COINr SA_sample: rows = A (N), B (N), then AB_1 .. AB_d (A with column i taken from B)."""
    base = rng.random((N, 2 * d))
    A, B = base[:, :d], base[:, d:]
    blocks = [A, B]
    for i in range(d):
        ABi = A.copy()
        ABi[:, i] = B[:, i]
        blocks.append(ABi)
    return np.vstack(blocks)


def sobol(y: np.ndarray, N: int, d: int, nboot: int = 0, rng: np.random.Generator | None = None) -> dict:
    """COINr SA_estimate. y has N(d+2) values (rows of sa_sample), or N(d+2) x k (k outputs at once).
    Returns arrays of shape (d,) or (d, k): si, sti and, with nboot, their 5/95 % bootstrap quantiles."""
    y = np.asarray(y, dtype=float)
    one = y.ndim == 1
    Y = y[:, None] if one else y
    yA, yB = Y[:N], Y[N:2 * N]
    ABi = Y[2 * N:].reshape(d, N, -1)
    var = np.var(np.vstack([yA, yB]), axis=0, ddof=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        si_terms = yB[None] * (ABi - yA[None])            # d x N x k
        st_terms = (yA[None] - ABi)                        # squared in the estimator
        si = si_terms.mean(axis=1) / var
        sti = (st_terms ** 2).sum(axis=1) / (2 * N * var)
        out = {"si": si, "sti": sti, "variance": var}
        if nboot:
            rng = rng or np.random.default_rng(0)
            idx = rng.integers(0, N, size=(nboot, N))
            sib = np.stack([si_terms[:, ix].mean(axis=1) / var for ix in idx])              # nboot x d x k
            stb = np.stack([(st_terms[:, ix] ** 2).sum(axis=1) / (2 * N * var) for ix in idx])
            for name, b in (("si", sib), ("sti", stb)):
                out[f"{name}_low"] = np.quantile(b, 0.05, axis=0)     # R type 7 = numpy "linear"
                out[f"{name}_high"] = np.quantile(b, 0.95, axis=0)
    if one:
        out = {k: (v[..., 0] if np.ndim(v) else v) for k, v in out.items()}
    return out


@dataclass
class Sensitivity:
    N: int
    d: int
    runs: int
    nboot: int
    seed: int
    factors: list[Factor]
    nominal_rank: np.ndarray
    ranks: np.ndarray           # runs x units (NaN = not ranked)
    shift: np.ndarray           # runs: mean |rank - nominal rank| over ranked units (COINr's target)
    index: dict                 # sobol() of the shift
    index_half: dict            # sobol() of the shift on the first N/2 rows of A, B, AB_i (convergence)
    units: dict                 # sobol() of each unit's rank (arrays d x units)
    rank_stats: dict            # over the 2N random runs (A and B): mean, median, q_low, q_high per unit
    group: str | None


def sensitivity(app: Appraisal, N: int | None = None, seed: int | None = None, nboot: int = 100,
                weight_sets: int = 100, group: str | None = None) -> Sensitivity:
    """Sobol indices of the scheme's uncertain assumptions on ranks (see the module docstring). N defaults to
    the uncertainty section's ``sensitivity_n`` or 100 (COINr's published ASEM run); ``group`` ranks within
    a grouping column (e.g. city_code) instead of over all units."""
    s = app.scheme
    spec = s.section("uncertainty") or {}
    if not spec:
        raise SchemeError("方案没有 uncertainty 一节：没有可分析的不确定假设")
    N = int(N if N is not None else spec.get("sensitivity_n", 100))
    seed = int(seed if seed is not None else spec.get("seed", 0))
    facs = factors(app, weight_sets, seed)
    d = len(facs)
    if d < 2:
        raise SchemeError("不确定假设少于 2 个，无法做敏感性分析（COINr 同样要求 d ≥ 2）")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 11]))
    X = sa_sample(N, d, rng)
    model = _Model(app, facs)
    g = app.units.grouping(group)
    nominal = rank_desc(model.score({}), g)
    R = np.full((len(X), app.units.n), np.nan, dtype=np.float32)     # ranks < 2^24 are exact in float32
    for i, row in enumerate(X):
        choice = {}
        for f, x in zip(facs, row):
            k = min(int(x * len(f.alternatives)), len(f.alternatives) - 1)
            choice[f.name] = k if f.name == "Normalisation" else f.alternatives[k]
        R[i] = rank_desc(model.score(choice), g)
    ranked = np.isfinite(nominal)
    shift = np.nanmean(np.abs(R[:, ranked] - nominal[ranked]), axis=1, dtype=np.float64)
    boot_rng = np.random.default_rng(np.random.SeedSequence([seed, 13]))
    index = sobol(shift, N, d, nboot, boot_rng)
    h = N // 2
    rows_half = np.concatenate([np.arange(b * N, b * N + h) for b in range(d + 2)])
    index_half = sobol(shift[rows_half], h, d)
    # each unit's rank, in chunks of units so that the bootstrap's d x N x units terms stay small
    cols = np.nonzero(ranked)[0]
    full: dict = {}
    for c0 in range(0, len(cols), 2000):
        part = cols[c0:c0 + 2000]
        est = sobol(R[:, part].astype(np.float64), N, d, nboot, boot_rng)
        for k, v in est.items():
            if k == "variance":
                continue
            full.setdefault(k, np.full((d, app.units.n), np.nan))[:, part] = v
    RA = R[:2 * N].astype(np.float64)
    stats = {"mean": RA.mean(axis=0), "median": np.median(RA, axis=0),
             "q_low": np.quantile(RA, 0.05, axis=0), "q_high": np.quantile(RA, 0.95, axis=0)}
    return Sensitivity(N=N, d=d, runs=len(X), nboot=nboot, seed=seed, factors=facs, nominal_rank=nominal,
                       ranks=R, shift=shift, index=index, index_half=index_half, units=full, rank_stats=stats,
                       group=group)


def sensitivity_frame(sa: Sensitivity, app: Appraisal) -> pl.DataFrame:
    """One row per (target, factor): target 'rank_shift' (COINr's output, entity_code NULL) and one row per
    ranked unit and factor for target 'rank'."""
    def col(d: dict, k: str, i: int, j=None):
        v = d.get(k)
        if v is None:
            return None
        x = v[i] if j is None else v[i, j]
        return float(x) if np.isfinite(x) else None

    rows = []
    for i, f in enumerate(sa.factors):
        rows.append({"target": "rank_shift", "entity_code": None, "factor": f.name, "factor_label": f.label,
                     "si": col(sa.index, "si", i), "sti": col(sa.index, "sti", i),
                     "si_low": col(sa.index, "si_low", i), "si_high": col(sa.index, "si_high", i),
                     "sti_low": col(sa.index, "sti_low", i), "sti_high": col(sa.index, "sti_high", i),
                     "sti_half": col(sa.index_half, "sti", i), "nominal_rank": None})
        for j in np.nonzero(np.isfinite(sa.nominal_rank))[0]:
            rows.append({"target": "rank", "entity_code": str(app.units.codes[j]), "factor": f.name,
                         "factor_label": f.label, "si": col(sa.units, "si", i, j), "sti": col(sa.units, "sti", i, j),
                         "si_low": col(sa.units, "si_low", i, j), "si_high": col(sa.units, "si_high", i, j),
                         "sti_low": col(sa.units, "sti_low", i, j), "sti_high": col(sa.units, "sti_high", i, j),
                         "sti_half": None, "nominal_rank": int(sa.nominal_rank[j])})
    schema = {"target": pl.String, "entity_code": pl.String, "factor": pl.String, "factor_label": pl.String,
              **{k: pl.Float64 for k in ("si", "sti", "si_low", "si_high", "sti_low", "sti_high", "sti_half")},
              "nominal_rank": pl.Int32}
    return pl.DataFrame(rows, schema=schema).with_columns(
        pl.lit(sa.N, pl.Int32).alias("n_base"), pl.lit(sa.runs, pl.Int32).alias("n_runs"),
        pl.lit(sa.nboot, pl.Int32).alias("n_boot"), pl.lit(sa.seed, pl.Int64).alias("seed"),
        pl.lit(sa.group, pl.String).alias("rank_group"))


# ------------------------------------------------------------------------------------------------------
# Weight optimisation (COINr get_opt_weights)


def _importance_fn(app: Appraisal, codes: list[str]):
    """A function weights -> importances of ``codes``: squared Pearson correlation of each node with the index
    re-aggregated with those weights, normalised to sum 1. Only the ancestors of ``codes`` are re-aggregated
    (the other nodes keep the appraisal's values), over the ranked units."""
    s, el = app.scheme, app.eligible
    base = {**{c: app.normalised[el, j] for j, c in enumerate(app.units.indicators)},
            **{c: v[el] for c, v in app.nodes.items()}}
    anc = set()
    for c in codes:
        node = s.nodes[c]
        while node.parent is not None:
            anc.add(node.parent)
            node = s.nodes[node.parent]
    order = [n for n in s.aggregates if n in anc]
    floor = (s.section("aggregate") or {}).get("geometric_floor")

    def fn(weights: dict[str, float] | None = None) -> np.ndarray:
        vals = dict(base)
        for node in order:
            kids = s.children(node)
            C = np.column_stack([vals[k] for k in kids])
            w = np.array([(weights or {}).get(k, s.nodes[k].weight) for k in kids], dtype=float)
            vals[node] = aggregate_rows(C, w, s.aggregation_of(node), floor)
        root = vals[s.root]
        r2 = np.nan_to_num(np.array([corr(vals[c], root)[0] ** 2 for c in codes]))
        return r2 / r2.sum() if r2.sum() > 0 else r2

    return fn


def importances(app: Appraisal, codes: list[str], weights: dict[str, float] | None = None) -> np.ndarray:
    """Squared Pearson correlation of each node with the index (re-aggregated with ``weights``), normalised
    to sum 1 over ``codes`` (COINr get_opt_weights)."""
    return _importance_fn(app, codes)(weights)


@dataclass
class OptResult:
    weights: dict[str, float]        # in the scheme's units: the target nodes keep their total weight
    importance: dict[str, float]
    target: dict[str, float]
    max_error: float
    ok: bool
    message: str


def optimise_weights(app: Appraisal, target: dict[str, float], tolerance: float = 0.02) -> OptResult:
    """Weights of the ``target`` nodes (others unchanged) whose importances match the target shares
    (normalised to sum 1). Minimises the sum of squared differences over log-weights (COINr's get_opt_weights
    minimises the same objective with R's optim) with scipy.optimize: L-BFGS-B from the nominal weights and
    from the target shares, then Nelder-Mead from the best point, stopping once within a quarter of the
    tolerance."""
    from scipy.optimize import minimize

    s = app.scheme
    codes = list(target)
    unknown = [c for c in codes if c not in s.nodes or s.nodes[c].parent is None]
    if unknown:
        raise SchemeError(f"目标中的节点不在方案中（或是根节点）：{unknown}")
    t = np.array([float(target[c]) for c in codes])
    if (t < 0).any() or t.sum() <= 0:
        raise SchemeError("目标重要性须为非负数且不全为 0")
    t = t / t.sum()

    fn = _importance_fn(app, codes)
    # the target nodes share out their current total weight: their siblings outside the target keep theirs
    total = sum(s.nodes[c].weight for c in codes)

    def scaled(theta):
        e = np.exp(theta - theta.max())
        return e / e.sum() * total

    def imp(theta):
        return fn(dict(zip(codes, scaled(theta))))

    def obj(theta):
        return float(((imp(theta) - t) ** 2).sum())

    best = None
    starts = (np.log([max(s.nodes[c].weight, 1e-9) for c in codes]), np.log(np.maximum(t, 1e-3)))
    # L-BFGS-B (numerical gradient) first: in a dozen dimensions it converges where Nelder-Mead crawls;
    # Nelder-Mead (COINr's choice) as a fall-back from the best point found
    for method, start in (("L-BFGS-B", starts[0]), ("L-BFGS-B", starts[1]), ("Nelder-Mead", None)):
        x0 = best.x if start is None else start
        opts = {"maxiter": 500 * len(codes)} if method == "Nelder-Mead" else {"maxiter": 2000}
        res = minimize(obj, x0, method=method, bounds=[(-12, 12)] * len(codes) if method == "L-BFGS-B" else None,
                       options=opts)
        if best is None or res.fun < best.fun:
            best = res
        if np.abs(imp(best.x) - t).max() <= tolerance / 4:     # well inside the tolerance: stop here
            break
    w = scaled(best.x)
    got = imp(best.x)
    err = float(np.abs(got - t).max())
    ok = err <= tolerance
    msg = (f"已找到权重：各节点重要性与目标的最大差 {err:.4f}，在容差 {tolerance} 以内" if ok else
           f"未能在容差 {tolerance} 内达到目标（最大差 {err:.4f}）：数据中的相关结构限制了可达到的重要性")
    return OptResult(weights=dict(zip(codes, w.tolist())), importance=dict(zip(codes, got.tolist())),
                     target=dict(zip(codes, t.tolist())), max_error=err, ok=ok, message=msg)


# ------------------------------------------------------------------------------------------------------
# Storage


def _replace(con: duckdb.DuckDBPyConnection, table: str, df: pl.DataFrame, period_key: str, scheme: Scheme
             ) -> int:
    con.execute(f"DELETE FROM {table} WHERE period_key = ? AND scheme_id = ?", [period_key, scheme.scheme_id])
    if df.height:
        df = df.with_columns(pl.lit(period_key).alias("period_key"), pl.lit(scheme.scheme_id).alias("scheme_id"),
                             pl.lit(scheme.version).alias("scheme_version"))
        con.register("_an_rows", df)
        con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM _an_rows")
        con.unregister("_an_rows")
    return df.height


def write_quick(con: duckdb.DuckDBPyConnection, period_key: str, app: Appraisal) -> dict[str, int]:
    """Correlations (Pearson) and reliability of one quarter: cheap, run on every refresh."""
    return {"analysis_correlation": _replace(con, "analysis_correlation", correlation(app), period_key, app.scheme),
            "analysis_reliability": _replace(con, "analysis_reliability", reliability(app), period_key, app.scheme)}


def write_sensitivity(con: duckdb.DuckDBPyConnection, period_key: str, app: Appraisal, sa: Sensitivity) -> int:
    return _replace(con, "analysis_sensitivity", sensitivity_frame(sa, app), period_key, app.scheme)
