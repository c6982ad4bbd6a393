"""A file full of long numbers (a few hundred digits, each cell different, none a simple form) cannot stall
staging: parsing such a cell once took about 12 ms (the qualifier patterns 以上/以下/左右/余/多 backtracked over
every digit even when the word was absent), so a 100,000-cell sheet of them took about 20 minutes. Now each costs well
under a millisecond and the values are what the parser always gave."""

import time

import polars as pl

from shequ.values import parse_cells, parse_text


def test_two_thousand_long_numbers_parse_in_seconds():
    raws = [f"{'9' * 280}{i:05d} 元" for i in range(2000)]          # the space keeps them off the shortcut
    cells = pl.DataFrame({"raw_text": raws, "value_kind": ["amount"] * 2000, "target_unit": ["万元"] * 2000,
                          "column_unit": [""] * 2000, "table_unit": [""] * 2000})
    t0 = time.process_time()
    out = parse_cells(cells)
    spent = time.process_time() - t0
    assert spent < 4.0, f"{spent:.1f} s CPU for 2,000 long numbers"   # 13.2 s before the fix, 0.5 s after
    assert out.height == 2000 and out["reason"].is_null().all()
    assert out["value"][0] == float("9" * 280 + "00000") / 10000


def test_qualifier_words_still_read():
    f = parse_text.__wrapped__
    assert f("700余人", "count", "人", "", "").qualifier == "approx_ge"
    assert f("95%以上", "ratio", "%", "", "").qualifier == "ge"
    assert f("九成以上", "ratio", "%", "", "").qualifier == "ge"
    assert f("3万元左右", "amount", "万元", "", "").qualifier == "approx"
    assert f("1" + "0" * 250 + "多", "count", "人", "", "").qualifier == "approx_ge"
