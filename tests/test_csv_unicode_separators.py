"""Unicode line and paragraph separators inside a CSV cell are cell text, never a row break (issue 13): "5<U+2028>6"
in 重大事件数 is quarantined as not a number with its exact cell (it once landed as 5 and triggered a veto), and every
later row keeps its source_cell."""

import polars as pl
import pytest

from hostile_helpers import PREFIX, ingest_files
from shequ.readers import read_file

SEPARATORS = {"LS": "\u2028", "PS": "\u2029", "NEL": "\x85", "VT": "\x0b", "FF": "\x0c", "FS": "\x1c", "GS": "\x1d",
              "RS": "\x1e"}


def _csv(sep: str, quoted: bool) -> str:
    cell = f'"5{sep}6"' if quoted else f"5{sep}6"
    return ("街道,社区名称,重大事件数,居委会成员人数\r\n"
            f"南湖街道,南湖社区,{cell},7\r\n"
            "南湖街道,沿河社区,0,8\r\n"
            f"南湖街道,吉庆社区,1,9{sep}\r\n"
            "南湖街道,文体社区,2,6\r\n")


@pytest.mark.parametrize("quoted", [False, True], ids=["unquoted", "quoted"])
@pytest.mark.parametrize("name", list(SEPARATORS))
def test_separator_is_cell_text_and_cells_keep_their_address(tmp_path, name, quoted):
    p = tmp_path / "a.csv"
    p.write_text(_csv(SEPARATORS[name], quoted), encoding="utf-8")
    cells = {(r["community_raw"], r["header_raw"]): (r["raw_text"], r["source_cell"])
             for r in read_file(p).cells.iter_rows(named=True)}
    assert cells[("南湖社区", "重大事件数")] == (f"5{SEPARATORS[name]}6", "R2C3")
    assert cells[("沿河社区", "重大事件数")] == ("0", "R3C3")
    assert cells[("吉庆社区", "居委会成员人数")][1] == "R4C4"
    assert cells[("文体社区", "重大事件数")] == ("2", "R5C3")
    assert len(cells) == 8


@pytest.mark.parametrize("name", ["LS", "PS", "NEL", "VT", "FF"])
def test_split_number_is_quarantined_with_its_exact_cell(tmp_path, template, name):
    out = ingest_files(tmp_path, template, {f"{PREFIX}sep.csv": _csv(SEPARATORS[name], quoted=False).encode("utf-8")})
    q = out["quarantine"].filter(pl.col("source_cell") == "R2C3")
    assert q["reason_code"].to_list() == ["unparseable_value"]
    facts = {(r["name"], r["indicator_code"]): (r["value"], r["source_cell"]) for r in out["facts"].iter_rows(named=True)}
    assert ("南湖社区", "major_incident") not in facts              # never 5 (a veto), never 56
    assert facts[("沿河社区", "major_incident")] == (0.0, "R3C3")
    assert facts[("文体社区", "major_incident")] == (2.0, "R5C3")
    assert facts[("吉庆社区", "committee_members")] == (9.0, "R4C4")  # a trailing separator is whitespace
