"""Personal data kept out (PIPL: collect only what the purpose needs).

Survey files carry the names and phone numbers of the people who filled, checked and signed them (填表人：王芳
联系电话：138…) in titles, footers and stray cells. The appraisal needs none of it. Every piece of free text
from a file passes through ``mask_text`` before it is stored anywhere (raw_file.notes and message, quarantine,
stg_value.raw_text, the CLI and Dagster summaries); everything downstream (facts, snapshot, report, exports,
Data Docs) is built from those tables, so it never sees the original.

``mask_text`` replaces
- the value after a person label (填表人、审核人、负责人、联系人、统计人、制表人 …, with a half- or full-width colon,
  spaces, or a （签字） between) by 已隐去: "填表人：王芳  审核人：李强" -> "填表人：已隐去  审核人：已隐去";
- the value after a contact label (联系电话、电话、手机、邮箱、身份证号 …) the same way;
- anywhere in the text: mainland mobile numbers (1[3-9] and 9 digits, also written 138-1234-5678 or +86 …),
  landlines (0 + 2-3 digit area code + 7-8 digits, with or without a hyphen or brackets), 18-digit ID card
  numbers and e-mail addresses.

A cell under a personal column (联系人, 联系电话, 姓名 …) is masked whole: a bare name there has no label to find.
Written by hand: the maintained PII libraries (presidio, scrubadub) are English-centred, pull in spaCy models
that are not installable offline, and know neither the labels of a Chinese statistical form nor 已隐去.
"""

import re

import polars as pl

MASK = "已隐去"

PERSON_LABELS = ["单位负责人", "主管领导", "分管领导", "填表人员", "填报人员", "统计人员", "填表人", "填报人", "审核人",
                 "复核人", "审批人", "负责人", "联系人", "统计人", "制表人", "经办人", "核对人", "签发人", "报送人",
                 "录入人", "校对人", "审核", "制表", "填表", "签字", "姓名"]
CONTACT_LABELS = ["联系电话", "联系方式", "办公电话", "手机号码", "手机号", "固定电话", "电话号码", "电话", "手机", "座机",
                  "传真", "电子邮箱", "邮箱", "E-mail", "Email", "email", "身份证号码", "身份证号", "身份证"]
_LABELS = sorted(PERSON_LABELS + CONTACT_LABELS, key=len, reverse=True)
_LABEL_ALT = "|".join(re.escape(x) for x in _LABELS)
# label, an optional bracketed note (（签字）), then a colon or spaces, then the value up to the next label-like
# token (…：), a separator, a run of two spaces or the end of the text
_LABELLED = re.compile(
    rf"(?P<label>{_LABEL_ALT})(?P<note>\s*[(（][^)）]{{0,10}}[)）])?"
    rf"(?:\s*[:：]\s*|\s+)(?P<value>(?:(?!{re.escape(MASK)})).+?)"
    rf"(?=\s*[，,;；。|、/]|\s+[^\s:：]{{1,10}}\s*[:：]|\s*(?:{_LABEL_ALT})\s*[(（:：]|\s+(?:{_LABEL_ALT})\s|\s{{2,}}|$)")
# written without a separator: 填表人王芳 (the label opens the text or follows a space, quote or bracket, and a
# 2-4 character name follows up to a space, separator, quote or the end)
_GLUED_LABELS = ["填表人", "填报人", "审核人", "复核人", "审批人", "负责人", "联系人", "统计人", "制表人", "经办人"]
_GLUED = re.compile(rf"(?:^|(?<=[\s'\"‘“「『（(：:，,;；]))(?P<label>{'|'.join(_GLUED_LABELS)})"
                    rf"(?P<value>[\u4e00-\u9fff]{{2,4}})(?=\s|$|[，,;；'\"’”」』)）])")
_MOBILE = re.compile(r"(?<!\d)(?:\+?86[-\s]?)?1[3-9]\d(?:[-\s]?\d{4}){2}(?!\d)")
_LANDLINE = re.compile(r"(?<!\d)[(（]?0\d{2,3}[)）]?[-－—\s]?\d{7,8}(?:-\d{1,5})?(?!\d)")
_ID_CARD = re.compile(r"(?<!\d)\d{6}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx](?![\dXx])")
_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+")
# cheap first pass in polars (Rust regex, no look-around): only texts that may hold personal data go to Python
_MAYBE = rf"{_LABEL_ALT}|\d{{3,4}}[-\s－—)）]?\d{{4}}|@"
# a column whose cells are personal data as a whole
PERSONAL_HEADER = re.compile(
    r"(填表|填报|审核|复核|审批|负责|联系|统计|制表|经办|签字|签发|报送|录入)人|联系(电话|方式)|电话|手机|身份证|邮箱|"
    r"e-?mail|姓名", re.I)


def mask_text(text):
    """The text with every labelled name and contact and every phone, ID card number and e-mail address replaced
    by 已隐去. None and non-strings pass through unchanged."""
    if not isinstance(text, str) or not text:
        return text
    out = _LABELLED.sub(lambda m: f"{m['label']}{m['note'] or ''}：{MASK}", text)
    out = _GLUED.sub(lambda m: f"{m['label']}：{MASK}", out)
    for pattern in (_EMAIL, _ID_CARD, _MOBILE, _LANDLINE):
        out = pattern.sub(MASK, out)
    return out


def mask_list(texts):
    return None if texts is None else [mask_text(t) for t in texts]


def is_personal_header(header) -> bool:
    """联系人, 联系电话, 填表人, 手机, 身份证号, 姓名 …: a column of personal data (its cells are masked whole)."""
    if not isinstance(header, str) or not header:
        return False
    return bool(PERSONAL_HEADER.search(re.sub(r"\s+", "", header)))


def mask_series(s: pl.Series) -> pl.Series:
    """mask_text over a String column, in Python only for the distinct values the cheap filter flags."""
    if s.dtype != pl.String or s.len() == 0:
        return s
    flagged = s.str.contains(_MAYBE).fill_null(False)      # 0.2 s per million cells; numbers are never flagged
    if not flagged.any():
        return s
    mapping = {v: m for v in s.filter(flagged).unique().to_list() if (m := mask_text(v)) != v}
    return s.replace(mapping) if mapping else s


def mask_frame(df: pl.DataFrame, columns: list[str], header_column: str | None = None,
               value_column: str | None = None, quote_column: str | None = None) -> pl.DataFrame:
    """mask_text over ``columns``. When ``header_column`` names a personal column (联系人, 联系电话 …) the
    ``value_column`` of that row is replaced whole by 已隐去; ``quote_column`` (a message that quotes the value)
    first gets the masked value in place of the original, then is masked like the rest."""
    present = [c for c in columns if c in df.columns]
    if not present or df.height == 0:
        return df
    if value_column in df.columns:
        before = df[value_column]
        df = df.with_columns(mask_series(before))
        if header_column in df.columns:
            heads = df[header_column].drop_nulls().unique().to_list()
            personal = [h for h in heads if is_personal_header(h)]
            if personal:
                df = df.with_columns(
                    pl.when(pl.col(header_column).is_in(personal) & pl.col(value_column).is_not_null()
                            & (pl.col(value_column).str.strip_chars() != ""))
                    .then(pl.lit(MASK)).otherwise(pl.col(value_column)).alias(value_column))
        if quote_column in df.columns:
            df = _mask_quotes(df, before, value_column, quote_column)
    return df.with_columns(*[mask_series(df[c]) for c in present if c != value_column])


def _mask_quotes(df: pl.DataFrame, before: pl.Series, value_column: str, quote_column: str) -> pl.DataFrame:
    """A message that quotes the cell (无法解析 '联系人唐僧 …') gets the cell's masked text in place of the
    original, whatever the rules above made of the message on its own."""
    changed = (before != df[value_column]).fill_null(False)
    if not changed.any():
        return df
    quoted = [m.replace(b, a) if isinstance(m, str) and b and ch else m
              for m, b, a, ch in zip(df[quote_column].to_list(), before.to_list(), df[value_column].to_list(),
                                     changed.to_list())]
    return df.with_columns(pl.Series(quote_column, quoted, dtype=pl.String))
