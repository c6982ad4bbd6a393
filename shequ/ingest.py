"""Inbox -> raw_file + stg_value + quarantine, one file at a time, each file in its own transaction.

A file is identified by the sha256 of its bytes: the same file dropped twice changes nothing, and a corrected
resubmission is a new version whose values supersede the earlier ones (fact build takes the latest version;
stg_value keeps them all). A file that cannot be read is recorded as rejected with its reason and nothing it
would have replaced is touched; the rest of the inbox still loads.

Every cell either lands in stg_value or is written to quarantine with a reason code.
"""

import datetime as dt
import hashlib
import logging
import os
import re
import sys
import time
import traceback
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import duckdb
import polars as pl

from .catalogue import HeaderMatcher, load_catalogue, load_unit_limits
from .config import is_object_inbox
from .duplicates import split_duplicates
from .periods import classify_period, excel_date_period, explicit_year, period_end, quarter_of_key, ytd_quarter
from .readers import CELL_COLUMNS, READERS, FileRead, FileRejected, read_file
from .privacy import mask_frame, mask_list, mask_text
from .registry import MatchIndex, match_frame, resolve_communities, suggest_candidates
from .text import clean_text, protect_registry_names
from .values import parse_cells
from .warehouse import available_cores, frame, transaction

log = logging.getLogger(__name__)
REVISION_MARK = re.compile(r"修改|更正|修订|重报|补报|v\d+|_r\d+", re.I)
RAW_FILE_COLUMNS = ["file_id", "ingest_seq", "source_file", "size_bytes", "modified_at", "file_format", "encoding",
                    "period_keys", "status", "reason_code", "message", "n_cells", "n_loaded", "n_quarantined",
                    "ingested_at", "notes", "source_uri", "object_key", "object_version", "object_etag"]
QUARANTINE_COLUMNS = ["file_id", "source_file", "source_sheet", "source_row", "source_column", "source_cell",
                      "community_raw", "header_raw", "period_key", "raw_text", "reason_code", "message",
                      "quarantined_at"]


@dataclass
class FileSummary:
    source_file: str
    file_id: str
    status: str                  # loaded | rejected | unchanged
    reason_code: str | None = None
    message: str | None = None
    n_cells: int = 0
    n_loaded: int = 0
    n_quarantined: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    period_keys: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    file_format: str = ""
    seconds: float = 0.0         # read + normalise + write, for the per-shape read rate



def inventory(inbox: Path) -> list[Path]:
    """Every file under the inbox, oldest first; a file marked as a revision (修改后, v2 …) after the original it
    corrects when their times tie. None is skipped: a file that cannot be read (.doc, .pdf, a dot-file, an Office
    lock file, an empty file) is rejected by read_file with its reason and still gets a raw_file row."""
    files = [p for p in inbox.rglob("*") if p.is_file()]
    return sorted(files, key=lambda p: (int(p.stat().st_mtime), bool(REVISION_MARK.search(p.stem)), str(p)))


def path_quarter(path: Path, inbox: Path) -> str | None:
    """The quarter the file name or folder names, a named month counting for its quarter (None when only the
    contents can tell)."""
    return rel_quarter(path.relative_to(inbox) if path.is_relative_to(inbox) else Path(path.name))


def rel_quarter(rel: str | PurePosixPath | Path) -> str | None:
    """path_quarter on a path relative to the inbox (an object key under the inbox prefix works the same)."""
    rel = PurePosixPath(rel)
    for part in (rel.stem, *reversed(rel.parent.parts)):
        key, _ = classify_period(part)
        if key:
            return quarter_of_key(key)
    return None


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Ingestor:
    """Holds what every file needs (catalogue, header matcher, registry frame) for one refresh."""

    def __init__(self, con: duckdb.DuckDBPyConnection, inbox: Path):
        # only loaded files are final; a rejected file is read again (a registry, catalogue or code fix may
        # let it load), and its earlier rejection is replaced
        self._setup(con, inbox, frame(con, "SELECT * FROM dim_community"),
                    frame(con, "SELECT * FROM community_alias"),
                    {r[0]: r[1] for r in con.execute("SELECT file_id, status FROM raw_file").fetchall()})

    def _setup(self, con, inbox: Path, dim_community: pl.DataFrame, aliases: pl.DataFrame, known: dict[str, str]):
        self.con = con
        self.inbox = Path(inbox)
        self.catalogue = load_catalogue()
        self.unit_limits = load_unit_limits()
        self.matcher = HeaderMatcher(self.catalogue)
        self.dim_community = dim_community
        self.aliases = aliases
        protect_registry_names(self.dim_community["name"].unique().to_list()
                               + self.dim_community["street"].unique().to_list())
        self.registry = MatchIndex(match_frame(self.dim_community, aliases))
        # community_type by key, for the not-applicable rule: a file fetches its own few hundred rows
        self._types = self.dim_community.select("community_key", "community_type")
        self.districts = sorted(set(self.dim_community["district"].to_list()), key=len, reverse=True)
        self.known = known
        self.deferred: dict | None = None   # a reading worker keeps its write here instead of writing (see below)
        self._rel: str | None = None     # set for the duration of one ingest() call
        self._origin = None

    @classmethod
    def for_worker(cls, inbox: Path, dim_community: pl.DataFrame, aliases: pl.DataFrame,
                   known: dict[str, str]) -> "Ingestor":
        """An Ingestor without a warehouse connection, for a staging worker process: it reads and normalises a
        file and hands back what to write (`prepare`); the parent writes it (`commit_group`)."""
        ing = cls.__new__(cls)
        ing._setup(None, inbox, dim_community, aliases, known)
        return ing

    # -------------------------------------------------------------- one file
    def ingest(self, path: Path, rel: str | None = None, origin=None) -> FileSummary:
        """Read one file. ``rel`` names it relative to the inbox (default: its path under self.inbox); ``origin``
        is the object it was downloaded from (shequ.object_inbox.InboxObject: uri, key, version_id, etag, size,
        modified), recorded as the raw_file row's provenance."""
        t0 = time.perf_counter()
        self._rel, self._origin = rel, origin
        try:
            summary = self._ingest(path)
        finally:
            self._rel = self._origin = None
        summary.seconds = time.perf_counter() - t0
        # what the CLI prints and Dagster keeps as run metadata: masked like the stored copies
        summary.message, summary.notes = mask_text(summary.message), mask_list(summary.notes) or []
        summary.file_format = summary.file_format or path.suffix.lstrip(".").lower()
        return summary

    def prepare(self, path: Path) -> tuple[FileSummary, dict | None]:
        """Read and normalise one file without writing: the summary and the write the parent must commit (None
        when there is nothing to write: the file was loaded before)."""
        self.deferred = {}
        try:
            summary = self.ingest(path)
            return summary, self.deferred.get("write")
        finally:
            self.deferred = None

    def _ingest(self, path: Path) -> FileSummary:
        rel = self._rel or (str(path.relative_to(self.inbox)) if path.is_relative_to(self.inbox) else path.name)
        file_id = sha256(path)
        if self.known.get(file_id) == "loaded":
            if self._origin is not None:
                self._same_bytes_again(file_id, self._origin)
            return FileSummary(rel, file_id, "unchanged")
        now = dt.datetime.now()
        hidden_dir = next((part for part in Path(rel).parts[:-1] if part.startswith(".")), None)
        if hidden_dir:  # inside a hidden folder (.cache/, .git/): recorded like a hidden file, not read
            return self._reject(path, rel, file_id, now, "hidden_file",
                                f"位于隐藏目录 {hidden_dir} 中（目录名以“.”开头），不读取")
        try:
            fr = read_file(path)
            staged, quarantined, periods = self._normalise(fr, path, rel, file_id, now)
        except FileRejected as e:
            return self._reject(path, rel, file_id, now, e.reason, e.message, e.where)
        except Exception as e:  # a defect of ours must not stop the rest of the inbox: the file is rejected
            # the traceback's last line may quote cell text: logged masked (Dagster keeps captured logs)
            log.error("读取 %s 时出错\n%s", rel, mask_text(traceback.format_exc()))
            return self._reject(path, rel, file_id, now, "internal_error", f"读取时程序出错 {type(e).__name__}: {e}")
        n_cells = staged.height + quarantined.height
        by_reason = dict(quarantined.group_by("reason_code").len().iter_rows()) if quarantined.height else {}
        if staged.height == 0:
            reason = "no_values" if quarantined.height else "empty_file"
            msg = f"{rel}：没有任何可入库的数值（{n_cells} 个单元格全部隔离）"
            named = self._unknown_district(fr, path)
            if named and quarantined.height and (quarantined["reason_code"] == "unknown_community").all():
                reason, msg = "unknown_district", f"{rel}：文件所指的 {named} 不在社区登记表中（登记的区：" \
                                                   f"{'、'.join(sorted(self.districts))}）"
            self._write(path, rel, file_id, now, fr, "rejected", reason, msg, n_cells, None, quarantined, [])
            return FileSummary(rel, file_id, "rejected", reason, msg, n_cells, 0, quarantined.height, by_reason,
                               notes=fr.notes)
        self._write(path, rel, file_id, now, fr, "loaded", None, None, n_cells, staged, quarantined, periods)
        return FileSummary(rel, file_id, "loaded", None, None, n_cells, staged.height, quarantined.height,
                           by_reason, periods, fr.notes, f"{fr.file_format}/{fr.encoding}" if fr.encoding
                           else fr.file_format)

    def _same_bytes_again(self, file_id: str, origin) -> None:
        """A new version of an object holding bytes already loaded from the same key: the row keeps its content
        and takes the new version, so the next refresh does not download it again (shequ.object_inbox)."""
        self.con.execute("UPDATE raw_file SET object_version = ?, object_etag = ? WHERE file_id = ? AND source_uri = ?",
                         [origin.version_id, origin.etag, file_id, origin.uri])

    def reject_object(self, origin, rel: str, reason: str, message: str) -> FileSummary:
        """An object rejected before its bytes are here (gone since the listing, too large by its listed size):
        its raw_file row carries an id made from its URI and version, 'object:' + sha256."""
        key = f"{origin.uri}\n{origin.version_id or ''}\n{origin.etag}"
        file_id = "object:" + hashlib.sha256(key.encode("utf-8")).hexdigest()
        self._origin = origin
        try:
            summary = self._reject(Path(PurePosixPath(rel).name), rel, file_id, dt.datetime.now(), reason, message)
        finally:
            self._origin = None
        summary.message = mask_text(summary.message)
        summary.file_format = Path(rel).suffix.lstrip(".").lower()
        return summary

    def _unknown_district(self, fr: FileRead, path: Path) -> str | None:
        """A district the title or file name names (鼓楼区) that the registry does not hold."""
        for text in [*fr.title_lines, clean_text(path.stem)]:
            for m in re.finditer(r"([\u4e00-\u9fff]{2,3}区)", text or ""):
                name = m.group(1)
                if name.endswith(("社区", "小区", "城区", "辖区", "园区", "全区", "街区")):
                    continue
                if not any(name in d or d in name for d in self.districts):
                    return name
        return None

    def _reject(self, path, rel, file_id, now, reason, message, where="") -> FileSummary:
        msg = f"{rel}{f'（{where}）' if where else ''}：{message}"
        self._write(path, rel, file_id, now, None, "rejected", reason, msg, 0, None,
                    self._file_quarantine(file_id, rel, reason, msg, now), [])
        return FileSummary(rel, file_id, "rejected", reason, msg, by_reason={reason: 1})

    # -------------------------------------------------------------- periods
    def _periods(self, fr: FileRead, cells: pl.DataFrame, path: Path, rel: str) -> pl.DataFrame:
        """Quarter of each (period cell, sheet): the cell or column, else the sheet's title, the sheet name, the
        file name, the folder, in that order. A source that names a period which is not one quarter (a month,
        year-to-date, a half-year) stops the search with its reason: such a value is never filed under a
        quarter found further down the list."""
        folders = [clean_text(p) for p in reversed(Path(rel).parent.parts)]
        tail = [clean_text(path.stem), *folders]
        combos = cells.select("period_raw", "sheet").unique()
        keys, reasons, ytd = [], [], []
        for pr, sheet in combos.iter_rows():
            title = " ".join(fr.sheet_titles.get(sheet or "", []))
            sources = [clean_text(pr) if pr else None, title, clean_text(sheet) if sheet else None, *tail]
            # the year comes from this sheet's own title and name first (another sheet may be 上年同期)
            year = next((y for y in (explicit_year(t) for t in [title, clean_text(sheet or ""), *tail]) if y), None)
            key = reason = None
            is_ytd = False
            if pr:  # a period cell Excel turned into a date (2020-09 -> 2020-09-01, or serial 44075)
                key, reason = excel_date_period(pr)
            found_at = -1
            for i, src in enumerate([] if key or reason else sources):
                key, reason = ytd_quarter(src, year)   # 截至9月30日 / 1-9月: year-to-date ending at a quarter
                is_ytd = key is not None
                if not (key or reason):
                    key, reason = classify_period(src, year)
                if key or reason:
                    found_at = i
                    break
            if key and not is_ytd and len(key) == 6:
                # a quarter from the title, but the sheet name (7月) or a later source names a month inside it:
                # the month is the finer period (one sheet per month under a quarterly title)
                for src in sources[found_at + 1:]:
                    mk, _ = classify_period(src, int(key[:4]))
                    if mk and len(mk) == 7 and quarter_of_key(mk) == key:
                        key = mk
                        break
            keys.append(key)
            reasons.append(reason or (None if key else "no_period"))
            ytd.append(is_ytd)
        return combos.with_columns(pl.Series("period_key", keys, dtype=pl.String),
                                   pl.Series("period_reason", reasons, dtype=pl.String),
                                   pl.Series("is_ytd", ytd, dtype=pl.Boolean))

    # -------------------------------------------------------------- cells -> staged values
    def _normalise(self, fr: FileRead, path: Path, rel: str, file_id: str, now: dt.datetime):
        cells = fr.cells.with_row_index("_idx")  # source order: "the first one is kept" means the first read
        problems = pl.DataFrame(fr.problems, schema={**{c: cells.schema[c] for c in CELL_COLUMNS},
                                                     "reason_code": pl.String, "message": pl.String}) \
            if fr.problems else None
        context = " ".join(fr.title_lines)
        stem = path.stem   # a property that builds a string: once, not once per district (3,000 at 600,000)
        district_hint = next((d for d in self.districts if d in context or d in rel or d[:-1] in stem), None)
        periods = self._periods(fr, cells, path, rel)
        cells = cells.join(periods, on=["period_raw", "sheet"], how="left", nulls_equal=True)
        if cells.height and cells["period_key"].is_null().all() and (cells["period_reason"] == "no_period").all():
            raise FileRejected("no_period", "单元格、表头、标题、工作表名、文件名和目录名都没有说明统计期间")

        # headers -> (indicator, role, units): one row per target; unknown headers quarantined with candidates
        heads = cells.select("header_raw").unique()
        rows = []
        for (h,) in heads.iter_rows():
            m = self.matcher.match(h)
            if not m.targets:
                if m.reason:
                    rows.append((h, None, None, m.column_unit, "", m.reason, m.message))
                    continue
                hint = f"，最接近的目录指标：{'、'.join(m.candidates)}" if m.candidates else ""
                rows.append((h, None, None, m.column_unit, "", "unknown_header", f"未知表头 {h!r}{hint}"))
            for t in m.targets:
                rows.append((h, t.indicator_code, t.role, m.column_unit, t.unit, None, None))
        hmap = pl.DataFrame(rows, schema={"header_raw": pl.String, "indicator_code": pl.String, "role": pl.String,
                                          "header_unit": pl.String, "alias_unit": pl.String,
                                          "header_reason": pl.String, "header_message": pl.String}, orient="row")
        cells = cells.join(hmap, on="header_raw", how="left")
        cells = self._column_clashes(cells)

        # communities: resolved once per distinct (street, name, period)
        refs = (cells.select("street_raw", "community_raw", "period_key").unique()
                .filter(pl.col("period_key").is_not_null() & pl.col("community_raw").is_not_null())
                .with_row_index("ref_id"))
        as_of = {q: period_end(q) for q in refs["period_key"].unique().to_list()}
        refs = refs.with_columns(
            pl.col("period_key").replace_strict(as_of, default=None, return_dtype=pl.Date).alias("as_of"),
            pl.lit(district_hint, pl.String).alias("district_hint"))
        if refs.height:
            resolved = resolve_communities(refs, self.registry)
        else:  # every cell already failed on its period
            resolved = refs.select("street_raw", "community_raw", "period_key").with_columns(
                pl.lit(None, pl.Int32).alias("community_key"), pl.lit(None, pl.String).alias("resolve_reason"),
                pl.lit(False).alias("is_preparatory"))
        # unknown names: homophone and near-spelling candidates, proposed in the message, never applied
        unknown = resolved.filter(pl.col("resolve_reason") == "unknown_community")
        hints = suggest_candidates(unknown, self.registry.frame) if unknown.height else {}
        hint_frame = pl.DataFrame(
            [(s, n, "；可能是：" + "、".join(f"{c}社区（{'同音' if m == 'same_pinyin' else '形近'}，{code}）"
                                          for code, c, m, _ in cands) + "，请人工确认后加入别名表")
             for (s, n), cands in hints.items()],
            schema={"street_raw": pl.String, "community_raw": pl.String, "candidate_hint": pl.String}, orient="row")

        cat = self.catalogue.select(pl.col("code").alias("indicator_code"), "value_kind", "unit", "valid_min",
                                    "valid_max", "direction", "not_applicable_to", "aggregation", "ratio_scale")
        units = pl.DataFrame({"sheet": list(fr.sheet_units), "table_unit": list(fr.sheet_units.values())},
                             schema={"sheet": pl.String, "table_unit": pl.String})
        # one plan, collected once: five left joins (each on keys unique on its right side) and the derived
        # columns; eager, each step would copy the whole frame
        cells = cells.lazy().join(resolved.select("street_raw", "community_raw", "period_key", "community_key",
                                                  "resolve_reason", "is_preparatory").lazy(),
                                  on=["street_raw", "community_raw", "period_key"], how="left", nulls_equal=True,
                                  maintain_order="left") \
            .join(hint_frame.lazy(), on=["street_raw", "community_raw"], how="left", nulls_equal=True,
                  maintain_order="left") \
            .join(self._types.filter(pl.col("community_key").is_in(
                      resolved["community_key"].drop_nulls().unique().implode())).lazy(),
                                  on="community_key", how="left", maintain_order="left") \
            .join(cat.lazy(), on="indicator_code", how="left", maintain_order="left") \
            .join(units.lazy(), on="sheet", how="left", maintain_order="left").with_columns(
            # a numerator or denominator is a count, amount or area in its alias's unit (the catalogue side);
            # the header's own unit (（万元）, （亩）) is what the cell is written in and gets converted
            pl.when(pl.col("role") == "value").then(pl.col("value_kind"))
            .when(pl.col("alias_unit").str.contains("元")).then(pl.lit("amount"))
            .when(pl.col("alias_unit").str.contains("平方米")).then(pl.lit("area"))
            .otherwise(pl.lit("count")).alias("value_kind"),
            pl.when(pl.col("role") == "value").then(pl.col("unit"))
            .otherwise(pl.coalesce(pl.col("alias_unit").replace("", None), pl.lit("个"))).alias("target_unit"),
            pl.coalesce(pl.col("header_unit"), pl.lit("")).alias("column_unit"),
            pl.coalesce(pl.col("table_unit"), pl.lit("")).alias("table_unit"),
            pl.col("raw_text").fill_null(""),
        ).collect(engine="in-memory")
        ok_so_far = (pl.col("period_key").is_not_null() & pl.col("indicator_code").is_not_null()
                     & pl.col("community_key").is_not_null())
        parsed = parse_cells(cells.filter(ok_so_far))
        rejected_early = cells.filter(~ok_so_far).with_columns(
            pl.when(pl.col("period_key").is_null()).then(pl.col("period_reason"))
            .when(pl.col("indicator_code").is_null()).then(pl.col("header_reason"))
            .when(pl.col("community_raw").is_null() | (pl.col("community_raw").str.strip_chars() == ""))
            .then(pl.lit("no_community"))
            .otherwise(pl.col("resolve_reason")).alias("reason"),
            pl.when(pl.col("period_key").is_null()).then(pl.format("统计期间不是单一季度或无法确定（{}）",
                                                                   pl.col("period_reason")))
            .when(pl.col("indicator_code").is_null()).then(pl.col("header_message"))
            .when(pl.col("community_raw").is_null() | (pl.col("community_raw").str.strip_chars() == ""))
            .then(pl.lit("该行没有社区名称"))
            .otherwise(pl.format("社区 {} 在登记表中无法唯一匹配（街道 {}）{}", pl.col("community_raw"),
                                 pl.col("street_raw").fill_null("未填"), pl.col("candidate_hint").fill_null("")))
            .alias("message"),
        )
        # every value that lands is bounded: a value by its indicator's valid range, a target-band value (居委会成员
        #人数, no valid_max) and a numerator or denominator by its unit's hard range (models/catalogue/
        # unit_limits.csv; a unit without a row gets no upper bound it could pass: 0). Checked here, before the
        # fact table, so no single cell can block a quarter's later stages.
        parsed = parsed.lazy().join(self.unit_limits.select(pl.col("unit").alias("target_unit"), "hard_min",
                                                            "hard_max").lazy(),
                                    on="target_unit", how="left", maintain_order="left")
        is_value = (pl.col("role") == "value") & (pl.col("direction") != "target_band")
        lo = pl.when(is_value).then(pl.col("valid_min")).otherwise(pl.max_horizontal(pl.lit(0.0), pl.col("hard_min")))
        hi = pl.when(is_value).then(pl.col("valid_max")).otherwise(pl.col("hard_max").fill_null(0.0))
        out_of_range = (pl.col("reason").is_null() & pl.col("value").is_not_null()
                        & ((pl.col("value") < pl.col("_lo")) | (pl.col("value") > pl.col("_hi"))).fill_null(False))
        role_zh = pl.col("role").replace_strict({"value": "数值", "numerator": "分子", "denominator": "分母"},
                                                default=pl.col("role"), return_dtype=pl.String)
        # H21: a 村代居 / 城市村 has no 小区 or 物业 to rate: its 0 or blank there is "not applicable", never 0
        not_applicable = (pl.col("reason").is_null() & (pl.col("value") == 0)
                          & pl.col("not_applicable_to").fill_null("").str.split("|").list.contains(
                              pl.col("community_type").fill_null("")))
        # the flags first, in one plan; the messages (a format over every row) only when a row needs one
        parsed = parsed.with_columns(lo.alias("_lo"), hi.alias("_hi")).with_columns(
            not_applicable.fill_null(False).alias("_na")).collect(engine="in-memory")
        if parsed["_na"].any():
            parsed = parsed.with_columns(
                pl.when(pl.col("_na")).then(pl.lit("not_applicable")).otherwise(pl.col("reason")).alias("reason"),
                pl.when(pl.col("_na")).then(pl.format("{}不适用该指标（填报的 0 按不适用处理，不计为 0）",
                                                      pl.col("community_type")))
                .otherwise(pl.col("message")).alias("message"),
            )
        parsed = parsed.with_columns(out_of_range.fill_null(False).alias("_oor"))
        if parsed["_oor"].any():
            parsed = parsed.with_columns(
                pl.when(pl.col("_oor")).then(pl.lit("out_of_range")).otherwise(pl.col("reason")).alias("reason"),
                pl.when(pl.col("_oor")).then(pl.format(
                    "{} 工作表 {} 单元格 {}：{} “{}” 读作 {}，超出指标 {} 的{}范围 [{}, {}]，未入库", pl.lit(rel),
                    pl.col("sheet").fill_null("").replace("", "(无)"), pl.col("source_cell"), role_zh,
                    pl.col("raw_text").str.slice(0, 60), pl.col("value"), pl.col("indicator_code"),
                    pl.when(is_value).then(pl.lit("有效")).otherwise(pl.lit("硬性")), pl.col("_lo"), pl.col("_hi")))
                .otherwise(pl.col("message")).alias("message"),
            )
        parsed = parsed.drop("_na", "_oor")
        good = parsed.lazy().filter(pl.col("reason").is_null()).sort("_idx").with_columns(
            # year-to-date values keep saying so: the fact build differences flows against the previous quarter
            pl.when(pl.col("is_ytd")).then(pl.concat_str([pl.lit("ytd"), pl.col("qualifier")], separator=",",
                                                         ignore_nulls=True))
            .otherwise(pl.col("qualifier")).alias("qualifier")).with_columns(
            # 南苑新村社区(筹): the value is kept and says the community was reported as 筹建 (preparatory)
            pl.when(pl.col("is_preparatory").fill_null(False))
            .then(pl.concat_str([pl.col("qualifier"), pl.lit("preparatory")], separator=",", ignore_nulls=True))
            .otherwise(pl.col("qualifier")).alias("qualifier")).collect(engine="in-memory")
        good, dups = split_duplicates(good, rel)   # hidden copy, conflicting or equal copies: shequ/duplicates.py
        good, parts_bad = self._check_ratio_parts(good, rel)
        staged = good.select(
            pl.lit(file_id).alias("file_id"), pl.col("community_key").cast(pl.Int32), "indicator_code", "period_key",
            "role", "value", "unit", "qualifier", "raw_text", pl.col("sheet").alias("source_sheet"), "source_row",
            "source_column", "source_cell")
        bad_cols = ["sheet", "source_row", "source_column", "source_cell", "community_raw", "header_raw",
                    "period_key", "raw_text", "reason", "message"]
        frames = [rejected_early.select(bad_cols), parsed.filter(pl.col("reason").is_not_null()).select(bad_cols),
                  dups.select(bad_cols), parts_bad.select(bad_cols)]
        if problems is not None:
            frames.append(problems.with_columns(pl.lit(None, pl.String).alias("period_key"))
                          .rename({"reason_code": "reason"}).select(bad_cols))
        quarantined = pl.concat([f.cast({"source_row": pl.Int32}) for f in frames]).select(
            pl.lit(file_id).alias("file_id"), pl.lit(rel).alias("source_file"),
            pl.col("sheet").alias("source_sheet"), "source_row", "source_column", "source_cell", "community_raw",
            "header_raw", "period_key", "raw_text", pl.col("reason").fill_null("unclassified").alias("reason_code"),
            pl.coalesce(pl.col("message"), pl.col("reason"), pl.lit("未分类")).alias("message"),
            pl.lit(now).alias("quarantined_at"))
        periods = sorted({quarter_of_key(k) for k in staged["period_key"].unique().to_list()})
        fr.notes.extend(self._check_subtotals(fr, good))
        return staged, quarantined, periods

    @staticmethod
    def _column_clashes(cells: pl.DataFrame) -> pl.DataFrame:
        """Two header positions of one table (columns of a wide table, rows of a transposed one, keys of one
        record) feeding the same indicator, role and period. When exactly one of them is visible it is taken and
        the hidden ones (last quarter's column left in a reused workbook) are quarantined as
        hidden_duplicate_column; otherwise none is taken (ambiguous_header), whatever their order."""
        keys = ["sheet", "block", "indicator_code", "role", "period_raw"]
        pos = (cells.filter(pl.col("indicator_code").is_not_null() & pl.col("header_pos").is_not_null())
               .group_by(*keys, "header_pos")
               .agg(pl.col("hidden").fill_null(False).all().alias("_hidden"), pl.col("header_raw").first().alias("_h")))
        if pos.height == 0:
            return cells
        label = (pl.when(pl.col("header_pos").str.contains(r"^[A-Z]+$|^\d+$")).then(pl.col("header_pos") + "列")
                 .when(pl.col("header_pos").str.contains(r"^R\d+$"))
                 .then("第" + pl.col("header_pos").str.slice(1) + "行")
                 .otherwise("“" + pl.col("header_pos") + "”"))
        pos = pos.with_columns(pl.len().over(keys).alias("_n"))
        pos = pos.filter(pl.col("_n") > 1)
        if pos.height == 0:
            return cells
        pos = pos.with_columns(
            (~pl.col("_hidden")).sum().over(keys).alias("_visible"),
            pl.format("{}（{}{}）", label, pl.col("_h"), pl.when(pl.col("_hidden")).then(pl.lit("，隐藏")).otherwise(pl.lit("")))
            .alias("_where"))
        pos = pos.with_columns(
            pl.col("_where").sort().str.join("、").over(keys).alias("_all"),
            pl.col("_where").filter(~pl.col("_hidden")).first().over(keys).alias("_shown"))
        pos = pos.with_columns(
            pl.when(pl.col("_visible") == 1).then(pl.when(pl.col("_hidden")).then(pl.lit("hidden_duplicate_column")))
            .otherwise(pl.lit("ambiguous_header")).alias("_reason"),
            pl.when(pl.col("_visible") == 1).then(pl.format(
                "隐藏的 {} 与可见的 {} 都对应指标 {}（{}）：取可见列，隐藏列不读（多为上期遗留的列）",
                pl.col("_where"), pl.col("_shown"), pl.col("indicator_code"), pl.col("role")))
            .otherwise(pl.format("{} 都对应指标 {}（{}），可见的不止一列或全部隐藏，无法确定取哪一列",
                                 pl.col("_all"), pl.col("indicator_code"), pl.col("role"))).alias("_message"),
        ).filter(pl.col("_reason").is_not_null()).select(*keys, "header_pos", "_reason", "_message")
        cells = cells.join(pos, on=[*keys, "header_pos"], how="left", nulls_equal=True)
        hit = pl.col("_reason").is_not_null()
        return cells.with_columns(
            pl.when(hit).then(pl.col("_reason")).otherwise(pl.col("header_reason")).alias("header_reason"),
            pl.when(hit).then(pl.col("_message")).otherwise(pl.col("header_message")).alias("header_message"),
            pl.when(hit).then(None).otherwise(pl.col("indicator_code")).alias("indicator_code"),
        ).drop("_reason", "_message")

    @staticmethod
    def _check_ratio_parts(good: pl.DataFrame, rel: str) -> tuple[pl.DataFrame, pl.DataFrame]:
        """A numerator and denominator of one rate (same community, indicator and period in this file) whose
        ratio x ratio_scale falls outside the indicator's valid range (numerator 30 over denominator 3 for a rate
        bounded by 100%, or a numerator over a zero denominator) are both quarantined as
        ratio_parts_inconsistent, the message naming both cells: neither can be trusted, and the fact build would
        otherwise compute an impossible rate from them. Returns (good without them, the quarantined rows)."""
        key = ["community_key", "indicator_code", "period_key"]
        empty = good.head(0).with_columns(pl.lit(None, pl.String).alias("reason"), pl.lit(None, pl.String).alias("message"))
        # the pairs that break their range, in one polars plan (no pairs: nothing found, same answer)
        parts = good.lazy().filter(pl.col("role").is_in(["numerator", "denominator"])
                                   & (pl.col("aggregation") == "ratio"))
        cell = pl.concat_str([pl.col("sheet").fill_null(""), pl.lit("!"), pl.col("source_cell")]).str.strip_chars_start("!")
        num = parts.filter(pl.col("role") == "numerator").select(*key, pl.col("value").alias("n"),
                                                                 cell.alias("n_cell"), pl.col("raw_text").alias("n_raw"))
        den = parts.filter(pl.col("role") == "denominator").select(
            *key, pl.col("value").alias("d"), cell.alias("d_cell"), pl.col("raw_text").alias("d_raw"),
            "valid_min", "valid_max", pl.col("ratio_scale").fill_null(1.0).alias("scale"))
        pairs = num.join(den, on=key, how="inner").with_columns(
            pl.when(pl.col("d") > 0).then(pl.col("n") / pl.col("d") * pl.col("scale")).alias("rate"))
        tol = 1e-9 * pl.max_horizontal(pl.lit(1.0), pl.col("valid_max").abs())
        bad = pairs.filter(
            ((pl.col("d") == 0) & (pl.col("n") > 0))
            | (pl.col("rate") < pl.col("valid_min") - tol).fill_null(False)
            | (pl.col("rate") > pl.col("valid_max") + tol).fill_null(False)).collect(engine="in-memory")
        if bad.height == 0:
            return good, empty
        bad = bad.with_columns(pl.format(
            "{}：分子 {}（“{}”）与分母 {}（“{}”）算出 {} 为 {}，超出有效范围 [{}, {}]（比率类指标的分子不应大于分母），"
            "两个单元格都未入库", pl.lit(rel), pl.col("n_cell"), pl.col("n_raw").str.slice(0, 40), pl.col("d_cell"),
            pl.col("d_raw").str.slice(0, 40), pl.col("indicator_code"),
            pl.col("rate").round(6).cast(pl.String).fill_null("（分母为 0）"), pl.col("valid_min"),
            pl.col("valid_max")).alias("message"))
        flagged = good.drop("message").join(bad.select(*key, "message"), on=key, how="inner").filter(
            pl.col("role").is_in(["numerator", "denominator"])).with_columns(
            pl.lit("ratio_parts_inconsistent").alias("reason"))
        rest = good.join(bad.select(key), on=key, how="anti")
        kept = pl.concat([rest, good.join(bad.select(key), on=key, how="semi").filter(pl.col("role") == "value")])
        return kept.sort("_idx"), flagged

    @staticmethod
    def _check_subtotals(fr: FileRead, good: pl.DataFrame) -> list[str]:
        """Members of a street should add up to its 小计 row, in the file's own numbers (plain numeric cells of
        additive columns only; a formula without a cached value cannot be checked and is skipped). One
        group-by and one join per file, not a filter per street and column."""
        if not fr.subtotals:
            return []
        plain = r"^\s*-?[0-9]+(\.[0-9]+)?\s*$"
        subs = pl.concat([s.unpivot(index=["label", "sheet"], variable_name="header_raw", value_name="raw")
                          for s in fr.subtotals], how="diagonal_relaxed")
        subs = subs.filter(pl.col("raw").str.contains(plain)).with_columns(
            pl.col("label").str.replace_all(r"\s+", "").str.replace(r"(小计|合计)$", "").alias("street"),
            pl.col("raw").cast(pl.Float64).alias("subtotal"))
        subs = subs.filter((pl.col("street") != "") & ~pl.col("street").is_in(["合计", "总计", "全区"]))
        if subs.height == 0:
            return []
        members = (good.filter(pl.col("street_raw").is_not_null())
                   .unique(["sheet", "source_cell"])
                   .group_by(pl.col("sheet"), pl.col("street_raw").str.replace_all(r"\s+", "").alias("street"),
                             "header_raw")
                   .agg(pl.col("raw_text").str.contains(plain).all().alias("all_plain"),
                        pl.col("raw_text").cast(pl.Float64, strict=False).sum().alias("total"))
                   # a member written 2个 or 约5 is not comparable in the file's own numbers: no check there
                   .filter(pl.col("all_plain")))
        off = subs.join(members, on=["sheet", "street", "header_raw"], how="inner").filter(
            (pl.col("total") - pl.col("subtotal")).abs() > 1e-6 * pl.max_horizontal(pl.lit(1.0), pl.col("subtotal").abs()))
        return [f"小计核对不符：{r['label']} {r['header_raw']} 成员合计 {r['total']:g}，小计 {r['subtotal']:g}"
                for r in off.sort("label", "header_raw").iter_rows(named=True)]

    # -------------------------------------------------------------- writes
    def _file_quarantine(self, file_id, rel, reason, msg, now) -> pl.DataFrame:
        return pl.DataFrame([{c: None for c in QUARANTINE_COLUMNS} | {
            "file_id": file_id, "source_file": rel, "reason_code": reason, "message": msg, "quarantined_at": now}],
            schema={c: pl.String for c in QUARANTINE_COLUMNS} | {"source_row": pl.Int32,
                                                                 "quarantined_at": pl.Datetime("us")})

    def _write(self, path, rel, file_id, now, fr, status, reason, msg, n_cells, staged, quarantined, periods):
        # personal data out (shequ/privacy.py): every text that came from the file is masked before it is stored
        msg = mask_text(msg)
        notes = mask_list(fr.notes) if fr else None
        quarantined = mask_frame(quarantined, ["source_sheet", "community_raw", "header_raw", "raw_text", "message"],
                                 header_column="header_raw", value_column="raw_text", quote_column="message")
        if staged is not None:
            staged = mask_frame(staged, ["raw_text", "source_sheet"])
        origin = self._origin
        if origin is not None:      # an object: its listed size and upload time (the bytes may never have come)
            size, modified = origin.size, origin.modified
            provenance = [origin.uri, origin.key, origin.version_id, origin.etag]
        else:
            stat = path.stat()
            size, modified = stat.st_size, dt.datetime.fromtimestamp(stat.st_mtime)
            provenance = [None, None, None, None]
        write = {"file_id": file_id, "row": [
            file_id, None, rel, size, modified,
            fr.file_format if fr else path.suffix.lstrip(".").lower(), fr.encoding if fr else None,
            periods, status, reason, msg, n_cells, 0 if staged is None else staged.height, quarantined.height, now,
            notes, *provenance], "staged": staged, "quarantined": quarantined}
        if self.deferred is not None:   # a staging worker: the parent commits it
            self.deferred["write"] = write
        else:
            self._commit_write(write)

    def commit_group(self, items: list[tuple[FileSummary, dict | None]]) -> list[FileSummary]:
        """Write what `prepare` produced (in a worker) for several files in this process's warehouse, in inventory
        order, so ingest_seq and every stored row are those a serial run gives; bytes another file of the same run
        has loaded meanwhile are "unchanged", as they would be serially. The files (no two with the same bytes)
        share ONE transaction: every row of every file of the group lands, or none does. Per file, a transaction's own cost (the
        commit writes and compresses the rows; about 25 ms of a 23,600-cell file's 80 ms at 10,000
        communities) is what a large inbox pays 3,000 times; a group pays it once."""
        out, writes = [], []
        for summary, write in items:
            if write is not None and self.known.get(write["file_id"]) == "loaded":
                summary = FileSummary(summary.source_file, summary.file_id, "unchanged",
                                      file_format=summary.file_format)
            elif write is not None:
                writes.append(write)
            out.append(summary)
        if writes:
            t0 = time.perf_counter()
            self._commit_writes(writes)
            share = (time.perf_counter() - t0) / len(writes)
            for summary, (_, write) in zip(out, items):
                if write is not None and summary.status != "unchanged":
                    summary.seconds += share
        return out

    def _commit_write(self, write: dict):
        self._commit_writes([write])

    def _commit_writes(self, writes: list[dict]):
        with transaction(self.con):
            for write in writes:
                file_id, row = write["file_id"], list(write["row"])
                if file_id in self.known:  # an earlier rejection of the same bytes is replaced by this reading
                    self.con.execute("DELETE FROM quarantine WHERE file_id = ?", [file_id])
                    self.con.execute("DELETE FROM raw_file WHERE file_id = ?", [file_id])
                row[1] = self.con.execute("SELECT coalesce(max(ingest_seq), 0) + 1 FROM raw_file").fetchall()[0][0]
                self.con.execute(f"INSERT INTO raw_file ({', '.join(RAW_FILE_COLUMNS)}) "
                                 f"VALUES ({', '.join('?' for _ in RAW_FILE_COLUMNS)})", row)
            # the files' rows in one insert each, in the group's (inventory) order: the rows a file-by-file
            # run stores, in the same order
            staged = [w["staged"] for w in writes if w["staged"] is not None and w["staged"].height]
            if staged:
                self.con.register("_staged", staged[0] if len(staged) == 1 else
                                  pl.concat(staged, how="vertical_relaxed", rechunk=False))
                self.con.execute("INSERT INTO stg_value SELECT * FROM _staged")
                self.con.unregister("_staged")
            for write in writes:   # few rows per file, and a rejected file's frame has its own column types
                quarantined = write["quarantined"]
                if quarantined.height:
                    self.con.register("_quarantined", quarantined)
                    self.con.execute(f"INSERT INTO quarantine SELECT {', '.join(QUARANTINE_COLUMNS)} "
                                     f"FROM _quarantined")
                    self.con.unregister("_quarantined")
        for write in writes:
            self.known[write["file_id"]] = write["row"][8]


def stage_workers() -> int:
    """Reading processes for a large inbox: SHEQU_STAGE_WORKERS, else the cores this process may use."""
    env = os.environ.get("SHEQU_STAGE_WORKERS")
    return max(1, int(env)) if env else available_cores()


def parallel_min_bytes() -> int:
    """Below this many bytes of files to read (SHEQU_STAGE_PARALLEL_MIN_MB, default 16) an inbox is read in this
    process: starting reading processes costs about as much as reading a district's few megabytes."""
    return int(float(os.environ.get("SHEQU_STAGE_PARALLEL_MIN_MB", "16")) * 2**20)


def ingest_inbox(con: duckdb.DuckDBPyConnection, inbox: Path, quarter: str | None = None,
                 on_file=None) -> list[FileSummary]:
    """Ingest every new file of the inbox (or only those whose name/folder names ``quarter``, plus those whose
    name does not say, which are read to find out). Returns one summary per file considered. An inbox in object
    storage (s3://bucket/prefix) is read by shequ.object_inbox with the same rules.

    A large local inbox is read and normalised by `stage_workers()` processes at once, and the files' rows are
    written here in inventory order, one transaction per file or per group of files already read (see
    `_ingest_parallel`): what lands is what a serial run writes."""
    if is_object_inbox(inbox):
        from .object_inbox import ingest_objects

        return ingest_objects(con, inbox, quarter, on_file)
    inbox = Path(inbox)
    if not inbox.is_dir():
        raise FileNotFoundError(f"收件箱目录不存在：{inbox}")
    from .progress import emit

    ing = Ingestor(con, inbox)
    out = []
    todo = [p for p in inventory(inbox) if not (quarter and (pq := path_quarter(p, inbox)) and pq != quarter)]

    def done(i: int, path: Path, s: FileSummary):
        emit("staged", quarter, i, len(todo), str(path.relative_to(inbox)))
        out.append(s)
        if on_file:
            on_file(s)

    workers = min(stage_workers(), len(todo))
    if workers > 1 and sum(p.stat().st_size for p in todo) >= parallel_min_bytes():
        start = _ingest_parallel(ing, todo, workers, done)
    else:
        start = 0
    for i, path in enumerate(todo[start:], start=start + 1):
        done(i, path, ing.ingest(path))
    return out


# ---------------------------------------------------------------- reading processes
# The standard library's process pool is the tool: the work per file is CPU-bound Python and polars (the GIL
# rules out threads), and the pool's `spawn` start method keeps DuckDB's and polars' threads out of the children.
_WORKER: Ingestor | None = None


def _worker_init(inbox: Path, dim_community: pl.DataFrame, aliases: pl.DataFrame, known: dict[str, str]):
    global _WORKER
    _WORKER = Ingestor.for_worker(inbox, dim_community, aliases, known)


def _worker_prepare(path: Path):
    return _WORKER.prepare(path)


@contextmanager
def _main_hidden():
    """A `spawn` child first re-runs the parent's main script (as __mp_main__) unless it is hidden: a notebook or
    an analyst's script without an `if __name__ == "__main__"` guard would then run again in every reading
    process. The readers need nothing from it, so while the pool runs the main module names no file or spec."""
    main = sys.modules.get("__main__")
    saved = {k: main.__dict__[k] for k in ("__file__", "__spec__") if main is not None and k in main.__dict__}
    try:
        if "__file__" in saved:
            del main.__dict__["__file__"]
        if "__spec__" in saved:
            main.__dict__["__spec__"] = None
        yield
    finally:
        if main is not None:
            main.__dict__.update(saved)


GROUP_FILES = 8            # files per staging transaction at most (a kill re-reads at most this many)
GROUP_ROWS = 250_000       # staged rows per staging transaction at most (the parent holds them until commit)


def _ingest_parallel(ing: Ingestor, todo: list[Path], workers: int, done) -> int:
    """Read `todo` in `workers` processes, at most four files ahead per process (bounded memory), and commit them
    in order, GROUP_FILES files (or GROUP_ROWS staged rows) per transaction: the parent pays one commit per group
    instead of one per file. Returns how many files were committed: if a reading process dies (killed, out of
    memory), the files read before are committed and the rest are read here, one by one, as a serial run would."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    committed = 0
    ctx = multiprocessing.get_context("spawn")
    with _main_hidden():
        pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_init,
                                   initargs=(ing.inbox, ing.dim_community, ing.aliases, dict(ing.known)))
        procs = {}
        pending = deque()
        group: list[tuple] = []
        nxt = 0

        def flush():
            nonlocal committed
            for summary in ing.commit_group(group):
                done(committed + 1, todo[committed], summary)
                committed += 1
            group.clear()

        try:
            while committed + len(group) < len(todo):
                while nxt < len(todo) and len(pending) < 4 * workers:
                    pending.append(pool.submit(_worker_prepare, todo[nxt]))
                    nxt += 1
                procs.update(getattr(pool, "_processes", None) or {})
                rows = sum(w["staged"].height for _, w in group if w is not None and w["staged"] is not None)
                if len(group) >= GROUP_FILES or rows >= GROUP_ROWS:
                    flush()
                summary, write = pending.popleft().result()
                if write is not None and any(w is not None and w["file_id"] == write["file_id"] for _, w in group):
                    flush()   # the same bytes twice: the second copy is judged against the first one's outcome
                group.append((summary, write))
            flush()
        except BrokenProcessPool:
            flush()           # what was read before the reader died is good
            log.warning("读取进程意外退出，其余 %d 个文件改在本进程逐个读取", len(todo) - committed)
        finally:
            # a dead reader leaves the pool unable to shut down cleanly (the survivors wait on a broken queue),
            # and after any failure here nothing they read is wanted: stop them rather than wait for them
            clean = committed == len(todo)
            pool.shutdown(wait=clean, cancel_futures=True)
            if not clean:
                for p in procs.values():
                    if p.is_alive():
                        p.kill()
                        p.join(5)
    return committed
