"""Reason codes (quarantine.reason_code, raw_file.reason_code, eligibility reasons) and their Chinese labels.

The one list is models/catalogue/reason_codes.csv (code,label_zh,description_zh); tests/test_reason_codes_documented.py
fails when the code base emits a code that is not in it or not in docs/reason-codes.md. Read once per process.
"""

import csv
import functools

from . import config

CODES_CSV = config.MODELS / "catalogue" / "reason_codes.csv"


@functools.lru_cache(maxsize=1)
def load() -> dict[str, dict[str, str]]:
    """code -> {"label_zh", "description_zh"}; empty when the file is absent."""
    if not CODES_CSV.exists():
        return {}
    with open(CODES_CSV, encoding="utf-8", newline="") as fh:
        return {r["code"]: {"label_zh": r.get("label_zh") or "", "description_zh": r.get("description_zh") or ""}
                for r in csv.DictReader(fh) if r.get("code")}


def label(code: str) -> str:
    """`out_of_range` -> 超出范围; an unknown code is returned as it is."""
    return load().get(code, {}).get("label_zh") or code


def description(code: str) -> str:
    return load().get(code, {}).get("description_zh") or ""
