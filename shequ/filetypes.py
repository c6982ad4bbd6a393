"""A file's real type from its first bytes (magic numbers), so a PDF renamed .csv is named a PDF.

puremagic (pure Python, maintained) finds the signature; a zip container is then told apart by its members
(xl/ = Excel workbook, word/ = Word document, ppt/ = PowerPoint; an OpenDocument file by its ``mimetype`` member,
application/vnd.oasis.opendocument.spreadsheet = ods), which a first-bytes signature cannot do.
Only the kinds listed in KINDS count: text (CSV, JSON) has no signature, and an unlisted match is not trusted
enough to refuse a file on.
"""

import zipfile
import zlib
from pathlib import Path

import puremagic

# real kind -> Chinese label
KINDS = {
    "pdf": "PDF 文档",
    "xlsx": "Excel 工作簿（xlsx）",
    "ods": "OpenDocument 电子表格（ods）",
    "odt": "OpenDocument 文本（odt）",
    "odp": "OpenDocument 演示文稿（odp）",
    "docx": "Word 文档（docx）",
    "pptx": "PowerPoint 演示文稿（pptx）",
    "zip": "ZIP 压缩包",
    "ole2": "Office 97-2003 文件（xls/doc/et/wps）",
    "png": "PNG 图片",
    "jpg": "JPEG 图片",
    "gif": "GIF 图片",
    "bmp": "BMP 图片",
    "tif": "TIFF 图片",
    "webp": "WebP 图片",
    "rar": "RAR 压缩包",
    "7z": "7z 压缩包",
    "gz": "gzip 压缩文件",
    "exe": "Windows 可执行程序",
    "ofd": "OFD 版式文档",
}
_BY_EXT = {".pdf": "pdf", ".xlsx": "xlsx", ".xlsm": "xlsx", ".docx": "docx", ".pptx": "pptx", ".zip": "zip",
           ".ods": "ods", ".odt": "odt", ".odp": "odp",
           ".xls": "ole2", ".doc": "ole2", ".ppt": "ole2", ".msi": "ole2", ".png": "png", ".jpg": "jpg",
           ".jpeg": "jpg", ".gif": "gif", ".bmp": "bmp", ".tif": "tif", ".tiff": "tif", ".webp": "webp",
           ".rar": "rar", ".7z": "7z", ".gz": "gz", ".tgz": "gz", ".exe": "exe", ".dll": "exe"}
# what each supported extension may really be (an .xls is often HTML or tab text saved by a web system)
# (an .xls or .et that is really an xlsx or ods workbook is read as what it is: readers.read_file)
ALLOWED = {".xlsx": {"xlsx"}, ".xlsm": {"xlsx"}, ".xls": {"ole2", "xlsx", "ods", None},
           ".et": {"ole2", "xlsx", "ods", None}, ".ods": {"ods"},
           ".csv": {None}, ".tsv": {None}, ".txt": {None}, ".json": {None}}


def _mimetype(z: zipfile.ZipFile) -> str:
    try:
        with z.open("mimetype") as fh:
            return fh.read(100).decode("ascii", "replace").strip()
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError, ValueError, zlib.error):
        return ""   # a corrupt or encrypted member: the zip is judged by its other members


def real_kind(path: Path) -> str | None:
    """One of KINDS, or None (text, or nothing this table knows)."""
    with open(path, "rb") as fh:
        head = fh.read(8192)
    if not head:
        return None
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
                mime = _mimetype(z) if "mimetype" in names else ""
        except (zipfile.BadZipFile, OSError):
            return "zip"
        if mime:   # OpenDocument: the mimetype member names the document type
            kind = {"application/vnd.oasis.opendocument.spreadsheet": "ods",
                    "application/vnd.oasis.opendocument.text": "odt",
                    "application/vnd.oasis.opendocument.presentation": "odp"}.get(mime)
            if kind:
                return kind
        for prefix, kind in (("xl/", "xlsx"), ("word/", "docx"), ("ppt/", "pptx")):
            if any(n.startswith(prefix) for n in names):
                return kind
        return "ofd" if "OFD.xml" in names else "zip"
    if head.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return "ole2"
    try:
        matches = puremagic.magic_string(head)
    except puremagic.PureError:
        return None
    for m in sorted(matches, key=lambda m: -m.confidence):
        kind = _BY_EXT.get(m.extension.lower())
        if kind:
            return kind
    return None


def check_extension(path: Path) -> tuple[str, str] | None:
    """(real kind, Chinese message) when the content is not what the extension says, else None."""
    ext = path.suffix.lower()
    kind = real_kind(path)
    allowed = ALLOWED.get(ext)
    if allowed is None or kind in allowed:
        return None
    if ext in (".xlsx", ".xlsm", ".ods") and (kind is None or (kind == "zip" and not zipfile.is_zipfile(path))):
        # not a zip at all, or a zip cut short (its central directory lost): not some other kind of file, a broken
        # workbook, which the workbook reader names unreadable with its own reason
        return None
    return kind, (f"文件扩展名为 {ext}，但内容实为{KINDS[kind]}：请向报送单位索取原始数据表，"
                  f"或按实际类型改正扩展名后重新放入收件箱")
