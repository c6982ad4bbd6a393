"""One rule for a value reported more than once in a file, whatever the file's shape (rows of a wide sheet, columns
of a transposed one, rows of a long export, records of a JSON file, sheets of one workbook).

Copies are the parsed values of one file with the same community, indicator, period and role. Never "first wins":

- a copy in a hidden row or column (``hidden``) while a visible copy exists is quarantined as
  ``hidden_duplicate_row`` — last quarter's row left hidden in a reused workbook, a row hidden by a filter — and the
  visible copies decide;
- the copies that decide (the visible ones, or all of them when none is visible) with different values are all
  quarantined as ``conflicting_duplicate``, the message naming every cell and its text;
- with equal values the first of them loads and each further copy is quarantined as ``duplicate_in_file``, the
  message naming the cell that loaded (the value is in the warehouse once; no cell is dropped without a record).

Two header positions of one table feeding one indicator (two columns 志愿者组织数) are an earlier, different rule
(``ingest.Ingestor._column_clashes``): that one decides which column is read at all.
"""

import polars as pl

KEY = ["community_key", "indicator_code", "period_key", "role"]


def split_duplicates(good: pl.DataFrame, rel: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(values that load, copies quarantined with reason and message). ``good`` holds the parsed values of one
    file that passed every other check, with columns ``_idx`` (reading order), ``hidden``, ``sheet``,
    ``source_cell``, ``raw_text``, ``value``, ``reason`` and ``message``; the result keeps its columns."""
    counted = good.with_columns(pl.len().over(KEY).alias("_n"))
    if counted.height == 0 or counted["_n"].max() <= 1:
        return good, good.head(0)
    single = counted.filter(pl.col("_n") == 1).drop("_n")
    cell = pl.concat_str([pl.col("sheet").fill_null(""), pl.lit("!"), pl.col("source_cell")]).str.strip_chars_start("!")
    multi = counted.filter(pl.col("_n") > 1).drop("_n").with_columns(
        cell.alias("_cell"), pl.col("hidden").fill_null(False).alias("_h"))
    multi = multi.with_columns((~pl.col("_h")).sum().over(KEY).alias("_visible"))
    multi = multi.with_columns(pl.when(pl.col("_visible") > 0).then(~pl.col("_h")).otherwise(True).alias("_cand"))
    decide = (multi.filter(pl.col("_cand")).sort("_idx").group_by(KEY, maintain_order=True).agg(
        pl.col("_cell").str.join("、").alias("_cand_cells"),
        pl.format("{}=“{}”", pl.col("_cell"), pl.col("raw_text").str.slice(0, 40)).str.join("、").alias("_cand_vals"),
        pl.col("value").n_unique().alias("_n_values"),
        pl.col("_idx").first().alias("_first_idx"),
        pl.col("_cell").first().alias("_first_cell")))
    multi = multi.join(decide, on=KEY, how="left", nulls_equal=True)
    what = pl.format("同一社区、指标 {}（{}）、期间 {}", pl.col("indicator_code"), pl.col("role"), pl.col("period_key"))
    reason = (pl.when(~pl.col("_cand")).then(pl.lit("hidden_duplicate_row"))
              .when(pl.col("_n_values") > 1).then(pl.lit("conflicting_duplicate"))
              .when(pl.col("_idx") != pl.col("_first_idx")).then(pl.lit("duplicate_in_file")))
    message = (pl.when(~pl.col("_cand")).then(pl.format(
        "{}：隐藏的单元格 {}（“{}”）与可见的 {} 是{}的重复记录：取可见的，隐藏的不读（多为上期遗留或被筛选隐藏的行）",
        pl.lit(rel), pl.col("_cell"), pl.col("raw_text").str.slice(0, 40), pl.col("_cand_cells"), what))
        .when(pl.col("_n_values") > 1).then(pl.format(
            "{}：{}在文件中出现多次且数值不同（{}），无法确定哪一个正确，都未入库", pl.lit(rel), what,
            pl.col("_cand_vals")))
        .otherwise(pl.format("{}：{}在文件中重复出现，单元格 {} 与已入库的 {} 数值相同，只入库一次", pl.lit(rel), what,
                             pl.col("_cell"), pl.col("_first_cell"))))
    multi = multi.with_columns(reason.alias("reason"), pl.when(reason.is_not_null()).then(message)
                               .otherwise(pl.col("message")).alias("message"))
    helpers = ["_cell", "_h", "_visible", "_cand", "_cand_cells", "_cand_vals", "_n_values", "_first_idx",
               "_first_cell"]
    multi = multi.drop(helpers)
    kept = pl.concat([single, multi.filter(pl.col("reason").is_null())]).sort("_idx")
    return kept, multi.filter(pl.col("reason").is_not_null())
