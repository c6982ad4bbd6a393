"""Appraisal schemes (models/schemes/*.yaml): the declarative description of one composite index and its
三级评比 rules. Everything a weight, a method or a quota is lives in the scheme file; this module only reads
and validates it. The format is documented in models/schemes/README.md.

A scheme has a tree of nodes (indicator -> category -> ... -> index, any depth). Indicators come from an
inline list, a CSV table next to the scheme (COINr iMeta style), or the warehouse catalogue
(models/catalogue/indicators.csv) with per-direction defaults and per-indicator overrides.
"""

import copy
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import yaml

from ..config import DEFAULT_SCHEME

NORMALISERS = {"minmax", "zscore", "rank", "percentile", "goalposts", "distance_to_target", "target", "deduction",
               "ordinal", "flag", "band", "identity", "dist2max", "fracmax", "dist2ref"}
RELATIVE = {"minmax", "zscore", "rank", "percentile", "distance_to_target",   # depend on the other units
            "dist2max", "fracmax", "dist2ref"}
AGGREGATIONS = {"arithmetic", "geometric", "harmonic"}
DERIVE_OPS = {"ratio", "product", "difference"}   # a node computed from two other nodes' scores (GDI = ratio)
IMPUTERS = {"mean", "median", "group_mean", "group_median", "last_value", "constant", "panel"}
VETO_EFFECTS = {"exclude_titles", "drop_grade", "cap_score"}


class SchemeError(ValueError):
    pass


@dataclass
class Node:
    code: str
    name: str
    parent: str | None
    weight: float = 1.0
    kind: str = "indicator"            # indicator | aggregate | derived
    direction: int = 1                 # +1 higher is better, -1 lower is better
    denominator: str | None = None     # unit column the raw value is divided by (COINr Denominate)
    normalise: dict = field(default_factory=dict)   # method + params; {} = the scheme default
    treat: bool | None = None          # None = scheme default (relative methods only)
    aggregation: str | None = None     # aggregates only; None = scheme default
    level: int = 1                     # 1 = indicator; an aggregate is 1 + its highest child level
    derive: dict | None = None         # derived nodes: {op: ratio | product | difference, of: [a, b]}


@dataclass
class Scheme:
    scheme_id: str
    version: str
    name: str
    doc: dict                      # the parsed file, for steps read directly (awards, uncertainty, ...)
    nodes: dict[str, Node]         # code -> node, indicators and aggregates
    root: str
    path: Path | None = None
    digest: str = ""

    # ---- tree --------------------------------------------------------------------------------------
    @property
    def indicators(self) -> list[str]:
        return [c for c, n in self.nodes.items() if n.kind == "indicator"]

    @property
    def aggregates(self) -> list[str]:
        """Aggregates and derived nodes bottom-up: every child (and every operand of a derived node) is computed
        before the node that uses it."""
        return sorted((c for c, n in self.nodes.items() if n.kind in ("aggregate", "derived")),
                      key=lambda c: (self.nodes[c].level, c))

    def children(self, code: str) -> list[str]:
        return [c for c, n in self.nodes.items() if n.parent == code]

    def level_name(self, level: int) -> str:
        names = self.doc.get("level_names") or {}
        return str(names.get(level, names.get(str(level), f"level{level}")))

    def section(self, name: str, default=None):
        return _copy(self.doc.get(name, default))

    def section_view(self, name: str, default=None):
        """The section itself, not a copy: for the engine's hot paths that only read it (a sensitivity analysis
        re-scores hundreds of times per quarter, each asking for several sections). Never mutate the result."""
        return self.doc.get(name, default)

    def method_of(self, code: str) -> dict:
        m = dict(self.section_view("normalise", {"method": "minmax", "lo": 0, "hi": 100}))
        own = self.nodes[code].normalise
        if own:
            if own.get("method") and own["method"] != m.get("method"):
                m = {}
            m.update(own)
        return m

    def aggregation_of(self, code: str) -> str:
        if self.nodes[code].derive:
            return self.nodes[code].derive["op"]
        return self.nodes[code].aggregation or (self.section_view("aggregate") or {}).get("method", "arithmetic")

    def treated(self, code: str) -> bool:
        t = self.section_view("treat") or {}
        if not t or t.get("method") in (None, "none"):
            return False
        own = self.nodes[code].treat
        if own is not None:
            return own
        scope = t.get("apply_to", "relative")
        return scope == "all" or self.method_of(code)["method"] in RELATIVE

    def leaf_weights(self) -> dict[str, float]:
        """Each indicator's effective share of the root (product of normalised weights down the tree)."""
        out = {}
        for code in self.indicators:
            share, node = 1.0, self.nodes[code]
            while node.parent is not None:
                sibs = self.children(node.parent)
                total = sum(self.nodes[s].weight for s in sibs)
                share *= node.weight / total if total else 0.0
                node = self.nodes[node.parent]
            out[code] = share
        return out

    def to_frame(self) -> pl.DataFrame:
        return pl.DataFrame([{"code": n.code, "name": n.name, "parent": n.parent, "kind": n.kind, "level": n.level,
                              "weight": n.weight, "direction": n.direction,
                              "method": self.method_of(n.code)["method"] if n.kind == "indicator" else None,
                              "aggregation": self.aggregation_of(n.code) if n.kind == "aggregate" else None}
                             for n in self.nodes.values()])


def _direction(v) -> int:
    if v in (None, "", "higher_better", "ordinal_higher_better", "flag_true_good", "target_band"):
        return 1
    if v in ("lower_better", "flag_false_good"):
        return -1
    try:
        d = int(float(v))
    except (TypeError, ValueError):
        raise SchemeError(f"方向 {v!r} 无法识别（应为 1/-1 或 higher_better/lower_better）") from None
    if d not in (1, -1):
        raise SchemeError(f"方向 {v!r} 应为 1 或 -1")
    return d


def _from_table(path: Path) -> list[dict]:
    df = pl.read_csv(path, infer_schema_length=0)
    rows = []
    for r in df.iter_rows(named=True):
        kind = (r.get("kind") or r.get("Type") or "indicator").lower()
        if kind in ("group", "denominator"):
            continue
        rows.append({"code": r.get("code") or r.get("iCode"), "name": r.get("name") or r.get("iName"),
                     "parent": r.get("parent") or r.get("Parent") or None,
                     "weight": float(r.get("weight") or r.get("Weight") or 1),
                     "direction": r.get("direction") or r.get("Direction"),
                     "denominator": r.get("denominator") or r.get("Denominator") or None,
                     "kind": "aggregate" if kind in ("aggregate",) else "indicator"})
    return rows


def _from_catalogue(spec: dict) -> list[dict]:
    from ..catalogue import load_catalogue

    cat = load_catalogue()
    exclude = set(spec.get("exclude") or ())
    parents = spec.get("parent_from", "category")
    defaults = spec.get("defaults") or {}
    overrides = spec.get("overrides") or {}
    unknown = set(overrides) - set(cat["code"].to_list())
    if unknown:
        raise SchemeError(f"overrides 中的指标不在目录中：{sorted(unknown)}")
    rows = []
    for r in cat.iter_rows(named=True):
        if r["code"] in exclude or r["direction"] == "context":
            continue
        if r["level"] not in (None, "community", "compound"):
            continue
        d = copy.deepcopy(defaults.get(r["direction"]) or defaults.get("*") or {})
        o = copy.deepcopy(overrides.get(r["code"]) or {})
        if o.get("method") and o["method"] != d.get("method"):
            d = {}
        d.update(o)
        weight = float(d.pop("weight", 1.0))
        treat = d.pop("treat", None)
        rows.append({"code": r["code"], "name": r["name_zh"], "parent": r[parents], "weight": weight,
                     "direction": d.pop("direction", r["direction"]), "normalise": d, "treat": treat,
                     "kind": "indicator", "valid_min": r["valid_min"], "valid_max": r["valid_max"]})
    return rows


def _copy(v):
    """A deep copy of a value parsed from YAML (dicts, lists and immutable scalars). Written by hand because
    copy.deepcopy's memo bookkeeping made Scheme.section, called tens of thousands of times by a refresh (each
    sensitivity re-score asks for its sections), a visible cost; anything else falls back to copy.deepcopy."""
    if isinstance(v, dict):
        return {k: _copy(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return copy.deepcopy(v)


# YAML text -> parsed document. A refresh loads the same scheme several times per quarter (ranking, sensitivity,
# the report's veto texts); PyYAML's parser is pure Python and was ~0.15 s a load. Keyed by the text itself,
# so an edited file is parsed again; every caller gets its own copy.
_PARSED: dict[str, object] = {}


def parse_yaml(text: str):
    if text not in _PARSED:
        if len(_PARSED) >= 32:
            _PARSED.clear()
        _PARSED[text] = yaml.safe_load(text)
    return _copy(_PARSED[text])


def load_scheme(path: Path | str = DEFAULT_SCHEME) -> Scheme:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        doc = parse_yaml(text)
    except (OSError, yaml.YAMLError) as e:
        raise SchemeError(f"评价方案 {path} 无法读取：{e}") from e
    if not isinstance(doc, dict):
        raise SchemeError(f"评价方案 {path} 不是 YAML 映射")
    for key in ("scheme_id", "version", "tree"):
        if key not in doc:
            raise SchemeError(f"评价方案 {path} 缺少字段 {key}")
    tree = doc["tree"]
    raw: list[dict] = []
    if tree.get("table"):
        raw += _from_table(path.parent / tree["table"])
    raw += [dict(n, kind=n.get("kind", "aggregate")) for n in tree.get("nodes") or []]
    ind = doc.get("indicators") or {}
    if ind.get("from_catalogue"):
        raw += _from_catalogue(ind)
    for n in ind.get("list") or []:
        raw.append(dict(n, kind="indicator"))
    nodes: dict[str, Node] = {}
    for r in raw:
        code = str(r["code"])
        if code in nodes:
            raise SchemeError(f"评价方案 {path}：节点 {code} 重复定义")
        norm = r.get("normalise") or {k: r[k] for k in ("method",) if r.get(k)}
        if isinstance(norm, str):
            norm = {"method": norm}
        derive = r.get("derive")
        if derive is not None:
            derive = _derive_spec(path, code, derive)
        nodes[code] = Node(code=code, name=str(r.get("name") or code), parent=r.get("parent") or None,
                           weight=float(r.get("weight", 1.0)),
                           kind="derived" if derive else r.get("kind", "indicator"),
                           direction=_direction(r.get("direction")), denominator=r.get("denominator") or None,
                           normalise=dict(norm), treat=r.get("treat"), aggregation=r.get("aggregation"),
                           derive=derive)
    roots = [c for c, n in nodes.items() if n.parent is None]
    root = tree.get("root") or (roots[0] if len(roots) == 1 else None)
    if root is None or root not in nodes:
        raise SchemeError(f"评价方案 {path}：树必须恰有一个根节点（找到 {roots}）")
    for c, n in nodes.items():
        if n.parent is not None and n.parent not in nodes:
            raise SchemeError(f"评价方案 {path}：节点 {c} 的上级 {n.parent} 不存在")
        if n.weight < 0:
            raise SchemeError(f"评价方案 {path}：节点 {c} 的权重为负")
    has_child = {n.parent for n in nodes.values()}
    for c, n in nodes.items():
        if n.kind == "aggregate" and c not in has_child:
            raise SchemeError(f"评价方案 {path}：汇总节点 {c} 没有下级")
        if n.kind == "indicator" and c in has_child:
            raise SchemeError(f"评价方案 {path}：指标 {c} 不能有下级")
        if n.derive:
            for k in n.derive["of"]:
                if k not in nodes:
                    raise SchemeError(f"评价方案 {path}：派生节点 {c} 引用的节点 {k} 不存在")
                if k == c:
                    raise SchemeError(f"评价方案 {path}：派生节点 {c} 不能引用自身")
            stray = [k for k, m in nodes.items() if m.parent == c and k not in n.derive["of"]]
            if stray:
                raise SchemeError(f"评价方案 {path}：派生节点 {c} 的下级 {stray} 不是它的运算对象 {n.derive['of']}"
                                  f"（派生节点由 of 中的节点计算，不做加权汇总）")

    def level(c: str, seen=()) -> int:
        if c in seen:
            raise SchemeError(f"评价方案 {path}：树中有环（{c}）")
        kids = [k for k, n in nodes.items() if n.parent == c]
        if nodes[c].derive:        # a derived node comes after every node it is computed from
            kids = list(dict.fromkeys([*kids, *nodes[c].derive["of"]]))
        return 1 if not kids else 1 + max(level(k, (*seen, c)) for k in kids)

    for c in nodes:
        nodes[c].level = level(c)
    scheme = Scheme(scheme_id=str(doc["scheme_id"]), version=str(doc["version"]), name=str(doc.get("name", "")),
                    doc=doc, nodes=nodes, root=root, path=path,
                    digest=hashlib.sha256(text.encode()).hexdigest()[:12])
    _validate(scheme)
    return scheme


def _derive_spec(path, code: str, d) -> dict:
    """A derived node's `derive: {op: ratio | product | difference, of: [a, b]}` (score = a / b, a x b, a - b)."""
    if not isinstance(d, dict):
        raise SchemeError(f"评价方案 {path}：节点 {code} 的 derive 应为映射，如 {{op: ratio, of: [HDI_f, HDI_m]}}")
    op = d.get("op")
    if op not in DERIVE_OPS:
        raise SchemeError(f"评价方案 {path}：派生节点 {code} 的运算 {op!r} 不支持（可用：ratio 比值、product 乘积、"
                          f"difference 差值）")
    of = d.get("of")
    if not isinstance(of, list) or len(of) != 2:
        raise SchemeError(f"评价方案 {path}：派生节点 {code} 的 of 应恰好列出两个节点（如 [HDI_f, HDI_m]），"
                          f"而不是 {of!r}")
    return {"op": op, "of": [str(k) for k in of]}


def _validate(s: Scheme) -> None:
    from .engine import fallback_spec

    where = f"评价方案 {s.path}"
    for c in s.indicators:
        m = s.method_of(c)
        if m.get("method") not in NORMALISERS:
            raise SchemeError(f"{where}：指标 {c} 的计分方法 {m.get('method')!r} 不支持（可用：{sorted(NORMALISERS)}）")
        if m["method"] == "dist2ref":
            if "ref" not in m and "iref" not in m:
                raise SchemeError(f"{where}：指标 {c} 的 dist2ref 方法需要参照单位 ref（单位代码）或 iref（序号）")
            if m.get("within"):
                raise SchemeError(f"{where}：指标 {c} 的 dist2ref 方法只有一个参照单位，不能按 within 分组")
        if m["method"] in ("rank", "percentile") and m.get("ties", "average") not in ("average", "min", "max"):
            raise SchemeError(f"{where}：指标 {c} 的 ties 应为 average、min 或 max")
        if m["method"] in ("target", "deduction", "distance_to_target") and "target" not in m:
            raise SchemeError(f"{where}：指标 {c} 的 {m['method']} 方法需要 target")
        if m["method"] in ("goalposts", "band") and not {"min", "max"} <= set(m):
            raise SchemeError(f"{where}：指标 {c} 的 goalposts 需要 min 与 max")
        if m["method"] == "ordinal" and not m.get("map"):
            raise SchemeError(f"{where}：指标 {c} 的 ordinal 方法需要 map")
    for c in s.aggregates:
        if s.nodes[c].derive:
            continue
        if s.aggregation_of(c) not in AGGREGATIONS:
            raise SchemeError(f"{where}：节点 {c} 的汇总方法 {s.aggregation_of(c)!r} 不支持")
    for step in s.section("impute") or []:
        if step.get("method") not in IMPUTERS:
            raise SchemeError(f"{where}：插补方法 {step.get('method')!r} 不支持（可用：{sorted(IMPUTERS)}）")
        if step["method"] == "panel" and step.get("type", "linear") not in ("linear", "constant"):
            raise SchemeError(f"{where}：面板插补 panel 的 type 应为 linear（线性插值）或 constant（取前一个季度）")
        if step["method"] == "panel" and not (isinstance(step.get("window", 4), int) and step.get("window", 4) >= 1):
            raise SchemeError(f"{where}：面板插补 panel 的 window（前后各取几个季度）应为正整数，而不是 "
                              f"{step.get('window')!r}")
    try:
        fallback_spec((s.section("treat") or {}).get("fallback"))
    except SchemeError as e:
        raise SchemeError(f"{where}：{e}") from None
    for v in (s.section("adjust") or {}).get("vetoes") or []:
        if v.get("effect") not in VETO_EFFECTS:
            raise SchemeError(f"{where}：否决项 {v.get('name')} 的效果 {v.get('effect')!r} 不支持")
    for t in (s.section("awards") or {}).get("tiers") or []:
        q = t.get("quota") or {}
        if not ({"count", "share"} & set(q)):
            raise SchemeError(f"{where}：称号层级 {t.get('tier')} 的 quota 需要 count 或 share")
        if q.get("of", "ranked") not in ("ranked", "candidates"):
            raise SchemeError(f"{where}：称号层级 {t.get('tier')} 的 quota.of 应为 ranked（范围内全部参与排名的社区）"
                              f"或 candidates（范围内本层级的候选者，如已获区级称号者），而不是 {q.get('of')!r}")
    ranking = s.section("ranking") or {}
    if ranking.get("basis", "rounded") not in ("rounded", "full"):
        raise SchemeError(f"{where}：ranking.basis 应为 rounded 或 full")
    if ranking.get("ties", "min") not in ("min", "dense", "ordinal"):
        raise SchemeError(f"{where}：ranking.ties 应为 min、dense 或 ordinal")
