"""Find the reason codes the code base emits, by reading its source (AST), for the reason-code tests.

A string is a reason code when it flows into a reason position:
- the first argument of ``FileRejected(...)``, ``_reject(...)`` / ``Parsed(..., reason=...)``, any argument of
  ``self._reject(...)`` and the fourth of ``HeaderMatch(...)``;
- the value of a ``"reason_code"`` dict key;
- a ``pl.lit("...")`` anywhere inside an expression ending in ``.alias("...reason...")``;
- the value assigned to a name or item whose name contains ``reason`` (``reason, msg = "unknown_district", ...``);
- the second element of a ``return (None, "...")`` in periods.py (a period that is not a quarter);
- module constants (``UNPARSEABLE = "unparseable_value"``) used in any of those positions;
- a code followed by its Chinese message in a tuple or an argument list (``("h", None, ..., "unknown_header",
  f"未知表头 ...")``), except the few words that heuristic also catches (``NOT_CODES``).
"""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COLUMN_NAMES = {"reason", "reason_code"}   # rename({"reason_code": "reason"}) names columns, not codes
# words the "code, Chinese message" heuristic catches that are not reason codes (JSON key names, a column label)
NOT_CODES = {"raw", "street", "community", "indicator", "period", "value", "unit",
             "streets", "communities", "indicators", "values", "email"}   # JSON keys and header words
CJK = re.compile(r"[\u4e00-\u9fff]")
CODE = re.compile(r"^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$")


def _strings(node) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)
            and CODE.match(n.value)]


def _names(node) -> list[str]:
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name)] + \
           [n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)]


def _target_names(t) -> list[str]:
    if isinstance(t, ast.Name):
        return [t.id]
    if isinstance(t, ast.Subscript):
        return _target_names(t.value)
    if isinstance(t, ast.Attribute):
        return [t.attr]
    if isinstance(t, (ast.Tuple, ast.List)):
        return [n for e in t.elts for n in _target_names(e)]
    return []


def _chinese(node) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return bool(CJK.search(node.value))
    return isinstance(node, ast.JoinedStr) and any(_chinese(v) for v in node.values)


def _func_name(call: ast.Call) -> str:
    f = call.func
    return f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""


def scan_file(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    consts: dict[str, list[str]] = {}
    for node in tree.body:  # module constants, including A, B = "a", "b"
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                    consts[t.id] = [node.value.value]
                elif isinstance(t, ast.Tuple) and isinstance(node.value, ast.Tuple):
                    for a, b in zip(t.elts, node.value.elts):
                        if isinstance(a, ast.Name) and isinstance(b, ast.Constant) and isinstance(b.value, str):
                            consts[a.id] = [b.value]
    found: set[str] = set()

    def take(node, only_first=False):
        parts = [node] if not only_first else [node]
        for p in parts:
            found.update(_strings(p))
            for n in _names(p):
                found.update(c for c in consts.get(n, []) if CODE.match(c))

    for node in ast.walk(tree):
        seq = node.elts if isinstance(node, (ast.Tuple, ast.List)) else node.args if isinstance(node, ast.Call) else []
        for a, b in zip(seq, seq[1:]):
            if isinstance(a, ast.Constant) and isinstance(a.value, str) and CODE.match(a.value) and _chinese(b) \
                    and a.value not in NOT_CODES:
                found.add(a.value)
        if isinstance(node, ast.Call):
            name = _func_name(node)
            if name in ("FileRejected", "_reject", "reject") and node.args:
                if isinstance(node.func, ast.Attribute) and name == "_reject":   # self._reject(path, rel, ..., reason, msg)
                    for a in node.args:
                        if isinstance(a, ast.Constant) and isinstance(a.value, str) and CODE.match(a.value):
                            found.add(a.value)
                        elif isinstance(a, ast.Name) and a.id in consts:
                            found.update(consts[a.id])
                else:
                    take(node.args[0])
            if name == "HeaderMatch" and len(node.args) >= 4:
                take(node.args[3])
            for kw in node.keywords:
                if kw.arg in ("reason", "reason_code"):
                    take(kw.value)
            if name == "alias" and node.args and isinstance(node.args[0], ast.Constant) \
                    and "reason" in str(node.args[0].value):
                for sub in ast.walk(node.func):
                    if isinstance(sub, ast.Call) and _func_name(sub) in ("lit", "fill_null") and sub.args:
                        take(sub.args[0])
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value in ("reason_code", "reason"):
                    take(v)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = [n for t in targets for n in _target_names(t)]
            if node.value is not None and any("reason" in n.lower() for n in names):
                if isinstance(node.value, ast.Tuple) and len(targets) == 1 and isinstance(targets[0], ast.Tuple):
                    for t, v in zip(targets[0].elts, node.value.elts):
                        if any("reason" in n.lower() for n in _target_names(t)):
                            take(v)
                else:
                    take(node.value)
        elif isinstance(node, ast.Return) and node.value is not None and path.name == "periods.py":
            for tup in ast.walk(node.value):
                if isinstance(tup, ast.Tuple) and len(tup.elts) == 2 and isinstance(tup.elts[0], ast.Constant) \
                        and tup.elts[0].value is None:
                    take(tup.elts[1])
    return found - COLUMN_NAMES


# modules that never write a reason: the fuzzer names its mutation classes ("long_string", "变异…") in the same
# "code, Chinese label" shape the heuristic looks for
NOT_EMITTERS = {"fuzz.py"}


def codes_in_source() -> dict[str, set[str]]:
    """reason code -> the source files (relative) that emit it."""
    out: dict[str, set[str]] = {}
    for path in sorted((ROOT / "shequ").rglob("*.py")):
        if path.name in NOT_EMITTERS:
            continue
        for code in scan_file(path):
            out.setdefault(code, set()).add(str(path.relative_to(ROOT)))
    return out


if __name__ == "__main__":
    for code, files in sorted(codes_in_source().items()):
        print(code, sorted(files))
