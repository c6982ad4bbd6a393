"""Periods: the dim_period calendar, quarter keys (2024Q3) and their Chinese labels (2024年第三季度).

Parsing of free-text period notations found in survey files lives here too (parse_period), so that the
reader, the CLI (--quarter 2024年第三季度) and Dagster partition keys all use one grammar.
"""

import calendar
import datetime as dt
import re
import unicodedata

import polars as pl

CN_Q = {1: "一", 2: "二", 3: "三", 4: "四"}
CN_DIGIT = {"〇": 0, "零": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
QUARTER_RE = re.compile(r"^(\d{4})Q([1-4])$")


def quarter_key(year: int, quarter: int) -> str:
    return f"{year}Q{quarter}"


def quarter_label(key: str) -> str:
    y, q = split_quarter(key)
    return f"{y}年第{CN_Q[q]}季度"


def split_quarter(key: str) -> tuple[int, int]:
    m = QUARTER_RE.match(key)
    if not m:
        raise ValueError(f"季度键格式应为 2024Q3，收到 {key!r}")
    return int(m.group(1)), int(m.group(2))


def quarter_bounds(key: str) -> tuple[dt.date, dt.date]:
    y, q = split_quarter(key)
    start = dt.date(y, 3 * q - 2, 1)
    end_month = 3 * q
    end = dt.date(y, end_month, calendar.monthrange(y, end_month)[1])
    return start, end


def previous_quarter(key: str) -> str:
    y, q = split_quarter(key)
    return quarter_key(y - 1, 4) if q == 1 else quarter_key(y, q - 1)


def quarter_of_date(d: dt.date) -> str:
    return quarter_key(d.year, (d.month - 1) // 3 + 1)


def last_completed_quarter(today: dt.date) -> str:
    return previous_quarter(quarter_of_date(today))


def quarters_between(first: str, last: str) -> list[str]:
    out, k = [], first
    while True:
        out.append(k)
        if k == last:
            return out
        y, q = split_quarter(k)
        k = quarter_key(y + 1, 1) if q == 4 else quarter_key(y, q + 1)
        if len(out) > 400:
            raise ValueError(f"{first}..{last} 不是有效的季度区间")


# Dagster partition keys are the warehouse's quarter keys (2024Q3): the UI lists and accepts 2024Q3. Releases
# before the service keyed partitions by the quarter's first day (2024-07-01); that spelling is still accepted.
def partition_to_quarter(partition_key: str) -> str:
    if QUARTER_RE.match(partition_key):
        return partition_key
    try:
        d = dt.date.fromisoformat(partition_key)
    except ValueError:
        raise ValueError(f"分区键 {partition_key!r} 不是季度（示例：2024Q3）") from None
    if d.day != 1 or d.month not in (1, 4, 7, 10):
        raise ValueError(f"分区键 {partition_key} 不是季度首日")
    return quarter_of_date(d)


def quarter_to_partition(key: str) -> str:
    split_quarter(key)  # validates
    return key


def calendar_frame(first_year: int, last_year: int) -> pl.DataFrame:
    """All month, quarter, half and year rows for dim_period."""
    rows = []
    for y in range(first_year, last_year + 1):
        rows.append(dict(period_key=str(y), period_type="year", label=f"{y}年", year=y, half=None, quarter=None,
                         month=None, start_date=dt.date(y, 1, 1), end_date=dt.date(y, 12, 31), quarter_key=None,
                         half_key=None, year_key=str(y)))
        for h in (1, 2):
            rows.append(dict(period_key=f"{y}H{h}", period_type="half", label=f"{y}年{'上' if h == 1 else '下'}半年",
                             year=y, half=h, quarter=None, month=None, start_date=dt.date(y, 6 * h - 5, 1),
                             end_date=dt.date(y, 6 * h, 30 if h == 1 else 31), quarter_key=None,
                             half_key=f"{y}H{h}", year_key=str(y)))
        for q in range(1, 5):
            k = quarter_key(y, q)
            s, e = quarter_bounds(k)
            rows.append(dict(period_key=k, period_type="quarter", label=quarter_label(k), year=y, half=(q + 1) // 2,
                             quarter=q, month=None, start_date=s, end_date=e, quarter_key=k,
                             half_key=f"{y}H{(q + 1) // 2}", year_key=str(y)))
        for m in range(1, 13):
            q = (m - 1) // 3 + 1
            rows.append(dict(period_key=f"{y}-{m:02d}", period_type="month", label=f"{y}年{m}月", year=y,
                             half=(m - 1) // 6 + 1, quarter=q, month=m, start_date=dt.date(y, m, 1),
                             end_date=dt.date(y, m, calendar.monthrange(y, m)[1]), quarter_key=quarter_key(y, q),
                             half_key=f"{y}H{(m - 1) // 6 + 1}", year_key=str(y)))
    return pl.DataFrame(rows, schema_overrides={"half": pl.Int32, "quarter": pl.Int32, "month": pl.Int32,
                                                "year": pl.Int32})


# ------------------------------------------------------------------ free-text period grammar
def _cn_int(s: str) -> int | None:
    """Small Chinese numerals used in periods (一..十二, 二〇二四). cn2an is not used: these tokens sit inside
    free text and cn2an.transform must never run on free text (it rewrites names such as 三里河)."""
    if s.isdigit():
        return int(s)
    if all(c in CN_DIGIT for c in s) and len(s) == 4:  # 二〇二四
        return int("".join(str(CN_DIGIT[c]) for c in s))
    if s == "十":
        return 10
    if s.startswith("十") and len(s) == 2 and s[1] in CN_DIGIT:
        return 10 + CN_DIGIT[s[1]]
    if len(s) == 1 and s in CN_DIGIT:
        return CN_DIGIT[s]
    return None


_NUM = r"(\d{1,4}|[〇零一二两三四五六七八九十]{1,4})"
# a quarter number that ends a range (1-3季度 is cumulative, not the third quarter) is not a quarter
_P_YEAR_Q = re.compile(rf"(?:(\d{{4}}|\d{{2}}|[〇零一二三四五六七八九]{{4}})\s*(?:年度?|[-/.]?)\s*)?(?<![-—~至到\d前])"
                       rf"第?\s*{_NUM}\s*季度")
_P_QNOTE = re.compile(r"(?:(\d{4}|\d{2})\s*(?:年)?\s*[-_]?\s*)?Q([1-4])(?![0-9])", re.I)
_P_MONTH_RANGE = re.compile(rf"(?:(\d{{4}})\s*年\s*)?{_NUM}\s*(?:月份?)?\s*[-—~至到]\s*(?:(\d{{4}})\s*年\s*)?"
                            rf"{_NUM}\s*月")
# a year that stands for a period, not part of a date such as 2025年1月10日, 2025-01-10 or 20250110
_P_YEAR = re.compile(r"(?<![0-9])((?:19|20)\d{2})(?![0-9])(?!\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日)"
                     r"(?!\s*[-/.]\s*\d{1,2}\s*[-/.]\s*\d{1,2})")
_P_MONTH = re.compile(r"(?<![0-9-])(\d{1,2}|[一二三四五六七八九十]{1,3})\s*月(?:份)?(?!\s*\d{1,2}\s*日)")
_P_CUMULATIVE = re.compile(r"截至|截止|累计|至今|(?:\d|[一二三四])\s*[-—~至到]\s*(?:\d|[一二三四])\s*季度|前\s*[1-4一二三四两]\s*个?\s*季度")
_P_HALF_OR_YEAR = re.compile(r"上半年|下半年|全年|年度")


def parse_quarter(text: str, default_year: int | None = None) -> str | None:
    """Quarter named by free text, or None. Covers 2024年第三季度, 2024年三季度, 三季度 (+default_year), 第3季度,
    2024Q3, 2024-Q3, 24年Q3, 7-9月, 二〇二四年第三季度. Month notations are not quarters and return None."""
    if not text:
        return None
    t = unicodedata.normalize("NFKC", str(text))
    m = _P_YEAR_Q.search(t)
    if m:
        q = _cn_int(m.group(2))
        y = _year(m.group(1), t, default_year)
        if q and 1 <= q <= 4 and y:
            return quarter_key(y, q)
    m = _P_QNOTE.search(t)
    if m:
        y = _year(m.group(1), t, default_year)
        if y:
            return quarter_key(y, int(m.group(2)))
    m = _P_MONTH_RANGE.search(t)
    if m and not m.group(3):
        a, b = _cn_int(m.group(2)), _cn_int(m.group(4))
        if a and b and b - a == 2 and a in (1, 4, 7, 10):
            y = int(m.group(1)) if m.group(1) else _year(None, t, default_year)
            if y:
                return quarter_key(y, (a - 1) // 3 + 1)
    return None


def _year(token: str | None, text: str, default_year: int | None) -> int | None:
    if token:
        if len(token) == 4 and not token.isdigit():
            return _cn_int(token)
        y = int(token)
        return 2000 + y if y < 100 else y
    return explicit_year(text) or default_year


def explicit_year(text: str) -> int | None:
    """The one year a text names as a period (dates such as 填报日期：2025年1月10日 do not count); None when it
    names none or several."""
    years = {int(y) for y in _P_YEAR.findall(unicodedata.normalize("NFKC", text or ""))}
    return years.pop() if len(years) == 1 else None


def names_month(text: str) -> bool:
    """9月份 / 七月 / 2024年9月: a month, which is not a quarter (and must not fall back to one)."""
    t = unicodedata.normalize("NFKC", text or "")
    m = _P_MONTH_RANGE.search(t)
    if m:
        return False
    return bool(_P_MONTH.search(t))


def is_cumulative(text: str) -> bool:
    """Year-to-date or multi-quarter notations (截至9月30日, 1-3季度, 1-9月, 上半年, 全年): not one quarter."""
    t = unicodedata.normalize("NFKC", text or "")
    m = _P_MONTH_RANGE.search(t)
    if m:
        a, b = _cn_int(m.group(2)), _cn_int(m.group(4))
        if m.group(3) or (a and b and not (b - a == 2 and a in (1, 4, 7, 10))):
            return True   # a span that is not one quarter (1月-9月, 2023年12月至2024年2月)
    return bool(_P_CUMULATIVE.search(t))


CUMULATIVE, MONTH, HALF_OR_YEAR = "cumulative_period", "month_without_year", "not_a_quarter"
CONFLICT = "conflicting_period"
QUARTER_END = {(3, 31): 1, (6, 30): 2, (9, 30): 3, (12, 31): 4}
_P_YTD_DATE = re.compile(r"(?:截至|截止)\s*(?:(\d{4})\s*年)?\s*(\d{1,2}|[一二三四五六七八九十]{1,3})\s*月\s*"
                         r"(?:(\d{1,2})\s*日|底|末)?")
_P_YTD_MONTHS = re.compile(r"(?:(\d{4})\s*年\s*)?(?<![0-9])(?:1|一)\s*(?:月份?)?\s*[-—~至到]\s*"
                           r"(\d{1,2}|[一二三四五六七八九十]{1,3})\s*月")
_P_YTD_FIRST_N = re.compile(r"(?:(\d{4})\s*年\s*)?前\s*([1-4一二三四两])\s*个?\s*季度")
_P_YTD_QUARTERS = re.compile(r"(?:(\d{4})\s*年\s*)?(?:第)?(?:1|一)\s*[-—~至到]\s*(?:第)?([1-4一二三四])\s*季度")


def ytd_quarter(text: str | None, default_year: int | None = None) -> tuple[str | None, str | None]:
    """Year-to-date notations that end at a quarter end: (quarter key, None), e.g. 截至9月30日 / 1-9月 /
    1-3季度 -> 2024Q3, 上半年 -> 2024Q2, 全年 / 2024年度 -> 2024Q4. (None, reason) when cumulative but not
    ending at a quarter end (截至8月15日) or without a year; (None, None) when not cumulative at all."""
    if not text:
        return None, None
    t = unicodedata.normalize("NFKC", text)
    y = explicit_year(t) or default_year
    end_q = None
    if parse_quarter(t, default_year) and "累计" not in t:
        return None, None   # 第三季度（截至9月30日）: a quarterly report with an as-of date, not year-to-date
    m = _P_YTD_DATE.search(t)
    if m:
        mo, day = _cn_int(m.group(2)), int(m.group(3)) if m.group(3) else None
        y = int(m.group(1)) if m.group(1) else y
        if mo and day is None and mo in (3, 6, 9, 12):
            end_q = mo // 3
        elif mo and day and (mo, day) in QUARTER_END:
            end_q = QUARTER_END[(mo, day)]
        else:
            return None, CUMULATIVE
    elif (m := _P_YTD_MONTHS.search(t)):
        mo = _cn_int(m.group(2))
        y = int(m.group(1)) if m.group(1) else y
        if not mo or mo not in (3, 6, 9, 12):
            return None, CUMULATIVE
        end_q = mo // 3
    elif (m := _P_YTD_QUARTERS.search(t)) or (m := _P_YTD_FIRST_N.search(t)):
        end_q = _cn_int(m.group(2))
        y = int(m.group(1)) if m.group(1) else y
    elif "上半年" in t:
        end_q = 2
    elif is_cumulative(t):
        return None, CUMULATIVE
    else:
        return None, None
    if not y:
        return None, CUMULATIVE
    return quarter_key(y, end_q), None
_P_YM = [
    re.compile(r"(?<![0-9])((?:19|20)\d{2})\s*年\s*(\d{1,2}|[一二三四五六七八九十]{1,3})\s*月(?!\s*\d{1,2}\s*日)"),
    re.compile(r"(?<![0-9])((?:19|20)\d{2})\s*[./-]\s*(\d{1,2})(?![0-9])(?!\s*[./-]\s*\d)"),
    re.compile(r"(?<![0-9])((?:19|20)\d{2})(0[1-9]|1[0-2])(?![0-9])"),
]


def month_key(year: int, month: int) -> str:
    return f"{year}-{month:02d}"


_EN_MONTHS = {m: i for i, m in enumerate(["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                            "nov", "dec"], 1)}
_P_EN_MONTH = re.compile(r"(?<![a-z])(jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)(?:uary|ruary|ch|il|e|y|ust|t|"
                         r"tember|ober|ember)?(?![a-z])[-\s/.']*(\d{2}|\d{4})(?![0-9])(?!\s*,?\s*\d)", re.I)
# Excel turns a typed 2020-09 into the date 2020-09-01 (read back as 2020-09-01 00:00:00) and stores it as a
# serial day number (44075); day 1 of a month in a period cell is that month
_P_EXCEL_DATE = re.compile(r"^((?:19|20)\d{2})-(\d{2})-(\d{2})(?:[ T]00:00:00)?$")


def excel_date_period(text: str | None) -> tuple[str | None, str | None]:
    """A period cell Excel turned into a date: (month key, None) for the first day of a month, given as a date
    or as a serial number; (None, 'date_as_period') for any other date (1-6 became 1月6日: not a period)."""
    if not text:
        return None, None
    t = text.strip()
    if re.fullmatch(r"\d{5}(\.0+)?", t) and 20000 <= float(t) <= 60000:
        d = dt.date(1899, 12, 30) + dt.timedelta(days=int(float(t)))
        return (month_key(d.year, d.month), None) if d.day == 1 else (None, "date_as_period")
    m = _P_EXCEL_DATE.match(t)
    if m:
        return (month_key(int(m.group(1)), int(m.group(2))), None) if m.group(3) == "01" else (None, "date_as_period")
    return None, None


def parse_month(text: str | None, default_year: int | None = None) -> str | None:
    """2024年9月 / 2024.09 / 2024/9 / 202409 / Sep-20 / 9月份 / 九月 (with default_year) -> 2024-09."""
    if not text:
        return None
    t = unicodedata.normalize("NFKC", text)
    m = _P_EN_MONTH.search(t)
    if m:
        y = int(m.group(2))
        return month_key(2000 + y if y < 100 else y, _EN_MONTHS[m.group(1).lower()])
    for rx in _P_YM:
        m = rx.search(t)
        if m:
            mo = _cn_int(m.group(2))
            if mo and 1 <= mo <= 12:
                return month_key(int(m.group(1)), mo)
    m = _P_MONTH.search(t)
    if m and default_year:
        mo = _cn_int(m.group(1))
        if mo and 1 <= mo <= 12:
            return month_key(default_year, mo)
    return None


def period_end(key: str) -> dt.date:
    """Last day of a quarter (2024Q3) or month (2024-09) key."""
    if QUARTER_RE.match(key):
        return quarter_bounds(key)[1]
    y, m = int(key[:4]), int(key[5:7])
    return dt.date(y, m, calendar.monthrange(y, m)[1])


def quarter_of_key(key: str) -> str:
    return key if QUARTER_RE.match(key) else quarter_key(int(key[:4]), (int(key[5:7]) - 1) // 3 + 1)


def classify_period(text: str | None, default_year: int | None = None) -> tuple[str | None, str | None]:
    """(key, None) when ``text`` names one quarter (2024Q3) or one month (2024-09: rolled up to its quarter
    by the fact build); (None, reason) when it names a period that must not fall back to a file-level one
    (year-to-date, a half or a year, a month without a year); (None, None) when it says nothing about the
    period. Year-to-date values are not differenced here (reader issue); they are rejected, not misfiled."""
    if not text:
        return None, None
    t = unicodedata.normalize("NFKC", text)
    q = parse_quarter(t, default_year)
    if q and "累计" not in t:   # an explicitly named quarter beats an as-of or deadline date (截止10月10日报送)
        if not _P_MONTH_RANGE.search(t) and (names_month(t) or any(rx.search(t) for rx in _P_YM)):
            mk = parse_month(t, int(q[:4]))
            if mk and quarter_of_key(mk) == q:
                return mk, None   # 2024年第三季度7月份报表: the month is the finer period
            if mk:
                return None, CONFLICT
        return q, None
    if is_cumulative(t):
        return None, CUMULATIVE
    if q:
        return q, None
    if _P_HALF_OR_YEAR.search(t):
        return None, HALF_OR_YEAR
    if names_month(t) or any(rx.search(t) for rx in _P_YM) or _P_EN_MONTH.search(t):
        mk = parse_month(t, default_year)
        return (mk, None) if mk else (None, MONTH)
    return None, None


def normalise_quarter_arg(text: str) -> str:
    """CLI/partition input: 2024Q3, 2024-07-01 or 2024年第三季度 -> 2024Q3; anything else is an error."""
    t = text.strip()
    if QUARTER_RE.match(t):
        return t
    if re.match(r"^\d{4}-\d{2}-\d{2}$", t):
        return partition_to_quarter(t)
    q = parse_quarter(t)
    if not q:
        raise ValueError(f"无法识别的季度：{text!r}（示例：2024Q3 或 2024年第三季度）")
    return q
