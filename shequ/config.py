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


def inbox_path(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("SHEQU_INBOX")
    return Path(env) if env else DEFAULT_INBOX


def reviews_path(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("SHEQU_REVIEWS")
    return Path(env) if env else DEFAULT_REVIEWS


# How long a writer (the refresh, shequ publish, shequ migrate) waits for another process to close the warehouse
# file before giving up. DuckDB lets one process write a file, or many read it, never both; a notebook or script
# holding a read-only connection on the live warehouse makes the writer wait this long (readers should open the
# snapshot instead: shequ.snapshot). SHEQU_LOCK_WAIT (seconds) overrides it.
LOCK_WAIT_SECONDS = 600.0
READ_LOCK_WAIT_SECONDS = 30.0       # a reader of the live file waiting for a writer (the snapshot is never locked)


def lock_wait_seconds() -> float:
    env = os.environ.get("SHEQU_LOCK_WAIT")
    return float(env) if env else LOCK_WAIT_SECONDS
