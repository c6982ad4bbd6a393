"""Registry and alias edits by command: `shequ registry add|rename|merge`, `shequ alias add`.

models/registry/communities.csv, community_aliases.csv, community_lineage.csv and models/catalogue/header_aliases.csv
are the single source of truth (git-tracked, nothing regenerates them). These commands validate an edit, write the
CSV, and append an audit row to models/registry/changes.csv: who, when (Asia/Shanghai), what, why and the
previous value. The next refresh loads the registry into dim_community (a rename or merge closes one version and
opens the next; the warehouse keeps every version).
"""

import csv
import datetime as dt
import json
import os
import re
import unicodedata
from pathlib import Path

from .config import CATALOGUE_CSV, HEADER_ALIASES_CSV, REGISTRY_DIR
from .corrections import InputError, now_shanghai

COMMUNITIES = "communities.csv"
ALIASES = "community_aliases.csv"
LINEAGE = "community_lineage.csv"
CHANGES = "changes.csv"
CHANGE_COLUMNS = ["changed_at", "changed_by", "action", "file", "key", "previous_value", "new_value", "reason"]
COMMUNITY_TYPES = ("居委会", "村代居", "城市村")


# ------------------------------------------------------------------ CSV files
def read_csv(path: Path) -> tuple[list[str], list[dict]]:
    with open(path, encoding="utf-8", newline="") as fh:
        r = csv.DictReader(fh)
        return list(r.fieldnames or []), list(r)


def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Whole file, written beside and moved into place (never half-written)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k, "") or "" for k in columns})
    os.replace(tmp, path)


def log_change(registry_dir: Path, by: str, action: str, file: str, key: str, previous: dict | None,
               new: dict | None, reason: str) -> dict:
    path = Path(registry_dir) / CHANGES
    row = {"changed_at": now_shanghai().isoformat(sep=" "), "changed_by": by, "action": action, "file": file,
           "key": key, "previous_value": json.dumps(previous, ensure_ascii=False) if previous else "",
           "new_value": json.dumps(new, ensure_ascii=False) if new else "", "reason": reason}
    new_file = not path.exists()
    with open(path, "a", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=CHANGE_COLUMNS, lineterminator="\n")
        if new_file:
            w.writeheader()
        w.writerow(row)
    return row


def _required(v, what: str) -> str:
    if v is None or not str(v).strip():
        raise InputError(f"必须填写{what}")
    return str(v).strip()


def _date(text: str | None, what: str) -> str:
    if not text:
        return now_shanghai().date().isoformat()
    try:
        return dt.date.fromisoformat(text.strip()).isoformat()
    except ValueError:
        raise InputError(f"{what}「{text}」不是日期（格式 2024-07-01）") from None


def _valid_on(r: dict, day: str) -> bool:
    return r["valid_from"] <= day and (not r["valid_to"] or r["valid_to"] > day)


def _norm(s: str) -> str:
    return unicodedata.normalize("NFKC", s or "").replace(" ", "").replace("\u3000", "")


def find_community(rows: list[dict], text: str, day: str | None = None) -> dict:
    """The registry row (the version valid on ``day``, default the open one) for a code, a name, or 名称（街道）."""
    text = _required(text, "社区（名称、名称（街道）或 12 位代码）")
    m = re.match(r"^(.+?)[（(](.+?)[)）]$", text)
    name, street = (m.group(1).strip(), m.group(2).strip()) if m else (text, None)
    cand = [r for r in rows if r["community_code"] == text
            or (r["name"] in (name, name + "社区") and (street is None or r["street"] in (street, street + "街道")))]
    cand = [r for r in cand if (_valid_on(r, day) if day else not r["valid_to"])]
    codes = {r["community_code"] for r in cand}
    if len(codes) == 1:
        return cand[0]
    if len(codes) > 1:
        raise InputError(f"社区「{text}」有 {len(codes)} 个同名社区："
                         + "、".join(f"{r['name']}（{r['street']}，{r['community_code']}）" for r in cand)
                         + "；请写成 名称（街道）或用 12 位代码")
    import difflib

    names = sorted({(r["name"], r["street"]) for r in rows if not r["valid_to"]})
    close = difflib.get_close_matches(name, [n for n, _ in names], n=3, cutoff=0.5)
    hint = "，是否为：" + "、".join(f"{n}（{s}）" for n, s in names if n in close) + "？" if close else ""
    raise InputError(f"未知社区「{text}」：登记表中没有{'该日期有效的' if day else '现存的'}这个社区{hint}")


# ------------------------------------------------------------------ validation (the CSVs as a whole)
def validate(registry_dir: Path = REGISTRY_DIR, header_aliases: Path = HEADER_ALIASES_CSV,
             catalogue: Path = CATALOGUE_CSV) -> None:
    """Raise InputError (Chinese) when the registry or alias files contradict themselves."""
    registry_dir = Path(registry_dir)
    _, comms = read_csv(registry_dir / COMMUNITIES)
    seen, errors = set(), []
    for i, r in enumerate(comms, start=2):
        if not re.fullmatch(r"\d{12}", r["community_code"] or ""):
            errors.append(f"{COMMUNITIES} 第 {i} 行：社区代码「{r['community_code']}」应为 12 位数字")
        elif not r["community_code"].startswith(r["street_code"] or "-"):
            errors.append(f"{COMMUNITIES} 第 {i} 行：社区代码 {r['community_code']} 的前 9 位应为街道代码 {r['street_code']}")
        if (r["community_code"], r["valid_from"]) in seen:
            errors.append(f"{COMMUNITIES} 第 {i} 行：社区 {r['community_code']} 自 {r['valid_from']} 的版本重复")
        seen.add((r["community_code"], r["valid_from"]))
        if r["valid_to"] and r["valid_to"] <= r["valid_from"]:
            errors.append(f"{COMMUNITIES} 第 {i} 行：失效日期 {r['valid_to']} 不晚于生效日期 {r['valid_from']}")
        if r["community_type"] not in COMMUNITY_TYPES:
            errors.append(f"{COMMUNITIES} 第 {i} 行：社区类型「{r['community_type']}」应为 {'、'.join(COMMUNITY_TYPES)} 之一")
    # two open versions, or overlapping ones, of one community
    by_code: dict[str, list[dict]] = {}
    for r in comms:
        by_code.setdefault(r["community_code"], []).append(r)
    for code, vs in by_code.items():
        vs = sorted(vs, key=lambda r: r["valid_from"])
        for a, b in zip(vs, vs[1:]):
            if not a["valid_to"] or a["valid_to"] > b["valid_from"]:
                errors.append(f"{COMMUNITIES}：社区 {code} 的版本 {a['valid_from']} 与 {b['valid_from']} 有效期重叠")
    # a name appears once per street among the versions valid on any one day (checked on version starts)
    for r in comms:
        day = r["valid_from"]
        same = {x["community_code"] for x in comms if x["street_code"] == r["street_code"] and x["name"] == r["name"]
                and _valid_on(x, day)}
        if len(same) > 1:
            errors.append(f"{COMMUNITIES}：{r['street']} 在 {day} 有两个名为「{r['name']}」的社区 {sorted(same)}")
    codes = set(by_code)
    if (registry_dir / LINEAGE).exists():
        for i, r in enumerate(read_csv(registry_dir / LINEAGE)[1], start=2):
            for c in (r["predecessor_code"], r["successor_code"]):
                if c not in codes:
                    errors.append(f"{LINEAGE} 第 {i} 行：社区代码 {c} 不在登记表中")
            if r["event"] not in ("merge", "split", "rename"):
                errors.append(f"{LINEAGE} 第 {i} 行：事件「{r['event']}」应为 merge、split 或 rename")
    if (registry_dir / ALIASES).exists():
        for i, r in enumerate(read_csv(registry_dir / ALIASES)[1], start=2):
            if r["community_code"] not in codes:
                errors.append(f"{ALIASES} 第 {i} 行：别名「{r['alias']}」指向的社区代码 {r['community_code']} 不在登记表中")
    if Path(header_aliases).exists():
        _, heads = read_csv(Path(header_aliases))
        _, cat = read_csv(Path(catalogue))
        known = {c["code"] for c in cat}
        names = {_norm(c["name_zh"]) for c in cat}
        keys: dict[str, int] = {}
        for i, r in enumerate(heads, start=2):
            k = _norm(r["alias"])
            if k in keys:
                errors.append(f"{Path(header_aliases).name} 第 {i} 行：表头别名「{r['alias']}」与第 {keys[k]} 行重复")
            keys.setdefault(k, i)
            if k in names:
                errors.append(f"{Path(header_aliases).name} 第 {i} 行：「{r['alias']}」本身就是目录中的指标名称，无需别名")
            if r["indicator_code"] not in known:
                errors.append(f"{Path(header_aliases).name} 第 {i} 行：指标代码 {r['indicator_code']} 不在指标目录中")
            if r["role"] not in ("value", "numerator", "denominator"):
                errors.append(f"{Path(header_aliases).name} 第 {i} 行：角色「{r['role']}」应为 value、numerator 或 denominator")
    if errors:
        raise InputError("登记表校验未通过：\n" + "\n".join(errors[:20]))


# ------------------------------------------------------------------ edits
def add_community(registry_dir: Path, code: str, name: str, street: str, by: str, reason: str,
                  community_type: str = "居委会", valid_from: str | None = None, households: str | None = None,
                  population: str | None = None) -> dict:
    registry_dir = Path(registry_dir)
    by, reason = _required(by, "修改人姓名或岗位（--by）"), _required(reason, "修改原因（--reason）")
    code, name, street = _required(code, "社区代码（--code）"), _required(name, "社区名称（--name）"), \
        _required(street, "所属街道（--street，名称或 9 位代码）")
    cols, rows = read_csv(registry_dir / COMMUNITIES)
    if not re.fullmatch(r"\d{12}", code):
        raise InputError(f"社区代码「{code}」应为 12 位数字（区 6 位 + 街道 3 位 + 社区 3 位）")
    if any(r["community_code"] == code for r in rows):
        raise InputError(f"社区代码 {code} 已在登记表中（{next(r['name'] for r in rows if r['community_code'] == code)}）")
    peers = [r for r in rows if r["street_code"] == street or r["street"] in (street, street + "街道")]
    if not peers:
        import difflib

        streets = sorted({r["street"] for r in rows})
        close = difflib.get_close_matches(street, streets, n=3, cutoff=0.4)
        raise InputError(f"未知街道「{street}」：登记表中没有这个街道" + (f"，是否为：{'、'.join(close)}？" if close else ""))
    if len({r["street_code"] for r in peers}) > 1:
        raise InputError(f"街道「{street}」不唯一：{sorted({(r['street'], r['street_code']) for r in peers})}；请用 9 位街道代码")
    p = peers[0]
    if not code.startswith(p["street_code"]):
        raise InputError(f"社区代码 {code} 的前 9 位应为{p['street']}的街道代码 {p['street_code']}")
    if community_type not in COMMUNITY_TYPES:
        raise InputError(f"社区类型「{community_type}」应为 {'、'.join(COMMUNITY_TYPES)} 之一")
    for v, what in ((households, "户数"), (population, "人口")):
        if v not in (None, "") and not str(v).isdigit():
            raise InputError(f"{what}「{v}」应为非负整数")
    vf = _date(valid_from, "生效日期")
    if any(r["name"] == name and r["street_code"] == p["street_code"] and _valid_on(r, vf) for r in rows):
        raise InputError(f"{p['street']}在 {vf} 已有名为「{name}」的社区")
    new = {k: p[k] for k in ("street_code", "street", "district_code", "district", "city_code", "city",
                             "province_code", "province")}
    new.update(community_code=code, name=name, community_type=community_type, valid_from=vf, valid_to="",
               households=str(households or ""), population=str(population or ""))
    rows.append(new)
    rows.sort(key=lambda r: (r["community_code"], r["valid_from"]))
    _commit(registry_dir, {COMMUNITIES: (cols, rows)})
    return log_change(registry_dir, by, "registry add", COMMUNITIES, code, None, new, reason)


def rename_community(registry_dir: Path, community: str, new_name: str, effective: str | None, by: str,
                     reason: str) -> dict:
    """Close the open version on ``effective`` and open one under the new name (same code); the old name stays
    an alias from that day so late files under it still resolve."""
    registry_dir = Path(registry_dir)
    by, reason = _required(by, "修改人姓名或岗位（--by）"), _required(reason, "修改原因（--reason）")
    new_name = _required(new_name, "新名称（--new-name）")
    cols, rows = read_csv(registry_dir / COMMUNITIES)
    cur = find_community(rows, community)
    day = _date(effective, "更名生效日期")
    if day <= cur["valid_from"]:
        raise InputError(f"更名生效日期 {day} 应晚于当前版本的生效日期 {cur['valid_from']}")
    if new_name == cur["name"]:
        raise InputError(f"新名称与现名称相同：{new_name}")
    if any(r["name"] == new_name and r["street_code"] == cur["street_code"] and _valid_on(r, day) for r in rows):
        raise InputError(f"{cur['street']}在 {day} 已有名为「{new_name}」的社区")
    before = dict(cur)
    cur["valid_to"] = day
    new = dict(before, name=new_name, valid_from=day, valid_to="")
    rows.append(new)
    rows.sort(key=lambda r: (r["community_code"], r["valid_from"]))
    acols, aliases = read_csv(registry_dir / ALIASES)
    aliases.append({"alias": before["name"], "community_code": before["community_code"], "valid_from": day,
                    "valid_to": "", "note": f"{day} 更名为{new_name}前的名称"})
    # no lineage row: the code stays, and the two versions in communities.csv are the record (a lineage row
    # from a code to itself would count its values twice in fact_indicator_value_current after a later merge)
    _commit(registry_dir, {COMMUNITIES: (cols, rows), ALIASES: (acols, aliases)})
    return log_change(registry_dir, by, "registry rename", COMMUNITIES, before["community_code"],
                      {"name": before["name"], "valid_to": before["valid_to"]},
                      {"name": new_name, "valid_from": day}, reason)


def merge_community(registry_dir: Path, source: str, target: str, effective: str | None, by: str,
                    reason: str) -> dict:
    """``source`` is merged into ``target`` on ``effective``: its open version closes, a lineage row maps its
    values to the target on today's boundaries, and its name becomes an alias of the target from that day."""
    registry_dir = Path(registry_dir)
    by, reason = _required(by, "修改人姓名或岗位（--by）"), _required(reason, "修改原因（--reason）")
    cols, rows = read_csv(registry_dir / COMMUNITIES)
    src, dst = find_community(rows, source), find_community(rows, target)
    if src["community_code"] == dst["community_code"]:
        raise InputError("不能把社区合并到它自己")
    day = _date(effective, "合并生效日期")
    if day <= src["valid_from"] or day <= dst["valid_from"]:
        raise InputError(f"合并生效日期 {day} 应晚于两个社区当前版本的生效日期（{src['valid_from']}、{dst['valid_from']}）")
    before = dict(src)
    src["valid_to"] = day
    acols, aliases = read_csv(registry_dir / ALIASES)
    aliases.append({"alias": before["name"], "community_code": dst["community_code"], "valid_from": day,
                    "valid_to": "", "note": f"{day} 并入{dst['name']}"})
    lcols, lineage = read_csv(registry_dir / LINEAGE)
    lineage.append({"predecessor_code": before["community_code"], "successor_code": dst["community_code"],
                    "event": "merge", "effective_date": day, "note": reason})
    _commit(registry_dir, {COMMUNITIES: (cols, rows), ALIASES: (acols, aliases), LINEAGE: (lcols, lineage)})
    return log_change(registry_dir, by, "registry merge", COMMUNITIES, before["community_code"],
                      {"name": before["name"], "valid_to": before["valid_to"]},
                      {"merged_into": dst["community_code"], "merged_into_name": dst["name"], "valid_to": day}, reason)


def add_community_alias(registry_dir: Path, alias: str, community: str, by: str, reason: str,
                        valid_from: str | None = None, valid_to: str | None = None, note: str | None = None) -> dict:
    registry_dir = Path(registry_dir)
    by, reason = _required(by, "修改人姓名或岗位（--by）"), _required(reason, "修改原因（--reason）")
    alias = _required(alias, "别名（--alias）")
    _, rows = read_csv(registry_dir / COMMUNITIES)
    c = find_community(rows, community)
    if alias in (c["name"], c["name"].removesuffix("社区")):
        raise InputError(f"「{alias}」就是{c['name']}的登记名称，无需别名")
    acols, aliases = read_csv(registry_dir / ALIASES)
    clash = [a for a in aliases if _norm(a["alias"]) == _norm(alias)]
    if clash:
        other = clash[0]
        raise InputError(f"别名「{alias}」已登记给社区 {other['community_code']}"
                         + ("（同一社区）" if other["community_code"] == c["community_code"] else "，不能再指向另一个社区"))
    vf = _date(valid_from, "别名生效日期") if valid_from else ""
    vt = _date(valid_to, "别名失效日期") if valid_to else ""
    new = {"alias": alias, "community_code": c["community_code"], "valid_from": vf, "valid_to": vt,
           "note": note or reason}
    aliases.append(new)
    _commit(registry_dir, {ALIASES: (acols, aliases)})
    return log_change(registry_dir, by, "alias add", ALIASES, alias, None, new, reason)


def add_header_alias(registry_dir: Path, header_aliases: Path, alias: str, indicator: str, by: str, reason: str,
                     role: str = "value", unit: str | None = None, catalogue: Path = CATALOGUE_CSV) -> dict:
    registry_dir, header_aliases = Path(registry_dir), Path(header_aliases)
    by, reason = _required(by, "修改人姓名或岗位（--by）"), _required(reason, "修改原因（--reason）")
    alias, indicator = _required(alias, "表头别名（--header）"), _required(indicator, "指标（--indicator）")
    _, cat = read_csv(Path(catalogue))
    ind = next((c for c in cat if indicator in (c["code"], c["name_zh"])), None)
    if ind is None:
        import difflib

        close = difflib.get_close_matches(indicator, [c["name_zh"] for c in cat] + [c["code"] for c in cat], n=3,
                                          cutoff=0.4)
        raise InputError(f"未知指标「{indicator}」：指标目录中没有这个指标" + (f"，是否为：{'、'.join(close)}？" if close else ""))
    if role not in ("value", "numerator", "denominator"):
        raise InputError(f"角色「{role}」应为 value（数值）、numerator（分子）或 denominator（分母）")
    cols, heads = read_csv(header_aliases)
    if _norm(alias) in {_norm(c["name_zh"]) for c in cat}:
        raise InputError(f"「{alias}」本身就是指标目录中的名称，无需别名")
    clash = [h for h in heads if _norm(h["alias"]) == _norm(alias)]
    if clash:
        raise InputError(f"表头别名「{alias}」已登记给指标 {clash[0]['indicator_code']}（{clash[0]['role']}）")
    new = {"alias": alias, "indicator_code": ind["code"], "role": role, "unit": unit if unit is not None else ind["unit"],
           "note": reason}
    heads.append(new)
    _commit(registry_dir, {}, extra={header_aliases: (cols, heads)})
    return log_change(registry_dir, by, "alias add", header_aliases.name, alias, None, new, reason)


def _commit(registry_dir: Path, files: dict[str, tuple[list[str], list[dict]]],
            extra: dict[Path, tuple[list[str], list[dict]]] | None = None) -> None:
    """Validate the edited files together (in a scratch copy), then write them."""
    import shutil
    import tempfile

    targets = {Path(registry_dir) / n: v for n, v in files.items()} | (extra or {})
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        for n in (COMMUNITIES, ALIASES, LINEAGE):
            if (Path(registry_dir) / n).exists():
                shutil.copy(Path(registry_dir) / n, scratch / n)
        head = next((p for p in (extra or {}) if p.name.endswith(".csv")), None)
        heads_path = scratch / "header_aliases.csv"
        for path, (cols, rows) in targets.items():
            write_csv(scratch / path.name if path.parent == Path(registry_dir) else heads_path, cols, rows)
        validate(scratch, heads_path if head else Path("/nonexistent"))
    for path, (cols, rows) in targets.items():
        write_csv(path, cols, rows)


# ------------------------------------------------------------------ command line
def register(sub) -> None:
    r = sub.add_parser("registry", help="修改社区登记表（models/registry/*.csv）：add 新增、rename 更名、merge 合并；"
                                        "每次修改记入 changes.csv（谁、何时、为何、原值）")
    rs = r.add_subparsers(dest="registry_action", required=True)
    a = rs.add_parser("add", help="新增社区")
    a.add_argument("--code", help="12 位社区代码（前 9 位为街道代码）")
    a.add_argument("--name", help="社区名称")
    a.add_argument("--street", help="所属街道：名称或 9 位代码（区、市、省随街道）")
    a.add_argument("--type", default="居委会", help="社区类型：居委会（默认）、村代居、城市村")
    a.add_argument("--valid-from", help="生效日期（默认今天，北京时间）")
    a.add_argument("--households", help="户数")
    a.add_argument("--population", help="人口")
    rn = rs.add_parser("rename", help="社区更名（同一代码，旧名称自生效日起作为别名）")
    rn.add_argument("--community", help="社区：名称、名称（街道）或 12 位代码")
    rn.add_argument("--new-name", help="新名称")
    rn.add_argument("--effective", help="生效日期（默认今天）")
    m = rs.add_parser("merge", help="社区合并：--from 并入 --into")
    m.add_argument("--from", dest="source", help="被合并的社区")
    m.add_argument("--into", dest="target", help="合并后的社区")
    m.add_argument("--effective", help="生效日期（默认今天）")
    for x in (a, rn, m):
        x.add_argument("--reason", help="修改原因（必填）")
        x.add_argument("--by", help="修改人姓名或岗位（必填）")
        x.add_argument("--registry-dir", default=str(REGISTRY_DIR), help=f"登记表目录（默认 {REGISTRY_DIR}）")
        x.set_defaults(fn=cmd_registry)
    al = sub.add_parser("alias", help="登记别名：社区别名（--alias --community）或表头别名（--header --indicator）")
    als = al.add_subparsers(dest="alias_action", required=True)
    aa = als.add_parser("add", help="新增别名")
    aa.add_argument("--alias", help="社区别名（文件中出现的写法）")
    aa.add_argument("--community", help="别名所指的社区：名称、名称（街道）或 12 位代码")
    aa.add_argument("--valid-from", help="别名生效日期（可空）")
    aa.add_argument("--valid-to", help="别名失效日期（可空）")
    aa.add_argument("--note", help="备注")
    aa.add_argument("--header", help="表头别名（文件中的列名）")
    aa.add_argument("--indicator", help="表头所指的指标：代码或中文名称")
    aa.add_argument("--role", default="value", help="value（默认）、numerator 或 denominator")
    aa.add_argument("--unit", help="表头隐含的单位（默认指标单位）")
    aa.add_argument("--reason", help="修改原因（必填）")
    aa.add_argument("--by", help="修改人姓名或岗位（必填）")
    aa.add_argument("--registry-dir", default=str(REGISTRY_DIR), help=f"登记表目录（默认 {REGISTRY_DIR}）")
    aa.add_argument("--header-aliases", default=str(HEADER_ALIASES_CSV), help=f"表头别名文件（默认 {HEADER_ALIASES_CSV}）")
    aa.set_defaults(fn=cmd_alias)


def _report(row: dict) -> None:
    from rich.markup import escape

    from .cli import console

    console.print(escape(f"已修改 {row['file']}（{row['action']}，{row['key']}）；原值：{row['previous_value'] or '无'}；"
                         f"新值：{row['new_value']}；{row['changed_by']}，{row['changed_at']}（北京时间）"))
    console.print("已记入 models/registry/changes.csv；下次 shequ refresh 时载入仓库")


def cmd_registry(args) -> int:
    from rich.markup import escape

    from .cli import console

    try:
        if args.registry_action == "add":
            row = add_community(args.registry_dir, args.code, args.name, args.street, args.by, args.reason,
                                args.type, args.valid_from, args.households, args.population)
        elif args.registry_action == "rename":
            row = rename_community(args.registry_dir, args.community, args.new_name, args.effective, args.by,
                                   args.reason)
        else:
            row = merge_community(args.registry_dir, args.source, args.target, args.effective, args.by, args.reason)
    except InputError as e:
        console.print(f"[red]{escape(str(e))}[/red]")
        return 2
    _report(row)
    return 0


def cmd_alias(args) -> int:
    from rich.markup import escape

    from .cli import console

    try:
        if args.header:
            if args.alias or args.community:
                raise InputError("表头别名用 --header 与 --indicator；社区别名用 --alias 与 --community，二者不能同时给出")
            row = add_header_alias(args.registry_dir, args.header_aliases, args.header, args.indicator, args.by,
                                   args.reason, args.role, args.unit)
        else:
            if not args.alias:
                raise InputError("请给出 --alias 与 --community（社区别名）或 --header 与 --indicator（表头别名）")
            row = add_community_alias(args.registry_dir, args.alias, args.community, args.by, args.reason,
                                      args.valid_from, args.valid_to, args.note)
    except InputError as e:
        console.print(f"[red]{escape(str(e))}[/red]")
        return 2
    _report(row)
    return 0
