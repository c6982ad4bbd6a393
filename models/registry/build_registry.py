"""Build the community master data (社区主数据) and the survey-header alias table.

This script is the documented source of the registry. All hand-written name
lists live below as Python data; running it (re)writes, deterministically:

    models/registry/communities.csv        one row per community version
    models/registry/community_lineage.csv  predecessor -> successor events
    models/registry/community_aliases.csv  declared former names / short forms
    models/catalogue/header_aliases.csv    survey column header -> indicator

Run:  python models/registry/build_registry.py

Conventions
-----------
* 姜堰区 uses its GB/T 2260 code 321204 (泰州 3212 + 04).  320412 is 常州市
  武进区 and would break the rule district_code[:4] == city_code.
* community_code = 6-digit district code + 3-digit street seq + 3-digit
  community seq; street_code = first 9 digits.
* Validity interval is half-open: [valid_from, valid_to); empty valid_to
  means still valid.
* Community names are unique within a street.  Across the whole registry the
  only duplicated name is 新村社区 (南湖街道 and 兴隆街道, see heterogeneity case
  H19c): the natural key is (street, community), never the name alone.
* 乾城社区 is deliberately present: OpenCC t2s turns 乾城 into 干城, so the
  name-protection list of the normaliser must be exercised by real data.
* 兴隆街道: seed 001 reports four communities sharing two offices after
  demolition (建制 not revoked).  In this registry the merger becomes formal on
  2024-01-01: four predecessor rows close, two successor rows (seq 009, 010)
  open.  Successor households/population = sum of their predecessors, so that
  time series can be compared on the post-merger basis.
* Households and population are synthetic but plausible; they are drawn from
  random.Random(20240101) so the output is byte-for-byte reproducible.

Only the standard library is used.
"""

from __future__ import annotations

import csv
import datetime as dt
import random
import sys
import unicodedata
from collections import Counter, defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = HERE.parent
REGISTRY_DIR = HERE
CATALOGUE_DIR = MODELS / "catalogue"

SEED = 20240101
DEFAULT_VALID_FROM = "2015-01-01"
MERGE_DATE = "2024-01-01"

COMMUNITY_TYPES = ("居委会", "村代居", "城市村")

COMMUNITY_COLUMNS = [
    "community_code", "name", "street_code", "street", "district_code", "district",
    "city_code", "city", "province_code", "province", "community_type",
    "valid_from", "valid_to", "households", "population",
]
LINEAGE_COLUMNS = ["predecessor_code", "successor_code", "event", "effective_date", "note"]
ALIAS_COLUMNS = ["alias", "community_code", "valid_from", "valid_to", "note"]
HEADER_ALIAS_COLUMNS = ["alias", "indicator_code", "role", "unit", "note"]

# ---------------------------------------------------------------------------
# Administrative hierarchy
# ---------------------------------------------------------------------------
PROVINCES = {"32": "江苏省", "37": "山东省"}
CITIES = {"3212": "泰州市", "3201": "南京市", "3701": "济南市"}

# district_code -> (district name, household range)
DISTRICTS = {
    "321204": ("姜堰区", (1000, 3500)),
    "320105": ("建邺区", (1500, 4000)),
    "370105": ("天桥区", (800, 3000)),
    "320115": ("江宁区", (5000, 6000)),
}
# Households are uniform over the range, except where a mode is given
# (triangular draw): 建邺 averages about 2,400-2,500 households (seed 001).
HOUSEHOLD_MODE = {"320105": 2100}
PERSONS_PER_HOUSEHOLD = (2.6, 3.1)

# Streets: district_code -> list of (street name, [community entries]).
# A community entry is a stem (the name without 社区) or a dict with overrides.
# Street seq = position in the list (1-based); community seq likewise.
STREETS: dict[str, list[tuple[str, list]]] = {
    # 江苏省泰州市姜堰区 — 20 communities (seed 000). The 12 seed names are:
    # 河南 河东 荷叶 南苑 叶舍 桃园 东街 高陈 河西 振兴 南街 古田; the other 8
    # (西街 北街 天目 通扬 文昌 新城 三里桥 三水) are invented.
    "321204": [
        ("罗塘街道", ["河南", "河东", "荷叶", "南苑", "叶舍",
                      "桃园", "东街", "南街", "西街", "北街"]),
        ("三水街道", ["高陈", "河西", "振兴", "古田", "天目",
                      "通扬", "文昌", "新城", "三里桥", "三水"]),
    ],
    # 江苏省南京市建邺区 — 36 建制 + 2 村代居 (seed 001); names invented.
    "320105": [
        ("南湖街道", ["南湖", "沿河", "吉庆", "文体", "虹苑",
                      "新村", "茶南", "康福", "泰来"]),
        ("滨湖街道", ["莫愁湖", "滨湖", "凤栖", "清江", "江东门",
                      "水西门", "集庆", "北圩", "乾城"]),
        ("南苑街道", ["怡康", "莲花", "所街", "嘉园", "湖西",
                      "云锦", "茶亭", "安如", "碧水"]),
        ("兴隆街道", [
            "兴隆", "奥体", "新村", "梦都",
            # predecessors of the 2024 merger (seq 005-008)
            {"stem": "金沙", "valid_to": MERGE_DATE, "hh": (1500, 1950)},
            {"stem": "江山", "valid_to": MERGE_DATE, "hh": (1500, 1950)},
            {"stem": "月安", "valid_to": MERGE_DATE, "hh": (1500, 1950)},
            {"stem": "天河", "valid_to": MERGE_DATE, "hh": (1500, 1950)},
            # successors (seq 009, 010); households = sum of predecessors
            {"stem": "兴达", "valid_from": MERGE_DATE, "merged_from": ("金沙", "江山")},
            {"stem": "兴旺", "valid_from": MERGE_DATE, "merged_from": ("月安", "天河")},
        ]),
        ("双闸街道", [
            "双闸",
            {"stem": "金胜", "type": "村代居"},
            {"stem": "高庙", "type": "村代居"},
        ]),
    ],
    # 山东省济南市天桥区 — 12 historic streets, 75 居委会 (seed 004); names invented.
    "370105": [
        ("天桥东街街道", ["天桥东街", "铜元局前", "明湖北", "铁路新村", "少年路", "东工商河", "三孔桥"]),
        ("北村街道", ["北村", "北园路", "生产路", "济洛路", "标山北", "标山南", "蓝翔路"]),
        ("南村街道", ["南村", "三里河", "小清河", "西工商河", "北大槐树", "南大槐树", "成丰桥"]),
        ("堤口路街道", ["堤口庄", "梁府庄", "匡山", "济泺", "大魏庄", "粟山"]),
        ("北坦街道", ["北坦", "顺河", "五柳闸", "东泺河", "西泺河", "清河北"]),
        ("制锦市街道", ["制锦市", "普利", "筐市", "估衣市", "共青团路", "花园庄"]),
        ("宝华街街道", ["宝华街", "成大", "林家庄", "纬六北", "北关", "堤口南"]),
        ("官扎营街道", ["官扎营", "北闸子", "新沙", "车站北", "凤凰山", "水屯"]),
        ("纬北路街道", ["纬北路", "小鲁庄", "药山", "泺口", "黄台", "东坡"]),
        ("工人新村北村街道", ["工人新村北", "长途站", "凤凰岭", "济齐路", "无影山北", "金牛"]),
        ("工人新村南村街道", ["工人新村南", "北园东", "西北关", "新城庄", "电建", "双庙"]),
        ("无影山街道", ["无影山", "无影山中路", "白马山", "卧牛山", "板桥", "柳云"]),
    ],
    # 江苏省南京市江宁区 — 秦淮社区 (seed 003, text 5): 15,983 people.
    "320115": [
        ("秣陵街道", [{"stem": "秦淮", "hh_fixed": 5600, "pop_fixed": 15983}]),
    ],
}

LINEAGE_NOTE = "因拆迁合并办公,2024年撤销原建制"

# Declared aliases: (alias, district_code, street, stem, valid_from, valid_to, note).
# Only names NOT derivable by stripping 社区/居委会/居民委员会 suffixes.
ALIASES = [
    ("汽车站社区", "370105", "工人新村北村街道", "长途站", "", "2019-07-01", "2019年更名,原名汽车站社区"),
    ("北坦一居", "370105", "北坦街道", "北坦", "", "", "原北坦第一居委会旧称,居民仍常用"),
    ("泺口老街", "370105", "纬北路街道", "泺口", "", "", "居民常用俗称"),
    ("秦淮村", "320115", "秣陵街道", "秦淮", "", "", "村改居前原村名"),
    ("莫愁", "320105", "滨湖街道", "莫愁湖", "", "", "常用简称"),
    ("奥体新城", "320105", "兴隆街道", "奥体", "", "", "片区俗称,报表中常见"),
    ("老南街", "321204", "罗塘街道", "南街", "", "", "老城区俗称"),
]

# ---------------------------------------------------------------------------
# Survey header aliases (synonyms of indicator names).
# name_zh itself is matched by code and is deliberately NOT listed.
# value: indicator_code -> [(alias, unit)]
# parts: indicator_code -> ((numerator, unit), (denominator, unit)) for every
#        ratio / rate_per / survey indicator.
# ---------------------------------------------------------------------------
YN = "是/否"
VALUE_ALIASES: dict[str, list[tuple[str, str]]] = {
    # 组织建设
    "party_org_established": [("党组织建立情况", YN), ("是否建立党组织", YN)],
    "secretary_director_concurrent": [("一肩挑", YN), ("书记主任一肩挑", YN)],
    "pairing_units": [("共建单位数", "个"), ("结对单位数", "个")],
    "pairing_participants": [("共建活动参与人次", "人次"), ("结对活动人次", "人次")],
    "pairing_funds": [("结对帮扶资金", ""), ("共建单位帮扶资金", "")],
    "pairing_units_funding_rate": [("帮扶资金达标单位比例", "%"), ("结对单位资金达标率", "%")],
    # 队伍建设
    "staff_count": [("社工人数", "人"), ("社区工作人员数", "人"), ("工作人员数", "人")],
    "committee_members": [("居委会成员数", "人"), ("居委会班子人数", "人")],
    "staff_per_10k_pop": [("万人社工比", "人/万人"), ("每万人社区工作者数", "人/万人")],
    "staff_college_rate": [("大专以上学历占比", "%"), ("大专及以上比例", "%")],
    "staff_avg_age": [("平均年龄", "岁"), ("社工平均年龄", "岁")],
    "social_worker_cert_rate": [("持证率", "%"), ("社工持证比例", "%")],
    "staff_monthly_wage": [("月均工资", "元/月"), ("社工月工资", "元/月"), ("月工资", "元/月")],
    "it_qualified_staff": [("信息化达标人员数", "人"), ("信息化应用达标人数", "人")],
    # 居民自治
    "election_turnout_rate": [("参选率", "%"), ("选民参选率", "%"), ("换届参选率", "%")],
    "rep_congress_sessions": [("居民代表大会次数", "次/年"), ("居代会召开次数", "次/年")],
    "rep_attendance_rate": [("代表出席率", "%"), ("居代会出席率", "%")],
    "affairs_disclosure_times": [("居务公开次数", "次/年"), ("三务公开次数", "次/年")],
    "owners_committee_rate": [("业委会组建率", "%"), ("业委会成立率", "%")],
    "residential_compounds": [("小区数", "个"), ("住宅小区个数", "个")],
    "closed_compound_rate": [("封闭小区比例", "%"), ("封闭式小区比例", "%")],
    "property_managed_rate": [("物业管理覆盖率", "%"), ("物管小区占比", "%")],
    "property_rating": [("物业考核等级", ""), ("物业服务等级", "")],
    "civil_orgs_registered": [("社会组织数", "个"), ("民间组织数", "个"), ("备案社会组织数", "个")],
    "volunteer_orgs": [("志愿者组织数", "个"), ("志愿服务队伍数", "个")],
    # 基础设施
    "office_area": [("办公用房面积", "平方米"), ("办公用房", "平方米"), ("办公面积", "平方米")],
    "service_facility_area_per_100hh": [("百户服务设施面积", "平方米/百户"),
                                        ("每百户服务设施面积", "平方米/百户")],
    "activity_area_rate": [("活动区域占比", "%"), ("居民活动用房占比", "%")],
    "office_temporary_rented": [("是否租借用房", YN), ("临时办公用房", YN)],
    "office_phone": [("有无办公电话", YN), ("办公电话", YN)],
    "standard_rooms_rate": [("四室一站配置率", "%"), ("功能室达标率", "%")],
    "indoor_activity_venue": [("室内活动场地", YN), ("有无室内健身场所", YN)],
    "fitness_equipment_sets": [("健身器材套数", "套"), ("健身器材", "套")],
    # 信息化
    "networked_computers": [("联网电脑数", "台"), ("上网电脑台数", "台")],
    "data_entry_rate": [("数据录入率", "%"), ("信息录入率", "%")],
    "self_service_terminal": [("自助服务一体机", YN), ("政务自助终端", YN)],
    # 社区服务
    "service_points": [("便民服务网点", "个"), ("服务网点数", "个")],
    "service_items": [("服务项目数", "项"), ("服务项目", "项")],
    "one_stop_service": [("一站式服务", YN), ("是否一站式服务", YN)],
    "home_care_station": [("居家养老服务站", YN), ("养老服务站", YN)],
    "jobs_placed": [("就业安置人次", "人次"), ("安置就业", "人次")],
    "job_training_sessions": [("培训期数", "期"), ("就业培训期数", "期")],
    # 社会保障
    "medical_insurance_rate": [("参保率", "%"), ("医疗保险参保率", "%"), ("合作医疗参保率", "%")],
    "dibao_households": [("低保户数", "户"), ("低保户", "户")],
    "dibao_coverage_rate": [("应保尽保率", "%"), ("低保覆盖率", "%")],
    "hardship_households_assisted": [("帮扶困难户", "户"), ("困难户帮扶数", "户")],
    "assistance_funds": [("救助资金", ""), ("群众补贴资金", "")],
    # 卫生计生
    "family_planning_service_rate": [("参服率", "%"), ("计生参服率", "%"), ("月服务参服率", "%")],
    "unplanned_pregnancies": [("计划外怀孕", "例"), ("计划外生育例数", "例")],
    "health_station": [("卫生服务站", YN), ("社区卫生站", YN)],
    # 治安法治
    "criminal_cases": [("刑事案件数", "起"), ("刑事发案数", "起")],
    "major_incident": [("重大事件数", "起"), ("重大安全事故", "起")],
    "mediation_success_rate": [("调解成功率", "%"), ("纠纷调解成功率", "%")],
    "floating_pop_registration_rate": [("暂住人口登记率", "%"), ("流动人口登记比例", "%")],
    "tech_defense_household_rate": [("技防率", "%"), ("技防覆盖率", "%")],
    "rule_of_law_community": [("法治社区", YN), ("法治社区达标", YN)],
    "legal_education_sessions": [("普法活动次数", "次"), ("法制宣传次数", "次")],
    # 环境卫生
    "env_inspection_score": [("环境卫生得分", "分"), ("卫生检查得分", "分")],
    "door_three_guarantees_rate": [("门前三包签订率", "%"), ("三包责任书签订率", "%")],
    "new_illegal_structures": [("新增违建", "处"), ("新增违法建设", "处")],
    # 文化体育
    "culture_sports_activities": [("文体活动场次", "场"), ("文体活动次数", "场")],
    "culture_teams": [("文体队伍数", "支"), ("文体团队", "支")],
    "featured_community": [("特色社区", YN), ("特色社区创建", YN)],
    # 经费保障
    "office_funds_per_100hh_month": [("办公经费标准", "元/百户/月"), ("百户办公经费", "元/百户/月")],
    "collective_income": [("集体经济收入", ""), ("集体可支配收入", "")],
    # 满意度
    "resident_satisfaction_rate": [("居民满意度", "%"), ("群众满意率", "%"), ("社区工作满意率", "%")],
    "property_satisfaction_rate": [("物业满意率", "%"), ("物业管理满意度", "%")],
    "safety_sense_rate": [("安全感", "%"), ("居民安全感", "%")],
}

PART_ALIASES: dict[str, tuple[tuple[str, str], tuple[str, str]]] = {
    "pairing_units_funding_rate": (("资金达标结对单位数", "个"), ("结对单位总数", "个")),
    "staff_per_10k_pop": (("社区工作者人数（计万人比）", "人"), ("常住人口", "人")),
    "staff_college_rate": (("大专及以上学历人数", "人"), ("社区工作者总数", "人")),
    "social_worker_cert_rate": (("持证社工人数", "人"), ("在岗社工人数", "人")),
    "election_turnout_rate": (("参加投票选民数", "人"), ("登记选民数", "人")),
    "rep_attendance_rate": (("出席代表人次", "人次"), ("应出席代表人次", "人次")),
    "owners_committee_rate": (("已组建业委会小区数", "个"), ("应组建业委会小区数", "个")),
    "closed_compound_rate": (("封闭式小区数", "个"), ("小区总数", "个")),
    "property_managed_rate": (("物业管理小区数", "个"), ("辖区小区数", "个")),
    "service_facility_area_per_100hh": (("综合服务设施建筑面积", "平方米"), ("服务户数", "户")),
    "activity_area_rate": (("居民活动区域面积", "平方米"), ("综合服务设施总面积", "平方米")),
    "standard_rooms_rate": (("已配置功能室数", "个"), ("规定功能室数", "个")),
    "data_entry_rate": (("已录入数据项", "项"), ("应采集数据项", "项")),
    "medical_insurance_rate": (("参保人数", "人"), ("应参保人数", "人")),
    "dibao_coverage_rate": (("已纳入低保户数", "户"), ("符合低保条件户数", "户")),
    "family_planning_service_rate": (("参加月服务人数", "人"), ("应服务育龄妇女数", "人")),
    "mediation_success_rate": (("调解成功件数", "件"), ("受理纠纷件数", "件")),
    "floating_pop_registration_rate": (("已登记流动人口", "人"), ("实有流动人口", "人")),
    "tech_defense_household_rate": (("安装技防户数", "户"), ("总户数", "户")),
    "door_three_guarantees_rate": (("已签三包责任书商户数", "户"), ("临街商户数", "户")),
    "office_funds_per_100hh_month": (("月办公活动经费", "元/月"), ("辖区户数", "户")),
    "resident_satisfaction_rate": (("居民满意样本数", "份"), ("居民满意度有效问卷数", "份")),
    "property_satisfaction_rate": (("物业满意样本数", "份"), ("物业满意度有效问卷数", "份")),
    "safety_sense_rate": (("感到安全样本数", "份"), ("安全感有效问卷数", "份")),
}
PART_KINDS = {"ratio", "rate_per", "survey"}

# ---------------------------------------------------------------------------
# Builders
# ---------------------------------------------------------------------------


def _entry(e) -> dict:
    return {"stem": e} if isinstance(e, str) else dict(e)


def build_communities() -> list[dict]:
    rng = random.Random(SEED)
    rows: list[dict] = []
    for district_code, streets in STREETS.items():
        district, hh_range = DISTRICTS[district_code]
        city_code, province_code = district_code[:4], district_code[:2]
        by_stem: dict[str, dict] = {}
        for s_idx, (street, entries) in enumerate(streets, start=1):
            street_code = f"{district_code}{s_idx:03d}"
            by_stem.clear()
            for c_idx, raw in enumerate(entries, start=1):
                e = _entry(raw)
                if "merged_from" in e:
                    preds = [by_stem[p] for p in e["merged_from"]]
                    hh = sum(p["households"] for p in preds)
                    pop = sum(p["population"] for p in preds)
                elif "hh_fixed" in e:
                    hh, pop = e["hh_fixed"], e["pop_fixed"]
                else:
                    lo, hi = e.get("hh", hh_range)
                    mode = HOUSEHOLD_MODE.get(district_code) if "hh" not in e else None
                    if mode is None:
                        hh = rng.randint(lo, hi)
                    else:
                        hh = round(rng.triangular(lo, hi, mode))
                    pop = round(hh * rng.uniform(*PERSONS_PER_HOUSEHOLD))
                row = {
                    "community_code": f"{street_code}{c_idx:03d}",
                    "name": e["stem"] + "社区",
                    "street_code": street_code,
                    "street": street,
                    "district_code": district_code,
                    "district": district,
                    "city_code": city_code,
                    "city": CITIES[city_code],
                    "province_code": province_code,
                    "province": PROVINCES[province_code],
                    "community_type": e.get("type", "居委会"),
                    "valid_from": e.get("valid_from", DEFAULT_VALID_FROM),
                    "valid_to": e.get("valid_to", ""),
                    "households": hh,
                    "population": pop,
                }
                by_stem[e["stem"]] = row
                rows.append(row)
    rows.sort(key=lambda r: r["community_code"])
    return rows


def _find(rows, district_code, street, stem) -> dict:
    hits = [r for r in rows if r["district_code"] == district_code
            and r["street"] == street and r["name"] == stem + "社区"]
    assert len(hits) == 1, (district_code, street, stem, hits)
    return hits[0]


def build_lineage(rows) -> list[dict]:
    out = []
    for district_code, streets in STREETS.items():
        for street, entries in streets:
            for raw in entries:
                e = _entry(raw)
                if "merged_from" not in e:
                    continue
                succ = _find(rows, district_code, street, e["stem"])
                for p in e["merged_from"]:
                    pred = _find(rows, district_code, street, p)
                    out.append({
                        "predecessor_code": pred["community_code"],
                        "successor_code": succ["community_code"],
                        "event": "merge",
                        "effective_date": succ["valid_from"],
                        "note": LINEAGE_NOTE,
                    })
    out.sort(key=lambda r: (r["successor_code"], r["predecessor_code"]))
    return out


def build_aliases(rows) -> list[dict]:
    out = []
    for alias, dcode, street, stem, vf, vt, note in ALIASES:
        c = _find(rows, dcode, street, stem)
        out.append({"alias": alias, "community_code": c["community_code"],
                    "valid_from": vf, "valid_to": vt, "note": note})
    out.sort(key=lambda r: (r["community_code"], r["alias"]))
    return out


def build_header_aliases() -> list[dict]:
    out = []
    for code, aliases in VALUE_ALIASES.items():
        for alias, unit in aliases:
            out.append({"alias": alias, "indicator_code": code, "role": "value",
                        "unit": unit, "note": "常用表头同义词"})
        if code in PART_ALIASES:
            (num, num_unit), (den, den_unit) = PART_ALIASES[code]
            out.append({"alias": num, "indicator_code": code, "role": "numerator",
                        "unit": num_unit, "note": "分子列"})
            out.append({"alias": den, "indicator_code": code, "role": "denominator",
                        "unit": den_unit, "note": "分母列"})
    return out


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

def _valid_on(row, day: str) -> bool:
    return row["valid_from"] <= day and (not row["valid_to"] or day < row["valid_to"])


def _stem(name: str) -> str:
    for suf in ("社区居民委员会", "社区居委会", "居民委员会", "居委会", "社区"):
        if name.endswith(suf):
            return name[: -len(suf)]
    return name


def check_registry(rows, lineage, aliases) -> None:
    codes = [r["community_code"] for r in rows]
    assert len(codes) == len(set(codes)), "duplicate community_code"
    assert codes == sorted(codes)
    for r in rows:
        c = r["community_code"]
        assert len(c) == 12 and c.isdigit()
        assert c[:9] == r["street_code"] and c[:6] == r["district_code"]
        assert r["district_code"][:4] == r["city_code"] and r["city_code"][:2] == r["province_code"]
        assert r["name"].endswith("社区") and r["street"].endswith("街道")
        assert r["community_type"] in COMMUNITY_TYPES
        dt.date.fromisoformat(r["valid_from"])
        if r["valid_to"]:
            assert dt.date.fromisoformat(r["valid_to"]) > dt.date.fromisoformat(r["valid_from"])
    # unique names within a street; only 新村社区 repeats across the registry
    per_street = Counter((r["street_code"], r["name"]) for r in rows)
    assert max(per_street.values()) == 1
    names = Counter(r["name"] for r in rows)
    assert {n for n, k in names.items() if k > 1} == {"新村社区"}, names.most_common(3)
    assert names["新村社区"] == 2

    def count(district_code, day, **kw):
        return sum(1 for r in rows if r["district_code"] == district_code and _valid_on(r, day)
                   and all(r[k] == v for k, v in kw.items()))

    for day in ("2023-06-30", "2024-06-30"):
        assert count("321204", day) == 20
        assert count("321204", day, street="罗塘街道") == 10
        assert count("321204", day, street="三水街道") == 10
        assert count("370105", day) == 75
        assert count("370105", day, community_type="居委会") == 75
        assert len({r["street_code"] for r in rows if r["district_code"] == "370105"}) == 12
        assert count("320115", day) == 1
        for st in ("南湖街道", "滨湖街道", "南苑街道"):
            assert count("320105", day, street=st) == 9
        assert count("320105", day, street="双闸街道", community_type="居委会") == 1
        assert count("320105", day, street="双闸街道", community_type="村代居") == 2
    assert count("320105", "2023-06-30", street="兴隆街道") == 8
    assert count("320105", "2024-06-30", street="兴隆街道") == 6
    assert count("320105", "2023-06-30", community_type="居委会") == 36

    tq = [r for r in rows if r["district_code"] == "370105"]
    assert all(6 <= v <= 7 for v in Counter(r["street"] for r in tq).values())
    qh = [r for r in rows if r["name"] == "秦淮社区"]
    assert len(qh) == 1 and qh[0]["population"] == 15983
    assert any(r["name"] == "乾城社区" and r["district_code"] == "320105" for r in rows)
    jy = [r for r in rows if r["district_code"] == "320105" and _valid_on(r, "2023-06-30")]
    mean_hh = sum(r["households"] for r in jy) / len(jy)
    assert 2400 <= mean_hh <= 2500, mean_hh
    for r in rows:
        lo, hi = DISTRICTS[r["district_code"]][1]
        assert lo <= r["households"] <= hi, r
        if r["name"] != "秦淮社区":
            ratio = r["population"] / r["households"]
            assert 2.6 <= ratio <= 3.1 + 1e-9, r

    # lineage: 2 successors x 2 predecessors, codes consistent with validity
    by_code = {r["community_code"]: r for r in rows}
    assert len(lineage) == 4
    assert Counter(l["successor_code"] for l in lineage) == Counter(
        {s: 2 for s in {l["successor_code"] for l in lineage}})
    assert len({l["predecessor_code"] for l in lineage}) == 4
    for l in lineage:
        p, s = by_code[l["predecessor_code"]], by_code[l["successor_code"]]
        assert p["valid_to"] == s["valid_from"] == l["effective_date"] == MERGE_DATE
        assert p["street_code"] == s["street_code"] and p["name"] != "新村社区"

    # aliases: not derivable by suffix stripping, not clashing with any name/stem
    stems = {_stem(r["name"]) for r in rows} | {r["name"] for r in rows}
    seen = set()
    assert 5 <= len(aliases) <= 10
    for a in aliases:
        assert a["community_code"] in by_code
        assert _stem(a["alias"]) not in stems and a["alias"] not in stems, a
        assert a["alias"] not in seen
        seen.add(a["alias"])


def _norm(s: str) -> str:
    return unicodedata.normalize("NFKC", s).replace(" ", "")


def load_indicators() -> list[dict] | None:
    candidates = [CATALOGUE_DIR / "indicators.csv"]
    for p in candidates:
        if p.exists():
            with p.open(encoding="utf-8", newline="") as f:
                return list(csv.DictReader(f))
    return None


def check_header_aliases(rows, indicators) -> None:
    # every alias string appears once in the whole file (so a header resolves
    # to exactly one (indicator, role)), also after NFKC normalisation
    keys = Counter(_norm(r["alias"]) for r in rows)
    dup = [k for k, v in keys.items() if v > 1]
    assert not dup, dup
    assert all(r["role"] in ("value", "numerator", "denominator") for r in rows)
    per_code = defaultdict(Counter)
    for r in rows:
        per_code[r["indicator_code"]][r["role"]] += 1
    if indicators is None:
        print("warning: indicators.csv not found, catalogue cross-checks skipped", file=sys.stderr)
        return
    codes = {i["code"] for i in indicators}
    names = {_norm(i["name_zh"]) for i in indicators}
    assert set(per_code) == codes, set(per_code) ^ codes
    clash = [r["alias"] for r in rows if _norm(r["alias"]) in names]
    assert not clash, clash
    for i in indicators:
        c = per_code[i["code"]]
        assert 1 <= c["value"] <= 3, i["code"]
        want = 1 if i["value_kind"] in PART_KINDS else 0
        assert c["numerator"] == want and c["denominator"] == want, i["code"]
    assert sum(1 for i in indicators if i["value_kind"] in PART_KINDS) == len(PART_ALIASES)


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

def write_csv(path: Path, columns: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: r[k] for k in columns})


def main() -> int:
    communities = build_communities()
    lineage = build_lineage(communities)
    aliases = build_aliases(communities)
    header_aliases = build_header_aliases()
    check_registry(communities, lineage, aliases)
    check_header_aliases(header_aliases, load_indicators())

    outputs = [
        (REGISTRY_DIR / "communities.csv", COMMUNITY_COLUMNS, communities),
        (REGISTRY_DIR / "community_lineage.csv", LINEAGE_COLUMNS, lineage),
        (REGISTRY_DIR / "community_aliases.csv", ALIAS_COLUMNS, aliases),
        (CATALOGUE_DIR / "header_aliases.csv", HEADER_ALIAS_COLUMNS, header_aliases),
    ]
    for path, cols, rows in outputs:
        write_csv(path, cols, rows)
        print(f"{path.relative_to(MODELS.parent)}: {len(rows)} rows")

    print("communities valid per district:")
    print(f"  {'district':<8} {'2023-06-30':>10} {'2024-06-30':>10}")
    for dcode, (dname, _) in DISTRICTS.items():
        a = sum(1 for r in communities if r["district_code"] == dcode and _valid_on(r, "2023-06-30"))
        b = sum(1 for r in communities if r["district_code"] == dcode and _valid_on(r, "2024-06-30"))
        print(f"  {dcode} {dname:<5} {a:>6} {b:>10}")
    roles = Counter(r["role"] for r in header_aliases)
    print("header_aliases by role:", dict(sorted(roles.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
