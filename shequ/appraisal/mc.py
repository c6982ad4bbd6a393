"""Uncertainty analysis: Monte Carlo over the choices a scheme declares as uncertain (winsorisation depth,
normalisation, weights, aggregation), as COINr's get_sensitivity(SA_type = "UA") does.

Each draw re-treats (per winsorisation depth), re-normalises the relative indicators, re-aggregates with noisy
weights and re-ranks. What a draw computes that does not depend on its noisy weights is computed once, for the
configurations (depth, normalisation, aggregation) the draws pick: each indicator column and each category once
per distinct input (bit for bit), the index's summands once per configuration, and a category's ranks once per
configuration; a draw re-aggregates only the index, adjusts, rounds and ranks it. The configurations are set up
and drawn group by group (one winsorisation depth and normalisation at a time), so only one depth's treated
matrix and, per normalisation, one group's categories and index are held (issue 11: holding every configuration's
arrays at once put the ranking stage at 9.4 GB at 600,000 units). Every shortcut
gives the plain computation's bits (tests/test_monte_carlo_fast_paths.py re-runs the whole engine per draw).
Per unit and ranked series the result is the mean, median and declared quantiles (R type 7) of its rank over
the draws. Draw i uses its own generator spawned from the scheme's seed, so the result does not depend on
thread scheduling: same seed, same numbers.

Draws run in chunks of CHUNK (issue 11: 200 draws x 600,000 units x 8 series held as one array peaked at 11 GB);
after each chunk the ranks are folded into per-series counts (RankCounts), so peak memory does not grow with the
draw count. Ranks are small integers, so exact quantiles come from the counts: the k-th smallest rank of a
unit is the first rank value whose running count exceeds k, identical to sorting the unit's draws.
"""

import contextlib
import ctypes
import hashlib
import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .engine import (Appraisal, Groups, adjusted_score, adjustments, aggregate_rows, node_scores, normalise_column,
                     round_scores, treat)
from .scheme import RELATIVE, SchemeError


@dataclass
class Series:
    """One ranked list followed through the draws: a node ranked within a grouping (None = all units)."""
    name: str
    node: str
    group: str | None
    mask: np.ndarray | None = None      # units ranked in this series (e.g. a tier's candidates); None = eligible


@dataclass
class AreaSeries:
    """Areas (streets, districts) scored in every draw as the mean of their eligible members' index scores
    (areas: member_mean) and ranked within their parent area, as store._area_rows does for the nominal run."""
    name: str
    members: Groups                     # units grouped by area (area i = members.labels[i])
    parent: np.ndarray                  # per area: the parent's code (rank scope)
    eligible: np.ndarray                # per area: ranked (coverage >= areas.min_coverage and a score)


@dataclass
class Uncertainty:
    draws: int
    seed: int
    params: list[dict]                         # what each draw used
    stats: dict[str, dict[str, np.ndarray]]    # series name -> {mean, median, q_low, q_high}; area series too
    quantiles: tuple[float, float]


def _ranks_in_order(order: np.ndarray, score: np.ndarray, mask: np.ndarray, g: Groups | None) -> np.ndarray:
    """Competition ranks (1 = best, ties share the best rank, as the nominal ranking) of the masked units
    within each group of g, given the units already sorted by descending score (one sort per node serves
    every series of that node). Units outside the mask get rank 0 (masked later)."""
    o = order[mask[order] & np.isfinite(score[order])]
    if g is None:
        return _ranks_sorted(o, None, score)
    gi = _group_key(g)[o]
    o2 = np.argsort(gi, kind="stable")    # a radix sort on 16-bit keys: same order as on the int64 ones
    return _ranks_sorted(o[o2], gi[o2], score)


def _ranks_sorted(o: np.ndarray, go: np.ndarray | None, score: np.ndarray) -> np.ndarray:
    """Ranks from the ranked units ``o`` sorted by group (``go``, None = one group), then descending score."""
    n = len(score)
    if go is None:
        go = np.zeros(len(o), np.int64)
    vals = score[o]
    pos = np.arange(len(o), dtype=np.int64)
    new_g = np.r_[True, go[1:] != go[:-1]] if len(o) else np.zeros(0, bool)
    gstart = np.maximum.accumulate(np.where(new_g, pos, 0)) if len(o) else pos
    new_run = new_g | np.r_[True, vals[1:] != vals[:-1]] if len(o) else new_g
    r = np.zeros(n, dtype=np.int32)
    if len(o):
        r[o] = (np.maximum.accumulate(np.where(new_run, pos, 0)) - gstart + 1).astype(np.int32)
    return r


def _ranks_of_series(order: np.ndarray, score: np.ndarray, masks: list[np.ndarray], whole: list[bool],
                     groups: list[Groups | None]) -> list[np.ndarray]:
    """``[_ranks_in_order(order, score, m, g) for m, g in zip(masks, groups)]`` with the work shared: ``score``
    is NaN outside the units every mask lies within, and ``whole[k]`` says mask k is all of them. Without
    infinities the ranked units are a prefix of ``order`` (NaN sorts last); each grouping is sorted once, and a
    series ranking a subset takes its units from that sequence in the same order (a stable sort of a subsequence
    is the subsequence of the stable sort)."""
    if np.isinf(score).any():
        return [_ranks_in_order(order, score, m, g) for m, g in zip(masks, groups)]
    o_all = order[:int(np.isfinite(score).sum())]
    by_group: dict[int, tuple] = {}
    out = []
    for m, full, g in zip(masks, whole, groups):
        if id(g) not in by_group:
            if g is None:
                by_group[id(g)] = (o_all, None)
            else:
                gi = _group_key(g)[o_all]
                o2 = np.argsort(gi, kind="stable")
                by_group[id(g)] = (o_all[o2], gi[o2])
        o, go = by_group[id(g)]
        if not full:
            sel = m[o]
            o, go = o[sel], (go[sel] if go is not None else None)
        out.append(_ranks_sorted(o, go, score))
    return out


def _desc_order(v: np.ndarray, digits: int | None) -> np.ndarray:
    """``np.argsort(-v, kind="stable")`` (NaN last). Scores rounded to ``digits`` are exactly k / 10**digits for
    integers k; when every finite score is, and their k span fewer than 65,535 values, the same permutation comes
    from a stable sort of 16-bit keys (numpy's radix sort: at 600,000 units about ten times faster than its
    timsort on floats). Anything else (infinities, unrounded scores, a wider span) takes the float sort."""
    if digits is not None and digits <= 6:
        fin = np.isfinite(v)
        if not np.isinf(v).any() and fin.any():
            f = 10.0 ** digits
            k = np.rint(v[fin] * f)
            lo, hi = k.min(), k.max()
            if hi - lo < 65535 and np.array_equal(k / f, v[fin]):
                key = np.full(len(v), 65535, np.uint16)
                key[fin] = (hi - k).astype(np.uint16)        # the highest score first; NaN (65535) last
                return np.argsort(key, kind="stable")
    return np.argsort(-v, kind="stable")


def _group_key(g: Groups) -> np.ndarray:
    """The group index of each unit in the narrowest integer type that holds it, cached on the grouping. A stable
    argsort of 8- or 16-bit integers is numpy's radix sort (several times faster than its timsort on int64) and
    gives the same permutation, since a stable sort's result does not depend on the algorithm."""
    key = g.__dict__.get("_mc_key")
    if key is None:
        key = g.inv.astype(np.uint16) if g.n <= 2**16 else g.inv
        g._mc_key = key
    return key


def free_heap() -> None:
    """Hand the C heap's freed pages back to the operating system (glibc's malloc_trim). Once glibc has raised
    its mmap threshold, numpy arrays of a few MB (one column of 600,000 units) come from the heap, and freed ones
    stay in the process's resident memory (issue 11: a configuration group's arrays, freed, still counted in the
    next one's peak). Python and numpy do not expose malloc_trim; elsewhere than glibc this does nothing."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


CHUNK = 10     # draws held at once (ranks of every series for these draws), then folded into counts


@dataclass
class Prepared:
    """What ``aggregate_rows(C, w, method, floor)`` computes from C alone, for a node re-aggregated with new
    weights in many draws from the same children (the index over cached categories): the mask of scored
    children, the summands before weighting (C with missing cells 0, or its logarithm for the geometric mean)
    and each row's pattern of scored children, so the weight total is summed once per pattern, not per row.
    ``prepared_rows`` then gives aggregate_rows' result bit for bit (tests/test_monte_carlo_fast_paths.py)."""
    method: str
    ok: np.ndarray
    A: np.ndarray
    all_ok: bool
    pat_ok: np.ndarray | None          # distinct rows of ok (None: rows summed one by one)
    pat_inv: np.ndarray | None


def prepare_rows(C: np.ndarray, method: str, floor: float | None = None) -> Prepared | None:
    """None for a method without a prepared form (harmonic): the caller uses aggregate_rows."""
    ok = np.isfinite(C)
    with np.errstate(invalid="ignore", divide="ignore"):
        if method == "arithmetic":
            A = np.where(ok, C, 0.0)
        elif method == "geometric":
            Cg = C if floor is None else np.where(ok, np.maximum(C, floor), C)
            if (Cg[ok] <= 0).any():
                raise SchemeError("几何平均遇到 0 或负值：请把该层的标准化下限设为正数（如 minmax lo: 1），"
                                  "或在方案中声明 aggregate.geometric_floor")
            A = np.where(ok, np.log(np.where(ok, Cg, 1.0)), 0.0)
        else:
            return None
    pat_ok = pat_inv = None
    if 0 < C.shape[1] <= 62:
        key = ok.astype(np.int64) @ (np.int64(1) << np.arange(C.shape[1], dtype=np.int64))   # exact integers
        _, first, pat_inv = np.unique(key, return_index=True, return_inverse=True)
        pat_ok = ok[first]
    return Prepared(method, ok, A, bool(ok.all()), pat_ok, pat_inv)


def prepared_rows(p: Prepared, w: np.ndarray) -> np.ndarray:
    """aggregate_rows(C, w, p.method, floor) from prepare_rows(C, p.method, floor)."""
    if p.pat_ok is not None:
        # a row's weight total depends only on which children it has: the same row sum, once per pattern
        tot = np.where(p.pat_ok, w, 0.0).sum(axis=1)[p.pat_inv]
    else:
        tot = np.where(p.ok, w, 0.0).sum(axis=1)
    # A is 0 where a child is missing, so A * w equals A * where(ok, w, 0) cell by cell when every weight is
    # positive and finite (0 * w = +0.0 = 0 * 0); otherwise the masked weights are used
    Wm = w if (np.isfinite(w).all() and (w > 0).all()) else np.where(p.ok, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        if p.method == "arithmetic":
            num = p.A @ w if p.all_ok else (p.A * Wm).sum(axis=1)
            out = num / tot
        else:
            out = np.exp((p.A * Wm).sum(axis=1) / tot)
    return np.where(tot > 0, out, np.nan)


@dataclass
class Setup:
    """What the draws of a group of configurations read that does not depend on their weights."""
    key_of: dict          # (node, combo) -> key
    value: dict           # key -> scores (fixed nodes a draw reads)
    prepared: dict        # key -> Prepared (or the children, for aggregate_rows)
    plain_values: dict    # indicator columns of the plain path
    fixed_ranks: dict     # key -> ranks of a fixed node's series


def run_uncertainty(app: Appraisal, series: list[Series], draws: int | None = None, seed: int | None = None,
                    threads: int | None = None, areas: list[AreaSeries] = (), chunk: int = CHUNK
                    ) -> Uncertainty:
    """``areas``: streets / districts re-scored from each draw's community index scores and ranked within their
    parent; their statistics are returned under the area series' names (ranks of the areas, in label order)."""
    n_threads = threads or min(2, os.cpu_count() or 1)
    ex = ThreadPoolExecutor(n_threads) if n_threads > 1 else None
    try:     # the pool serves the set-up and the draws; shut down however they end
        return _uncertainty(app, series, draws, seed, areas, chunk, ex.map if ex is not None else map)
    finally:
        if ex is not None:
            ex.shutdown()


def _uncertainty(app: Appraisal, series: list[Series], draws: int | None, seed: int | None,
                 areas: list[AreaSeries], chunk: int, pmap) -> Uncertainty:
    scheme, u = app.scheme, app.units
    spec = scheme.section("uncertainty") or {}
    draws = int(draws if draws is not None else spec.get("draws", 100))
    seed = int(seed if seed is not None else spec.get("seed", 0))
    q_lo, q_hi = (float(x) for x in spec.get("quantiles", [0.05, 0.95]))
    winmaxes = spec.get("winmax") or [None]
    norms = spec.get("normalise") or [None]
    aggs = spec.get("aggregation") or [None]
    noise = {int(k): float(v) for k, v in ((spec.get("weights") or {}).get("noise") or {}).items()}
    basis = spec.get("rank_basis", (scheme.section("ranking") or {}).get("basis", "rounded"))
    digits = int((scheme.section("ranking") or {}).get("round", 2))
    mode = (scheme.section("ranking") or {}).get("round_mode", "half_even")
    floor = (scheme.section("aggregate") or {}).get("geometric_floor")

    # Every draw's generator, and the first three numbers it gives (winsorisation depth, normalisation,
    # aggregation), drawn up front in the same order as before: the draws' choices are known before any work,
    # so only the configurations some draw uses are computed. The weights come from the same generator later.
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(draws)]
    picks = []
    for rng in rngs:
        wi = int(rng.integers(len(winmaxes)))
        ni = int(rng.integers(len(norms)))
        picks.append((wi, ni, int(rng.integers(len(aggs)))))
    combos = sorted(set(picks))

    # Configurations are set up and drawn one group at a time (issue 11: every configuration's treated matrix,
    # categories and prepared index held at once, beside the rank counts, peaked at several GB at 600,000
    # units). A group is the configurations sharing a winsorisation depth and a normalisation: one depth's
    # treated matrix is held at a time, and a group's categories and prepared index only while its draws run.
    # The draws fill the same chunk buffer across groups, so the buffer (and the peak) does not grow with the
    # draw count. The counts add up the same in any order of the draws (RankCounts is exact) and draw i uses
    # its own generator, so taking the draws group by group changes no bit of the result.
    #
    # A depth that leaves a column bit for bit as the previous depth did shares that version (canon), and so does
    # everything computed from it: a group looks up the prepared index and category ranks the previous group of
    # its normalisation computed (carry) before computing its own. Columns are compared by a digest of their
    # bits, since the previous depth's matrix is no longer held.
    treated_js = {j for j, c in enumerate(u.indicators) if scheme.treated(c)}
    treated: dict[int, np.ndarray] = {}          # the current depth's treated matrix only (columns as u.indicators)
    canon: dict[tuple[int, int], int] = {}       # (depth, column) -> the depth whose version it shares
    version: dict[int, tuple[bytes, int]] = {}   # column -> (digest, depth) of its latest version

    def set_depth(wi: int) -> None:
        treated.clear()
        treated[wi] = T = treat_at(wi)
        for j in sorted(treated_js):
            # the bits (NaN payloads and the sign of zero included): the same input to a deterministic step
            d = hashlib.blake2b(np.ascontiguousarray(T[:, j]).view(np.uint8), digest_size=32).digest()
            if version.get(j, (None,))[0] != d:
                version[j] = (d, wi)
            canon[(wi, j)] = version[j][1]

    def treat_at(wi: int) -> np.ndarray:
        # the whole matrix, read by column: taking the treated columns out would copy it (0.3 GB at 600,000)
        if winmaxes[wi] is None:
            return app.treated
        return treat(app.imputed, u, scheme, winmax=winmaxes[wi], pool=app.eligible)[0]

    relative = {j: scheme.method_of(c)["method"] in RELATIVE for j, c in enumerate(u.indicators)}

    def col_key(j: int, wi: int, ni: int) -> tuple:
        """What indicator j's normalised scores depend on in a configuration."""
        return (j, canon[(wi, j)] if j in treated_js else None, ni if relative[j] and norms[ni] is not None else None)

    def col_value(key: tuple) -> np.ndarray:
        j, wi, ni = key
        c = u.indicators[j]
        m = scheme.method_of(c)
        if ni is not None:
            m = {**norms[ni], "within": m.get("within")}
        # the current depth's column: bit for bit the version of depth wi it shares
        x = next(iter(treated.values()))[:, j] if wi is not None else app.imputed[:, j]
        return normalise_column(x, m, scheme.nodes[c].direction, u.grouping(m.get("within")), app.eligible,
                                codes=u.codes)

    level = {c: scheme.nodes[c].level for c in scheme.nodes}
    parent = {c: scheme.nodes[c].parent for c in scheme.nodes}
    aggregates = scheme.aggregates                # (sorted on every access)
    # An aggregate whose subtree has no noisy weight depends only on (winsorisation depth, normalisation,
    # aggregation): it is computed once per such combination and reused by every draw that picks it. For the
    # community scheme that is every category, so a draw only re-aggregates the index.
    fixed: dict[str, bool] = {}
    for c in aggregates:
        if scheme.nodes[c].derive:       # no weights of its own: fixed when its operands are
            fixed[c] = all(scheme.nodes[k].kind == "indicator" or fixed[k] for k in scheme.nodes[c].derive["of"])
            continue
        fixed[c] = all(noise.get(level[k]) is None and (scheme.nodes[k].kind == "indicator" or fixed[k])
                       for k in scheme.children(c))
    kids_of = {c: (scheme.nodes[c].derive["of"] if scheme.nodes[c].derive else scheme.children(c))
               for c in aggregates}
    fixed_nodes = [c for c in aggregates if fixed[c]]
    depth: dict[str, int] = {}
    for c in fixed_nodes:
        depth[c] = 1 + max((depth.get(k, 0) for k in kids_of[c]), default=0)
    # Non-fixed nodes whose children are all fixed (the index): prepared once per configuration of children.
    # Indicators feeding a non-fixed node, and non-fixed nodes over non-fixed children, take the plain path.
    fast = {c: not fixed[c] and not scheme.nodes[c].derive and all(
        scheme.nodes[k].kind != "indicator" and fixed[k] for k in kids_of[c]) for c in aggregates}
    plain_cols = {j for j, c in enumerate(u.indicators) if any(
        not fixed[a] and not fast[a] and c in kids_of[a] for a in aggregates)}
    # fixed nodes a draw reads: the root when it is fixed, children of nodes on the plain path
    needed = {c for c in aggregates if fixed[c] and (c == scheme.root or any(
        not fixed[a] and not fast[a] and c in kids_of[a] for a in aggregates))}

    groups = [u.grouping(s.group) for s in series]
    masks = [app.eligible & (s.mask if s.mask is not None else True) for s in series]
    by_node: dict[str, list[int]] = {}
    for k, s in enumerate(series):
        by_node.setdefault(s.node, []).append(k)
    key_digits = digits if basis == "rounded" else None

    def node_ranks(v: np.ndarray, ks: list[int]) -> list[np.ndarray]:
        if basis == "rounded":
            v = round_scores(v, digits, mode)
        v = np.where(app.eligible, v, np.nan)
        order = _desc_order(v, key_digits)   # NaN last; one sort per node
        # each series ranks its own units (eligible units, or a tier's candidates)
        return _ranks_of_series(order, v, [masks[k] for k in ks], [series[k].mask is None for k in ks],
                                [groups[k] for k in ks])

    # Series of a fixed node (a category's tier) rank the same scores in every draw of a configuration: ranked
    # once per distinct node value
    fixed_series = [(node, ks) for node, ks in by_node.items()
                    if fixed.get(node, False) and node != scheme.root]

    by_depth = sorted(fixed_nodes, key=lambda c: depth[c])

    def configure(cfg: list[tuple], carry: Setup | None) -> Setup:
        # Every node's key in every configuration first (what its value is computed from, by key): keys are cheap,
        # values are not. A prepared index or a category's ranks the previous group (carry) computed from the same
        # keys is taken over; only the values the rest needs are computed.
        key_of: dict[tuple, tuple] = {}
        for combo in cfg:
            wi, ni, ai = combo
            for node in by_depth:
                kk = tuple(("col",) + col_key(u.indicators.index(k), wi, ni)
                           if scheme.nodes[k].kind == "indicator" else key_of[(k, combo)] for k in kids_of[node])
                key_of[(node, combo)] = (node, aggs[ai] if not scheme.nodes[node].derive else None, kk)
            for c in aggregates:
                if fast[c]:
                    key_of[(c, combo)] = (c, aggs[ai], tuple(key_of[(k, combo)] for k in kids_of[c]))
        old = carry or Setup({}, {}, {}, {}, {})
        prepared: dict[tuple, Prepared | None] = {}
        for combo in cfg:
            for c in aggregates:
                if fast[c]:
                    pk = key_of[(c, combo)]
                    prepared.setdefault(pk, old.prepared.get(pk))
        pkeys = [k for k, v in prepared.items() if v is None]          # to compute
        fixed_ranks: dict[tuple, list[np.ndarray]] = {}
        tasks = []
        for node, key in dict.fromkeys((node, key_of[(node, combo)]) for node, _ in fixed_series for combo in cfg):
            if key in old.fixed_ranks:
                fixed_ranks[key] = old.fixed_ranks[key]
            else:
                tasks.append((node, key))
        keep = {key_of[(c, combo)] for c in needed for combo in cfg}
        value: dict[tuple, np.ndarray] = {k: old.value[k] for k in keep if k in old.value}
        del old, carry          # what the previous group computed and this one does not read is freed here
        # the values to compute: what the preparations, the ranks and the draws read, and their children
        want: set = set()
        stack = [k for pk in pkeys for k in pk[2]] + [k for _, k in tasks] + [k for k in keep if k not in value]
        while stack:
            k = stack.pop()
            if k[0] != "col" and k not in want and k not in value:
                want.add(k)
                stack.extend(k[2])

        # Fixed nodes, bottom-up, one node per task: configurations that differ only where the node does not
        # look share one computation. Indicator columns live only while their parent is computed.
        def node_task(node: str) -> None:
            cols: dict[tuple, np.ndarray] = {}
            for combo in cfg:
                key = key_of[(node, combo)]
                if key not in want or key in value:
                    continue
                vals = {}
                for k, ck in zip(kids_of[node], key[2]):
                    if ck[0] == "col":
                        if ck not in cols:
                            cols[ck] = col_value(ck[1:])
                        vals[k] = cols[ck]
                    else:
                        vals[k] = value[ck]
                value[key] = node_scores(scheme, node, vals, None, aggs[combo[2]], floor)

        for d in sorted(set(depth.values())):
            list(pmap(node_task, [c for c in fixed_nodes if depth[c] == d]))

        plain_values: dict[tuple, np.ndarray] = {}
        for combo in cfg:
            for j in plain_cols:
                ck = ("col",) + col_key(j, combo[0], combo[1])
                if ck not in plain_values:
                    plain_values[ck] = col_value(ck[1:])

        def rank_task(t):
            node, key = t
            fixed_ranks[key] = node_ranks(value[key], by_node[node])
        list(pmap(rank_task, tasks))

        # The prepared nodes, each freeing the children values no later preparation or draw reads (the values
        # and the prepared summands are not all held at once)
        uses = Counter(k for pk in pkeys for k in set(pk[2]))
        for key in [k for k in value if k not in keep and not uses[k]]:
            del value[key]
        uses_lock = threading.Lock()

        def prep_task(pk: tuple) -> None:
            node, agg, kk = pk
            C = np.column_stack([value[k] for k in kk])
            prepared[pk] = prepare_rows(C, agg or scheme.aggregation_of(node), floor)
            if prepared[pk] is None:      # no prepared form: keep the children for aggregate_rows
                prepared[pk] = C
            with uses_lock:
                for k in set(kk):
                    uses[k] -= 1
                    if not uses[k] and k not in keep:
                        del value[k]
        list(pmap(prep_task, pkeys))
        return Setup(key_of, value, prepared, plain_values, fixed_ranks)

    def combo_vals(st: Setup, combo) -> dict[str, np.ndarray]:
        vals = {}
        for c in needed:
            vals[c] = st.value[st.key_of[(c, combo)]]
        for j in plain_cols:
            vals[u.indicators[j]] = st.plain_values[("col",) + col_key(j, combo[0], combo[1])]
        return vals

    acc = [RankCounts(u.n, draws, m, g) for m, g in zip(masks, groups)]
    area_groups = [Groups(a.parent) for a in areas]
    area_acc = [RankCounts(a.members.n, draws, a.eligible, ag) for a, ag in zip(areas, area_groups)]
    elig_finite = app.eligible & np.isfinite(app.score)      # members counted in the nominal area means
    a_counts = {a.name: np.bincount(a.members.inv, weights=elig_finite.astype(float), minlength=a.members.n)
                for a in areas}
    params: list[dict] = [{}] * draws
    adj = adjustments(u, scheme, app.imputed)    # bonus points and veto hits: the same in every draw

    def one(i: int, ranks: list[np.ndarray], aranks: list[np.ndarray], row: int, st: Setup) -> None:
        rng = rngs[i]
        combo = picks[i]
        key_of, prepared, fixed_ranks = st.key_of, st.prepared, st.fixed_ranks
        w, ni, agg = winmaxes[combo[0]], combo[1], aggs[combo[2]]
        weights = {}
        for c, node in scheme.nodes.items():
            f = noise.get(level[c])
            if f and parent[c] is not None:
                weights[c] = node.weight * (1 + rng.uniform(-f, f))
        vals = combo_vals(st, combo)
        for node in aggregates:
            if fixed[node]:
                continue
            if fast[node]:
                p = prepared[key_of[(node, combo)]]
                wv = np.array([weights.get(k, scheme.nodes[k].weight) for k in kids_of[node]], dtype=float)
                vals[node] = prepared_rows(p, wv) if isinstance(p, Prepared) else \
                    aggregate_rows(p, wv, agg or scheme.aggregation_of(node), floor)
            else:
                vals[node] = node_scores(scheme, node, vals, weights, agg, floor)
        score = adjusted_score(vals[scheme.root], adj)
        for node, ks in by_node.items():
            if fixed.get(node, False) and node != scheme.root:     # the root ranks the adjusted score
                got = fixed_ranks[key_of[(node, combo)]]
            else:
                got = node_ranks(score if node == scheme.root else vals[node], ks)
            for k, r in zip(ks, got):
                ranks[k][row] = r
        if areas:
            # the area score is the mean of the eligible members' (unrounded) index scores, as _area_rows; one
            # bincount per level (sequential over the units: ~6x faster than a gather by group at 600,000 units)
            ok_u = app.eligible & np.isfinite(score)
            member = np.where(ok_u, score, 0.0)
            same = np.array_equal(ok_u, elig_finite)
            for a, ag, R in zip(areas, area_groups, aranks):
                cnt = a_counts[a.name] if same else \
                    np.bincount(a.members.inv, weights=ok_u.astype(float), minlength=a.members.n)
                with np.errstate(invalid="ignore", divide="ignore"):
                    v = np.where(cnt > 0, np.bincount(a.members.inv, weights=member, minlength=a.members.n)
                                 / np.maximum(cnt, 1), np.nan)
                if basis == "rounded":
                    v = round_scores(v, digits, mode)
                ok = a.eligible & np.isfinite(v)
                v = np.where(ok, v, np.nan)
                R[row] = _ranks_in_order(_desc_order(v, key_digits), v, ok, ag)
        params[i] = {"winmax": w, "normalise": (norms[ni] or {}).get("method"), "aggregation": agg,
                     "weights": {k: round(v, 6) for k, v in weights.items()}}

    held = min(chunk, draws)
    ranks = [np.zeros((held, u.n), dtype=np.int32) for _ in series]
    aranks = [np.zeros((held, a.members.n), dtype=np.int32) for a in areas]

    def fold(rows: int) -> None:
        # each series folds into its own counts: in parallel (numpy's indexing releases the GIL)
        list(pmap(lambda aR: aR[0].add(aR[1][:rows]), zip(acc + area_acc, ranks + aranks)))

    fill = 0
    carry: dict[int, Setup] = {}      # per normalisation: the last group's set-up
    for wi in sorted({c[0] for c in combos}):
        set_depth(wi)
        for ni in sorted({c[1] for c in combos if c[0] == wi}):
            st = configure([c for c in combos if c[:2] == (wi, ni)], carry.pop(ni, None))
            carry[ni] = st
            todo = [i for i in range(draws) if picks[i][:2] == (wi, ni)]
            while todo:
                take, todo = todo[:held - fill], todo[held - fill:]
                rows = range(fill, fill + len(take))
                list(pmap(lambda ir: one(ir[0], ranks, aranks, ir[1], st), zip(take, rows)))
                fill += len(take)
                if fill == held:
                    fold(held)
                    fill = 0
            del st
            free_heap()
    treated.clear()
    carry.clear()
    if fill:
        fold(fill)
    del ranks, aranks
    stats = {}
    for s, a, m in zip(series, acc, masks):
        stats[s.name] = a.stats(m, (q_lo, q_hi))
    for a, ac in zip(areas, area_acc):
        stats[a.name] = ac.stats(a.eligible, (q_lo, q_hi))
    return Uncertainty(draws=draws, seed=seed, params=params, stats=stats, quantiles=(q_lo, q_hi))


class RankCounts:
    """Per unit, how many draws gave it each rank: the exact distribution of its rank, in memory that does not
    grow with the draw count. Written by hand (no library keeps exact per-row integer histograms in a window).

    A series whose ranks never exceed WINDOW - 1 (a street, a district of up to WINDOW - 1 units) keeps dense
    counts of ranks 0..max. Larger scopes keep, per unit, WINDOW counts for ranks base..base+WINDOW-1, the window
    centred on the ranks of the first chunk; the rare rank outside its unit's window is kept as a (unit, rank)
    pair and merged exactly at the end. Rank 0 means "not ranked in that draw" (no finite score) and counts like
    any other value, as it did when whole draw arrays were sorted."""

    WINDOW = 128

    def __init__(self, n: int, draws: int, mask: np.ndarray, g: Groups | None):
        self.n, self.draws = n, draws
        self.units = np.flatnonzero(mask)              # only these units' statistics are reported
        biggest = n if g is None else (int(g.counts.max()) if g.n else 0)
        self.width = min(biggest + 1, self.WINDOW)
        self.dense = biggest + 1 <= self.WINDOW
        self.base: np.ndarray | None = np.zeros(len(self.units), np.int64) if self.dense else None
        dtype = np.uint8 if draws < 2**8 else np.uint16 if draws < 2**16 else np.uint32
        self.counts = np.zeros((len(self.units), self.width), dtype)
        self.total = np.zeros(len(self.units), np.int64)
        # ranks outside the window, as sorted distinct keys (position in units) * (n + 1) + rank with their counts:
        # bounded by the distinct (unit, rank) pairs, not by the draws
        self.out_key = np.zeros(0, np.int64)
        self.out_cnt = np.zeros(0, np.int64)

    def add(self, R: np.ndarray) -> None:
        """Fold a chunk of draws (chunk x n ranks) into the counts."""
        # chunk x units, kept in int32 as R is (ranks are at most n): the chunk's temporaries are half the size
        # of int64 ones, and the integer results are the same
        V = R[:, self.units].astype(np.int32, copy=False)
        self.total += V.sum(axis=0, dtype=np.int64)
        if self.base is None:                          # centre each unit's window on its first ranks
            lo, hi = V.min(axis=0).astype(np.int64), V.max(axis=0).astype(np.int64)
            self.base = np.maximum(0, (lo + hi) // 2 - self.width // 2)
        off = V - self.base.astype(np.int32)
        inside = (off >= 0) & (off < self.width)
        flat = self.counts.reshape(-1)                 # a view: units x width, row-major
        nu = len(self.units)
        all_in = bool(inside.all())
        # one draw gives each unit one rank: no repeated index in one increment. Units are taken in blocks whose
        # counts fit in the cache (a unit's counts are a row of `width`: incrementing all units' rows draw after
        # draw touched a new cache line and page per unit, about 3x slower at 100,000 units)
        step = max(1024, 2**21 // self.width)
        for s in range(0, nu, step):
            e = min(s + step, nu)
            idx = off[:, s:e] + np.arange(s * self.width, e * self.width, self.width, dtype=np.int64)
            for d in range(V.shape[0]):
                flat[idx[d] if all_in else idx[d][inside[d, s:e]]] += 1
        if not inside.all():
            r, c = np.nonzero(~inside)
            keys, inv = np.unique(np.concatenate([self.out_key, c * (self.n + 1) + V[r, c]]), return_inverse=True)
            cnt = np.bincount(inv, weights=np.r_[self.out_cnt, np.ones(len(c), np.int64)], minlength=len(keys))
            self.out_key, self.out_cnt = keys, cnt.astype(np.int64)

    def _kth(self, ks: list[int], block: int = 65_536) -> list[np.ndarray]:
        """The k-th smallest rank (0-based) of every unit, for each k."""
        res = [np.empty(len(self.units), np.int64) for _ in ks]
        for s in range(0, len(self.units), block):   # blocks of units bound the running-count array
            cum = np.cumsum(self.counts[s:s + block], axis=1, dtype=np.int32)
            for r, k in zip(res, ks):
                r[s:s + block] = self.base[s:s + block] + (cum <= k).sum(axis=1)
        if len(self.out_key):   # units with ranks outside their window: merge window and outside ranks exactly
            # Per such unit, its ranks in order are: those below its window (L of them), the window's (W), those
            # above. The k-th is the below-rank whose running count passes k, else the window rank whose running
            # count passes k - L, else the above-rank whose running count passes k - L - W. Vectorised over the
            # units (a Python loop per unit took seconds when many units of a large scope moved far)
            ou, orank = self.out_key // (self.n + 1), self.out_key % (self.n + 1)   # sorted by unit, then rank
            ocnt = self.out_cnt
            units, inv = np.unique(ou, return_inverse=True)
            below = orank < self.base[ou]
            L = np.bincount(inv, weights=np.where(below, ocnt, 0), minlength=len(units)).astype(np.int64)
            cw = np.cumsum(self.counts[units], axis=1, dtype=np.int64)           # window running counts
            W = cw[:, -1]
            # running count of the outside ranks within their unit and side (below, above), before each entry
            side = np.where(below, 0, 1)
            seg = inv * 2 + side                                               # entries are sorted by seg
            csum = np.cumsum(ocnt)
            seg_start = np.r_[True, seg[1:] != seg[:-1]]
            first = np.maximum.accumulate(np.where(seg_start, np.arange(len(seg)), 0))
            before = csum - ocnt - (csum[first] - ocnt[first])
            for r, k in zip(res, ks):
                v = self.base[units] + (cw <= k - L[:, None]).sum(axis=1)      # the window case
                kk = np.where(below, k, k - L[inv] - W[inv])                   # k within the entry's side
                hit = (before <= kk) & (kk < before + ocnt)
                hb = hit & below & (k < L[inv])
                ha = hit & ~below & (k >= L[inv] + W[inv])
                v[inv[hb]] = orank[hb]
                v[inv[ha]] = orank[ha]
                r[units] = v
        return res

    def stats(self, eligible: np.ndarray, q: tuple[float, float]) -> dict:
        """Mean, median and quantiles (R type 7, as _rank_stats) of each unit's rank over the draws."""
        n, draws = self.n, self.draws
        if not draws:
            nan = np.full(n, np.nan)
            return {"mean": nan, "median": nan, "q_low": nan, "q_high": nan}
        ps = [0.5, q[0], q[1]]
        pos = []
        for p in ps:
            h = (draws - 1) * p
            lo = int(np.floor(h))
            pos.append((h, lo, min(lo + 1, draws - 1)))
        kth = dict(zip(sorted({k for _, lo, hi in pos for k in (lo, hi)}),
                       self._kth(sorted({k for _, lo, hi in pos for k in (lo, hi)}))))
        res = {"mean": np.full(n, np.nan)}
        res["mean"][self.units] = self.total / draws     # exact integer sum / draws == mean of the draws
        for name, (h, lo, hi) in zip(("median", "q_low", "q_high"), pos):
            out = np.full(n, np.nan)
            a, b = kth[lo].astype(np.int32), kth[hi].astype(np.int32)
            out[self.units] = a + (h - lo) * (b.astype(np.float64) - a)
            res[name] = out
        for k in res:
            res[k] = np.where(eligible, res[k], np.nan)
        return res


def _rank_stats(R: np.ndarray, eligible: np.ndarray, q: tuple[float, float]) -> dict:
    """Mean, median and quantiles (R type 7: linear between order statistics) of each unit's rank over the
    draws. Sorting each unit's draws once (units x draws, contiguous) is much faster than np.quantile along the
    draw axis of a draws x units array."""
    draws, n = R.shape
    if not draws:
        nan = np.full(n, np.nan)
        return {"mean": nan, "median": nan, "q_low": nan, "q_high": nan}
    T = np.ascontiguousarray(R.T)
    T.sort(axis=1)

    def quant(p: float) -> np.ndarray:
        h = (draws - 1) * p
        lo = int(np.floor(h))
        hi = min(lo + 1, draws - 1)
        return T[:, lo] + (h - lo) * (T[:, hi].astype(np.float64) - T[:, lo])

    res = {"mean": T.mean(axis=1, dtype=np.float64), "median": quant(0.5), "q_low": quant(q[0]),
           "q_high": quant(q[1])}
    for k in res:
        res[k] = np.where(eligible, res[k], np.nan)
    return res
