"""Bytes -> clean Simplified text.

The decode ladder is hand-written on purpose: encoding detectors mislabel short GBK text (see README
"编码"), and a ladder of BOM -> strict UTF-8 -> best of {gb18030, big5} was right on every test file.
"""

import functools
import re
import unicodedata

import opencc

BOMS = [
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
]

# Characters that OpenCC t2s converts wrongly inside place names (乾城 -> 干城). protect_registry_names() adds
# every character of a registry name that t2s would change, since a registry name is Simplified already.
PROTECTED_CHARS = "乾"

_PINYIN = re.compile(r"(?<=\S)\([a-zāáǎàēéěèīíǐìōóǒòūúǔùǖǘǚǜüńňǹ]+\)")
# Symbols that appear when GBK text is decoded one byte out of step (seed 002: 。ㄒ唬┣袑): Bopomofo and
# box-drawing characters never occur in survey tables, private-use characters never in real text.
_MOJIBAKE = re.compile(r"[\u3105-\u312f\u2500-\u257f\ue000-\uf8ff]")


class DecodeError(ValueError):
    """Bytes that no supported encoding reads cleanly."""


def _ordinary_share(text: str) -> float:
    """Share of characters that are ASCII or in GB2312 once simplified: high for the right decode.

    Counted by two whole-text encodes instead of a test per character (a 100,000-character file took 30 ms that
    way): the gb2312 codec writes an ASCII character as one byte and any other character it knows as two, and
    errors="ignore" drops the rest, so ordinary = ascii + (bytes - ascii) / 2. The conversion is not cached: the
    whole text of a file would stay in t2s's cache."""
    if not text:
        return 1.0
    simp = _t2s(text)
    n_ascii = len(simp.encode("ascii", "ignore"))
    n_bytes = len(simp.encode("gb2312", "ignore"))
    return (n_ascii + (n_bytes - n_ascii) // 2) / len(simp)


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Return (text, encoding). Raises DecodeError naming why."""
    for bom, enc in BOMS:
        if data.startswith(bom):
            try:
                return data.decode(enc), enc
            except UnicodeDecodeError as e:
                raise DecodeError(f"带 {enc} 字节序标记但解码失败：{e}") from e
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    candidates = []
    for enc in ("gb18030", "big5"):
        try:
            txt = data.decode(enc)
        except UnicodeDecodeError:
            continue
        candidates.append((_ordinary_share(txt), enc == "gb18030", txt, enc))
    if not candidates:
        raise DecodeError("既不是 UTF-8/UTF-16，也不能按 GB18030 或 Big5 解码")
    candidates.sort(reverse=True)
    _, _, txt, enc = candidates[0]
    return txt, enc


@functools.lru_cache(maxsize=1)
def _converter() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


@functools.lru_cache(maxsize=200_000)
def t2s(text: str) -> str:
    """Traditional -> Simplified, leaving protected characters (乾) untouched."""
    return _t2s(text)


def _t2s(text: str) -> str:
    if text.isascii():
        return text
    conv = _converter().convert(text)
    if any(c in text for c in PROTECTED_CHARS):
        conv = "".join(o if o in PROTECTED_CHARS else c for o, c in zip(text, conv)) if len(conv) == len(text) else conv
    return conv


def protect_registry_names(names) -> set[str]:
    """Protect the characters of registry names that OpenCC t2s would rewrite (the registry is the authority on
    how a place is written). Returns the characters added; the conversion caches are cleared when any are."""
    global PROTECTED_CHARS
    added = set()
    for name in names:
        if name and not name.isascii():
            conv = _converter().convert(name)
            added |= {o for o, c in zip(name, conv) if o != c and o not in PROTECTED_CHARS}
    if added:
        PROTECTED_CHARS += "".join(sorted(added))
        t2s.cache_clear()
        clean_text.cache_clear()
    return added


def mojibake_ratio(text: str) -> float:
    if not text:
        return 0.0
    return len(_MOJIBAKE.findall(text)) / len(text)


@functools.lru_cache(maxsize=500_000)
def clean_text(text: str) -> str:
    """NFKC, pinyin annotations stripped, Traditional -> Simplified, whitespace trimmed. For labels and headers,
    never for numbers (NFKC is applied to numbers separately by the value parser)."""
    if text is None:
        return ""
    t = unicodedata.normalize("NFKC", str(text)).replace("\u3000", " ").strip()
    while "(" in t:  # until none is left: removing x(a(b))'s inner annotation exposes an outer one
        t, n = _PINYIN.subn("", t)
        if not n:
            break
    return t2s(t)


def squash(text: str) -> str:
    """clean_text without any whitespace (南 湖 社 区 -> 南湖社区)."""
    out = re.sub(r"\s+", "", clean_text(text))
    # dropping the spaces can expose an annotation (南湖(nán hú)社区 -> 南湖社区) or let NFKC compose what a space
    # kept apart (A´ -> A + space + U+0301 -> Á): normalise again until nothing changes (twice at most in practice)
    for _ in range(4):
        again = re.sub(r"\s+", "", clean_text(out))
        if again == out:
            break
        out = again
    return out
