"""Resource limits checked before a survey file is read (the limits themselves: ``config.LIMIT_SETTINGS``).

Every check looks at the file without materialising it:

- file size: ``stat``;
- xlsx: the zip's central directory (declared uncompressed sizes and the compression ratio, no byte inflated),
  then one streamed pass over every part through ``zipfile`` in 1 MB chunks that counts rows and cells and finds
  the largest row and column a cell reference names. calamine (fastexcel) builds a dense grid up to the furthest
  cell, so one cell at ``Z23000000`` asks for gigabytes and aborts the process (a Rust allocation failure cannot
  be caught): the furthest reference is what has to be bounded, not the number of cells. The sheet's
  ``<dimension>`` element is not trusted (calamine ignores it too). ``zipfile`` stops each part at its declared
  size and checks its CRC, so a part that lies about its size is caught here, not by calamine;
- ods: the same central-directory checks; the furthest row and column (counting table:number-rows-repeated and
  table:number-columns-repeated, which calamine expands) are bounded during the reader's streamed pass over
  content.xml, before calamine opens the file;
- CSV/TSV/TXT: line count in 1 MB chunks of bytes, fields of the widest line among the first ones;
- JSON: nesting depth by an iterative scan before ``json.loads`` (deep nesting makes the parser raise
  RecursionError, or exhaust the C stack when the recursion limit is raised).

A file over a limit raises ``FileRejected("too_large", …)`` with a Chinese message naming the limit, the
measured value and the environment variable that changes it. The hand-written scans are on purpose: no
maintained library bounds a zip's inflated size or a JSON document's depth without reading it whole.
"""

import functools
import itertools
import re
import zipfile
import zlib
from pathlib import Path

from . import config

CHUNK = 1 << 20
DOC = "docs/limits-and-privacy.md"
# a part below this many inflated bytes is never judged by its compression ratio (tiny XML compresses well)
RATIO_MIN_BYTES = 1 << 20


class TooLarge(Exception):
    """Raised by the checks; readers turn it into FileRejected("too_large", message)."""

    def __init__(self, message: str, where: str = "", reason: str = "too_large"):
        super().__init__(message)
        self.message, self.where, self.reason = message, where, reason


def _fmt(value: float, unit: str) -> str:
    if unit == "MB":
        return f"{value:,.1f} MB"
    if unit == "倍":
        return f"{value:,.0f} 倍"
    return f"{value:,.0f} {unit}"


def _over(name: str, measured: float, where: str = "", prefix: str = "", at_least: bool = False) -> TooLarge:
    """为 … 超过上限 …：the limit's label, the measured value, the limit and the variable that changes it."""
    env, _default, label, unit = config.LIMIT_SETTINGS[name]
    limit = config.limits()[name]
    value = f"{'至少 ' if at_least else ''}{_fmt(measured, unit)}"
    return TooLarge(f"{prefix}{label} {value} 超过上限 {_fmt(limit, unit)}，文件未读取"
                    f"（上限由环境变量 {env} 设置，见 {DOC}）", where)


# ------------------------------------------------------------------ every file
def check_file_size(path: Path) -> None:
    check_size(Path(path).stat().st_size)


def check_size(n_bytes: int) -> None:
    """The file-size limit on a size known before the bytes are here (an object's size in a bucket listing)."""
    size_mb = n_bytes / (1 << 20)
    if size_mb > config.limits()["max_file_mb"]:
        raise _over("max_file_mb", size_mb)


# ------------------------------------------------------------------ xlsx
# a match holds exactly one "<" (its first byte): it lies whole between one "<" and the next, so cutting the
# stream just before a "<" never splits a match. Fast path: the tags as Excel, WPS and openpyxl write them
# (r the first attribute, no namespace prefix), counted and matched with literal prefixes; a chunk holding any
# other spelling of a row or cell tag is scanned with the general patterns.
_ROW_R = re.compile(rb'<row r="(\d+)"')
# <c>, <row/>, a tab before r; <x:c …>. Two patterns, each starting with one literal byte that the search jumps to:
# one alternation of both was tried at every byte of the part (ten times as long)
_ODD_TAG = re.compile(rb'<(?:row|c)[>/\t\r\n]')
_ODD_NS_TAG = re.compile(rb':(?:row|c)[\s>/]')
_ROW_REF = re.compile(rb'<(?:\w+:)?row\b[^<>]*?\br="(\d+)"')
_CELL_REF = re.compile(rb'<(?:\w+:)?c\b[^<>]*?\br="([A-Z]+)(\d+)"')
_ROW_TAG = re.compile(rb'<(?:\w+:)?row[\s>/]')
_CELL_TAG = re.compile(rb'<(?:\w+:)?c[\s>/]')
MAX_RUN = 4 * CHUNK  # bytes without any "<": no worksheet, shared-string table or style part holds such a run


def _number(digits: bytes) -> int:
    return int(digits) if len(digits) <= 12 else 10 ** 12   # a 5,000-digit reference is simply "too far"


def _col_number(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ch - 64
    return n


def check_xlsx(path: Path) -> dict:
    """Declared sizes and compression ratio from the central directory, then one bounded streamed pass over the
    parts. Returns what was measured (inflated bytes, rows, columns, cells of the largest sheet)."""
    lim = config.limits()
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return {}          # not a zip: the reader reports it as file_unreadable
    with z:
        infos = _check_zip_directory(z, lim)
        worst = {"inflated_bytes": 0, "rows": 0, "columns": 0, "cells": 0}
        for i in infos:
            if i.is_dir():
                continue
            m = _scan_part(z, i, lim)
            worst["inflated_bytes"] += m["bytes"]
            for k in ("rows", "columns", "cells"):
                worst[k] = max(worst[k], m[k])
        return worst


def _check_zip_directory(z: zipfile.ZipFile, lim: dict) -> list[zipfile.ZipInfo]:
    """Declared inflated sizes and per-part compression ratio, from the central directory alone."""
    infos = z.infolist()
    declared = sum(i.file_size for i in infos)
    if declared > lim["max_inflated_mb"] * (1 << 20):
        raise _over("max_inflated_mb", declared / (1 << 20), prefix="按压缩包目录声明，")
    for i in infos:
        ratio = i.file_size / max(i.compress_size, 1)
        if i.file_size >= RATIO_MIN_BYTES and ratio > lim["max_compression_ratio"]:
            raise _over("max_compression_ratio", ratio, where=i.filename)
    return infos


# ------------------------------------------------------------------ ods (OpenDocument)
def check_ods(path: Path) -> None:
    """The zip's central directory (declared sizes, compression ratio). The furthest row and column are measured
    by the reader's own streamed pass over content.xml (readers._ods_structure calls check_extent per row):
    an ods repeats rows and cells by a count (table:number-rows-repeated), so the extent calamine will allocate
    is only known from those counts, not from the number of tags."""
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        return             # not a zip: the reader reports it as file_unreadable
    with z:
        _check_zip_directory(z, config.limits())


def check_extent(rows: int, columns: int, where: str = "") -> None:
    """The dense grid calamine builds for one sheet: rows x columns from its first to its furthest value."""
    lim = config.limits()
    prefix = f"工作表 {where} 的" if where else ""
    if rows > lim["max_rows"]:
        raise _over("max_rows", rows, where, prefix=prefix)
    if columns > lim["max_columns"]:
        raise _over("max_columns", columns, where, prefix=prefix)
    if rows * columns > lim["max_cells"]:
        raise _over("max_cells", rows * columns, where, prefix=prefix)


def _max_number(digits: list[bytes]) -> int:
    """Largest of many digit strings without converting each: the longest ones, then the greatest of those."""
    if not digits:
        return 0
    width = len(max(digits, key=len))
    return _number(max(d for d in digits if len(d) == width))


def _letters(n: int) -> str:
    s = ""
    while n > 0:
        n, r = divmod(n - 1, 26)
        s = chr(65 + r) + s
    return s


@functools.lru_cache(maxsize=4096)
def _greater(value: str, alphabet: str) -> re.Pattern:
    """A pattern for the strings over ``alphabet`` (in its order) greater than ``value``: longer ones, or one
    as long that is greater at the first place it differs. Lets one regex search (no match in an ordinary file)
    replace a Python comparison per cell."""
    cls = re.escape(alphabet)
    n = len(value)
    parts = [f"[{cls}]{{{n + 1},}}"]
    for i, ch in enumerate(value):
        higher = alphabet[alphabet.index(ch) + 1:]
        if higher:
            rest = n - i - 1
            parts.append(re.escape(value[:i]) + f"[{re.escape(higher)}]" + (f"[{cls}]{{{rest}}}" if rest else ""))
    alt = "|".join(parts)
    if alphabet[0] == "0":   # a row number closes the reference; the letters are taken whole (an atomic group):
        # no way of splitting them can start a number, and not retrying each split halves the search
        return re.compile(f'<c r="(?>[A-Z]+)(?:{alt})"'.encode())
    return re.compile(f'<c r="(?:{alt})[0-9]'.encode())


def _measure(head: bytes, max_row: int, max_col: int) -> tuple[int, int, int, int]:
    """Row tags, cell tags, and the furthest row and column named so far, after one stretch of XML."""
    n_row, n_cell = head.count(b"<row "), head.count(b"<c ")
    plain = (head.count(b'<row r="') == n_row and head.count(b'<c r="') == n_cell
             and _ODD_TAG.search(head) is None and _ODD_NS_TAG.search(head) is None)
    if plain:
        max_row = max(max_row, _max_number(_ROW_R.findall(head)))
        if _greater(str(max_row), "0123456789").search(head) is None:   # no cell below the last row named
            pos = 0
            while m := _greater(_letters(max_col), "ABCDEFGHIJKLMNOPQRSTUVWXYZ").search(head, pos):
                letters = re.match(rb'<c r="([A-Z]+)', m.group()).group(1)
                max_col, pos = _col_number(letters[:12]), m.start() + 1
            return n_row, n_cell, max_row, max_col
    refs = set(_CELL_REF.findall(head))
    max_row = max([max_row] + [_number(r) for r in _ROW_REF.findall(head)] + [_number(r) for _, r in refs])
    max_col = max([max_col] + [_col_number(c[:12]) for c, _ in refs])
    return len(_ROW_TAG.findall(head)), len(_CELL_TAG.findall(head)), max_row, max_col


def _scan_part(z: zipfile.ZipFile, info: zipfile.ZipInfo, lim: dict) -> dict:
    """Stream one part: row and cell tags counted, furthest row and column references tracked; stops at the
    first limit crossed. Memory: two chunks."""
    rows = cells = max_row = max_col = total = 0
    carry = b""
    where = info.filename
    sheet = re.sub(r"^.*/|\.xml$", "", where)
    try:
        with z.open(info) as fh:
            while True:
                chunk = fh.read(CHUNK)
                total += len(chunk)
                buf = carry + chunk
                # count what starts before the last "<"; the rest waits for the next chunk
                cut = buf.rfind(b"<") if chunk else len(buf)
                if cut < 0:
                    cut = len(buf)
                head, carry = buf[:cut], buf[cut:]
                if len(carry) > MAX_RUN:
                    raise TooLarge(f"压缩包部件 {where} 含超过 {MAX_RUN >> 20} MB 的无标签内容，不是有效的工作表，"
                                   f"文件未读取", where)
                r, c, max_row, max_col = _measure(head, max_row, max_col)
                rows, cells = rows + r, cells + c
                height = max(rows, max_row)
                width = max_col
                if height > lim["max_rows"]:
                    raise _over("max_rows", height, where, prefix=f"工作表部件 {sheet} 的")
                if width > lim["max_columns"]:
                    raise _over("max_columns", width, where, prefix=f"工作表部件 {sheet} 的")
                if max(cells, height * width) > lim["max_cells"]:
                    raise _over("max_cells", max(cells, height * width), where, prefix=f"工作表部件 {sheet} 的")
                if not chunk:
                    break
    except zipfile.BadZipFile as e:
        # a part whose bytes do not match its declared size (CRC): the directory lied, nothing more is read
        raise TooLarge(f"压缩包部件 {where} 的实际内容与目录声明的大小或校验和不符，文件未读取", where) from e
    except (zlib.error, EOFError, NotImplementedError, RuntimeError, OSError) as e:
        # corrupt deflate data, an unsupported compression method or an encrypted part: not read by anyone
        raise TooLarge(f"压缩包部件 {where} 无法解压（{type(e).__name__}），不是有效的 xlsx 文件", where,
                       reason="file_unreadable") from e
    return {"bytes": total, "rows": max(rows, max_row), "columns": max_col, "cells": cells}


# ------------------------------------------------------------------ legacy xls (BIFF8)
def check_xls(path: Path) -> None:
    """A BIFF8 sheet holds at most 65,536 x 256 cells, but calamine still builds the dense grid up to the furthest
    cell: two cells at A1 and IV65536 cost about 1 GB. xlrd (ragged rows: no padding) gives each sheet's extent."""
    import xlrd

    lim = config.limits()
    try:
        book = xlrd.open_workbook(str(path), on_demand=True, ragged_rows=True)
    except Exception:   # not BIFF8: the reader reports it as file_unreadable
        return
    try:
        for name in book.sheet_names():
            sh = book.sheet_by_name(name)
            rows, cols = sh.nrows, sh.ncols
            book.unload_sheet(name)
            for key, value in (("max_rows", rows), ("max_columns", cols), ("max_cells", rows * cols)):
                if value > lim[key]:
                    raise _over(key, value, name, prefix=f"工作表 {name} 的")
    finally:
        book.release_resources()


# ------------------------------------------------------------------ csv / tsv / txt
def check_delimited(path: Path) -> int:
    """Lines counted in chunks of bytes (a UTF-16 line feed is 0x0A too), before anything is decoded."""
    lim = config.limits()
    lines = 0
    last = b""
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            lines += chunk.count(b"\n")
            last = chunk
            if lines > lim["max_rows"]:
                raise _over("max_rows", lines)
    if last and not last.endswith((b"\n", b"\n\x00")):
        lines += 1
    if lines > lim["max_rows"]:
        raise _over("max_rows", lines)
    return lines


def check_width(width: int, height: int) -> None:
    """Fields of the widest row among the first lines, and rows x fields (called by the CSV reader after it
    has found the table's widest row, before polars parses the body)."""
    lim = config.limits()
    if width > lim["max_columns"]:
        raise _over("max_columns", width)
    if width * height > lim["max_cells"]:
        raise _over("max_cells", width * height)


# ------------------------------------------------------------------ json
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str, stop_at: int | None = None) -> int:
    """Deepest nesting of arrays and objects, brackets inside strings not counted. Iterative (strings removed,
    then a running sum over the brackets): a document nested a million levels deep is measured with constant
    stack and no Python loop per character."""
    opens = text.count("[") + text.count("{")
    if stop_at is not None and opens <= stop_at:
        return opens       # cannot be deeper than the number of brackets it has
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets)), default=0)


# every byte but the quote and the four brackets; "[" and "]" read as "{" and "}" (valid JSON nests them properly)
_NOT_STRUCTURE = bytes(sorted(set(range(256)) - set(b'"[]{}')))
_AS_BRACES = bytes.maketrans(b"[]", b"{}")
_BYTE_STRING = re.compile(rb'"[^"]*"')


def json_depth_valid(text: str, stop_at: int | None = None) -> int:
    """``json_depth`` of a document that is valid JSON, in C-speed passes over its UTF-8 bytes instead of a regex
    and a running sum over every string and bracket of the text (a 2.6 MB record file: 70 ms -> 10 ms).
    Escaped backslashes and escaped quotes are dropped first (left to right, as JSON pairs them), then every
    byte but quotes and brackets, then the strings (now brackets between two quotes); ASCII bytes never occur
    inside a multi-byte UTF-8 character. Each ``replace`` of "{}" then removes the innermost level (it does not
    look again at what it has joined): the number of passes until nothing is left is the depth; with
    ``stop_at``, it stops at ``stop_at + 1``. Not meaningful on text that is not valid JSON (brackets that never
    empty count as deeper than any limit): the reader then asks ``check_json_depth`` (see readers._read_json)."""
    data = text.encode("utf-8", "surrogatepass")
    if b"\\" in data:
        data = data.replace(b"\\\\", b"").replace(b'\\"', b"")
    # a string without brackets is now "", removed by a plain replace (adjacent quotes close one string and open
    # the next, or open and close an empty one: either way removing them keeps what lies outside the strings)
    rest = data.translate(_AS_BRACES, _NOT_STRUCTURE).replace(b'""', b"")
    if b'"' in rest:      # strings holding brackets
        rest = _BYTE_STRING.sub(b"", rest).replace(b'"', b"")   # an unpaired quote is invalid JSON anyway
    depth = 0
    while rest and (stop_at is None or depth <= stop_at):
        inner = rest.replace(b"{}", b"")
        if len(inner) == len(rest):      # unbalanced: not JSON
            return max(depth + len(rest), (stop_at or 0) + 1)
        rest, depth = inner, depth + 1
    return depth


def json_depth_fits(text: str) -> bool:
    """Whether a valid JSON document is within the depth limit (what ``check_json_depth`` decides, faster)."""
    limit = int(config.limits()["max_json_depth"])
    return text.count("[") + text.count("{") <= limit or json_depth_valid(text, stop_at=limit) <= limit


def check_json_depth(text: str) -> None:
    limit = int(config.limits()["max_json_depth"])
    depth = json_depth(text, stop_at=limit)
    if depth > limit:
        raise _over("max_json_depth", depth, at_least=True)   # the scan stops at the first level past the limit


def check_json_records(n: int) -> None:
    if n > config.limits()["max_rows"]:
        raise _over("max_rows", n, prefix="JSON 记录")


__all__ = ["TooLarge", "check_file_size", "check_size", "check_xlsx", "check_ods", "check_extent", "check_delimited",
           "check_width", "check_json_depth", "check_json_records", "json_depth", "json_depth_valid",
           "json_depth_fits"]
