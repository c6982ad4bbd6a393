"""Where things are: repository paths and the defaults every entry point shares."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
SQL_DIR = MODELS / "sql"
SCHEMA_SQL = MODELS / "schema.sql"
CATALOGUE_CSV = MODELS / "catalogue" / "indicators.csv"
HEADER_ALIASES_CSV = MODELS / "catalogue" / "header_aliases.csv"
REGISTRY_DIR = MODELS / "registry"
SCHEMES_DIR = MODELS / "schemes"
DEFAULT_SCHEME = SCHEMES_DIR / "default.yaml"
EXPECTATIONS_DIR = ROOT / "expectations"
DATA_DIR = ROOT / "data"
DEFAULT_INBOX = DATA_DIR / "inbox"
DEFAULT_WAREHOUSE = DATA_DIR / "warehouse.duckdb"
DEFAULT_REVIEWS = DATA_DIR / "reviews"          # 街道初评 / 区复评 corrections (shequ/appraisal/reviews.py)


def warehouse_path(explicit: str | os.PathLike | None = None) -> Path:
    """--warehouse beats SHEQU_WAREHOUSE beats data/warehouse.duckdb."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("SHEQU_WAREHOUSE")
    return Path(env) if env else DEFAULT_WAREHOUSE


OBJECT_INBOX_SCHEMES = ("s3://",)


def is_object_inbox(inbox) -> bool:
    """An inbox in object storage (s3://bucket/prefix, shequ/object_inbox.py) rather than a local folder."""
    return isinstance(inbox, str) and inbox.strip().lower().startswith(OBJECT_INBOX_SCHEMES)


def inbox_path(explicit: str | os.PathLike | None = None) -> Path | str:
    """--inbox beats SHEQU_INBOX beats data/inbox. An object-storage inbox (s3://bucket/prefix) is returned as
    the URI string: a Path would fold its "//"."""
    value = explicit or os.environ.get("SHEQU_INBOX")
    if not value:
        return DEFAULT_INBOX
    if is_object_inbox(str(value)):
        return str(value).strip()
    return Path(value)


def reviews_path(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("SHEQU_REVIEWS")
    return Path(env) if env else DEFAULT_REVIEWS


# ---------------------------------------------------------------- resource limits (the one place they are set)
# A survey file over any of these is rejected with reason `too_large` before it is read (docs/limits-and-privacy.md).
# Defaults fit a 2-core / 8 GB office machine: the largest real survey (a city's long table, ~100k rows x 30
# columns) stays well inside them, and reading a file at the limits peaks around 1-2 GB.
# Each can be changed with the environment variable named here (a number; MB = 2**20 bytes).
LIMIT_SETTINGS = {
    # name: (environment variable, default, Chinese label, unit)
    "max_file_mb": ("SHEQU_MAX_FILE_MB", 100, "文件大小", "MB"),
    "max_inflated_mb": ("SHEQU_MAX_INFLATED_MB", 256, "xlsx/ods 解压后总大小", "MB"),
    "max_compression_ratio": ("SHEQU_MAX_COMPRESSION_RATIO", 200, "xlsx/ods 压缩比", "倍"),
    "max_rows": ("SHEQU_MAX_ROWS", 200_000, "行数", "行"),
    "max_columns": ("SHEQU_MAX_COLUMNS", 1_000, "列数", "列"),
    "max_cells": ("SHEQU_MAX_CELLS", 5_000_000, "单元格数（行数 × 列数）", "个"),
    "max_json_depth": ("SHEQU_MAX_JSON_DEPTH", 64, "JSON 嵌套层数", "层"),
}


def limits() -> dict[str, float]:
    """The resource limits in force: each default, overridden by its environment variable when that is set to a
    positive number (read on every call, so a test or an operator can change them without a restart)."""
    out = {}
    for name, (env, default, _label, _unit) in LIMIT_SETTINGS.items():
        raw = os.environ.get(env, "").strip()
        try:
            value = float(raw) if raw else float(default)
        except ValueError:
            value = -1.0
        if not value > 0:   # a typo must not remove the limit: say so and keep the default
            import logging
            logging.getLogger(__name__).warning("环境变量 %s=%r 不是正数，按默认值 %s 处理", env, raw, default)
            value = float(default)
        out[name] = value
    return out


# How long a writer (the refresh, shequ publish, shequ migrate) waits for another process to close the warehouse
# file before giving up. DuckDB lets one process write a file, or many read it, never both; a notebook or script
# holding a read-only connection on the live warehouse makes the writer wait this long (readers should open the
# snapshot instead: shequ.snapshot). SHEQU_LOCK_WAIT (seconds) overrides it.
LOCK_WAIT_SECONDS = 600.0
READ_LOCK_WAIT_SECONDS = 30.0       # a reader of the live file waiting for a writer (the snapshot is never locked)


def lock_wait_seconds() -> float:
    env = os.environ.get("SHEQU_LOCK_WAIT")
    return float(env) if env else LOCK_WAIT_SECONDS
