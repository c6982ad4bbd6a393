import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shequ.periods import (calendar_frame, last_completed_quarter, normalise_quarter_arg, parse_quarter,
                           partition_to_quarter, quarter_label, quarter_to_partition, quarters_between)


@pytest.mark.parametrize("text", ["2020年第三季度", "2020年三季度", "三季度", "第3季度", "2020Q3", "2020-Q3", "20年Q3",
                                  "Q3", "7-9月", "二〇二〇年第三季度", "2020年第3季度统计表"])
def test_quarter_notations(text):
    assert parse_quarter(text, default_year=2020) == "2020Q3"


@pytest.mark.parametrize("text", ["9月份", "2020年度", "上半年", "社区名称", ""])
def test_not_a_quarter(text):
    assert parse_quarter(text, default_year=2020) is None


def test_quarter_without_year_needs_context():
    assert parse_quarter("三季度") is None


@given(st.integers(2000, 2035), st.integers(1, 4))
def test_label_round_trip(y, q):
    key = f"{y}Q{q}"
    assert parse_quarter(quarter_label(key)) == key
    assert normalise_quarter_arg(quarter_label(key)) == key
    assert partition_to_quarter(quarter_to_partition(key)) == key


def test_calendar_rollups():
    cal = calendar_frame(2024, 2024)
    assert cal.filter(cal["period_type"] == "quarter")["period_key"].to_list() == quarters_between("2024Q1", "2024Q4")
    sep = cal.filter(cal["period_key"] == "2024-09").row(0, named=True)
    assert sep["quarter_key"] == "2024Q3" and sep["year_key"] == "2024" and sep["half_key"] == "2024H2"
    q3 = cal.filter(cal["period_key"] == "2024Q3").row(0, named=True)
    assert q3["label"] == "2024年第三季度" and q3["end_date"] == dt.date(2024, 9, 30)


def test_last_completed_quarter():
    assert last_completed_quarter(dt.date(2024, 10, 5)) == "2024Q3"
    assert last_completed_quarter(dt.date(2025, 1, 5)) == "2024Q4"


def test_bad_quarter_argument_is_an_error():
    with pytest.raises(ValueError, match="无法识别"):
        normalise_quarter_arg("明年")


@given(st.integers(2000, 2035), st.integers(1, 12))
def test_month_notations(y, m):
    from shequ.periods import classify_period, quarter_of_key

    key = f"{y}-{m:02d}"
    for text in (f"{y}年{m}月", f"{y}.{m:02d}", f"{y}/{m}", f"{y}{m:02d}", f"{m}月份"):
        assert classify_period(text, y) == (key, None), text
    assert quarter_of_key(key) == f"{y}Q{(m - 1) // 3 + 1}"


@given(st.integers(2000, 2035), st.sampled_from([3, 6, 9, 12]))
def test_year_to_date_ends_at_its_quarter(y, m):
    from shequ.periods import QUARTER_END, ytd_quarter

    day = next(d for (mm, d) in QUARTER_END if mm == m)
    for text in (f"截至{y}年{m}月{day}日", f"{y}年1-{m}月累计", f"截至{y}年{m}月底"):
        assert ytd_quarter(text) == (f"{y}Q{m // 3}", None), text
