"""Every reason code the code base emits (found by reading the source, tests/reason_scan.py) is in
models/catalogue/reason_codes.csv with a Chinese label and description, and in docs/reason-codes.md; the CLI's
labels and shequ.reasons read the same file."""

import csv
import re

from reason_scan import ROOT, codes_in_source
from shequ import reasons
from shequ.cli import reason_labels

CSV = ROOT / "models" / "catalogue" / "reason_codes.csv"
DOC = ROOT / "docs" / "reason-codes.md"


def _rows():
    with open(CSV, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_catalogue_is_well_formed():
    rows = _rows()
    assert list(rows[0]) == ["code", "label_zh", "description_zh"]
    codes = [r["code"] for r in rows]
    assert len(codes) == len(set(codes)), [c for c in codes if codes.count(c) > 1]
    for r in rows:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", r["code"]), r
        assert re.search(r"[\u4e00-\u9fff]", r["label_zh"]) and re.search(r"[\u4e00-\u9fff]", r["description_zh"]), r


def test_every_code_in_the_source_is_catalogued():
    used = codes_in_source()
    catalogued = {r["code"] for r in _rows()}
    missing = {c: sorted(f) for c, f in used.items() if c not in catalogued}
    assert not missing, f"reason codes used in the source but not in {CSV.name}: {missing}"
    # the scanner itself still finds the codes it is meant to find (a scanner that finds nothing passes anything)
    assert {"internal_error", "unsupported_format", "no_header", "non_finite", "out_of_range", "unknown_header",
            "ratio_parts_inconsistent", "json_too_deep", "number_too_long", "hidden_file", "date_as_period",
            "unknown_community", "missing"} <= set(used)


def test_every_catalogued_code_is_documented():
    doc = DOC.read_text(encoding="utf-8")
    undocumented = [r["code"] for r in _rows() if f"`{r['code']}`" not in doc]
    assert not undocumented, f"codes in {CSV.name} missing from {DOC.name}: {undocumented}"


def test_lookup_and_cli_labels_agree():
    rows = _rows()
    assert reasons.label("out_of_range") == "超出范围" and reasons.label("no_such_code") == "no_such_code"
    assert reason_labels() == {r["code"]: r["label_zh"] for r in rows}
    assert all(reasons.description(r["code"]) == r["description_zh"] for r in rows)
