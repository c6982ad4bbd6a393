"""JSON record arrays are read a column at a time (readers._record_columns) into exactly the cells the record-by-
record reading (readers._record_rows) gives, and the byte scan of JSON depth agrees with the text scan."""

import json
import random

import pytest

from shequ import limits
from shequ.readers import FileRead, FileRejected, _flat_records, _record_columns, _record_rows, read_file

LONG = [{"街道": "南湖街道", "社区": "新村社区", "指标": f"指标{i}", "数值": v}
        for i, v in enumerate([3, 2.5, "是", "80.0%", None, 1e16, 1e-7, 10 ** 30, -0.0, True, ""])]

SHAPES = {
    "long records": LONG,
    "wide records": [{"街道": "南湖街道", "社区": "新村社区", "常住人口": 10811.0, "志愿者组织数": 3, "备注": None},
                     {"社区": "沿河社区", "志愿者组织数": True, "常住人口": "1.2万"}],
    "unit key": [{"社区": "新村社区", "指标": "资金", "数值": 32600.0, "单位": "元"},
                 {"社区": "新村社区", "指标": "资金2", "数值": "5元", "单位": "元"},
                 {"社区": "新村社区", "指标": "资金3", "数值": None, "单位": "元"},
                 {"社区": "新村社区", "指标": "资金4", "数值": 7, "单位": ""},
                 {"社区": "新村社区", "指标": "资金5", "数值": 7, "unit": "个"},
                 {"社区": "新村社区", "指标": "资金6", "数值": 7}],
    "null values": [{"街道": None, "社区": None, "指标": "a", "数值": None, "期间": None},
                    {"街道": "", "社区": "x社区", "指标": "b", "数值": 0}],
    "mixed key orders": [{"指标": "a", "社区": "新村社区", "数值": 1, "街道": "南湖街道"},
                         {"街道": "南湖街道", "数值": 2, "指标": "b", "社区": "新村社区"},
                         {"数值": 3, "社区": "沿河社区", "指标": "c"}],
    "missing keys": [{"指标": "a", "数值": 1}, {"社区": "x社区", "指标": "b"},
                     {"街道": "南湖街道", "社区": "x社区", "指标": "c", "数值": 3, "期间": "2024年第一季度"}],
    "key spellings": [{"community": "x社区", "indicator": "a", "value": 1, "street": "s街道"},
                      {"社区": "y社区", "社区名称": "z社区", "指标名称": "b", "值": 2, "数值": 3},
                      {"社区": None, "community": "w社区", "指标": "c", "数值": 4}],
    "indicator given as a number": [{"社区": "x社区", "指标": 7, "数值": 1}, {"社区": "x社区", "指标": "b", "数值": 2}],
}
# shapes the column reading leaves to the record-by-record reading
GENERAL = {
    "records nesting a values object": [{"社区": "新村社区", "values": {"a": 1, "b": None}},
                                        {"社区": "沿河社区", "指标": {"c": 2}}],
    "records that are not objects": [{"社区": "新村社区", "指标": "a", "数值": 1}, 5, "x", None, [1, 2]],
    "long and wide records mixed": [{"社区": "x社区", "指标": "a", "数值": 1}, {"社区": "x社区", "人口": 5}],
    "a street given as a number": [{"街道": 5, "社区": "x社区", "指标": "a", "数值": 1}],
}
CONTEXTS = [(None, None), ("南湖街道", "2024年第一季度"), ("", "")]


def _both(records, street, period):
    ref = FileRead(cells=None, file_format="json")
    expected = _record_rows(records, street, period, ref)
    return _record_columns(records, street, period), expected, ref


@pytest.mark.parametrize("ctx", CONTEXTS)
@pytest.mark.parametrize("shape", SHAPES)
def test_columns_equal_record_by_record(shape, ctx):
    records = json.loads(json.dumps(SHAPES[shape], ensure_ascii=False))
    assert _flat_records(records)
    got, expected, ref = _both(records, *ctx)
    assert got is not None, "this shape is read a column at a time"
    assert got.columns == expected.columns and got.schema == expected.schema
    assert got.equals(expected), (got, expected)
    assert not ref.problems


@pytest.mark.parametrize("shape", GENERAL)
def test_other_shapes_left_to_the_record_reading(shape):
    assert _record_columns(GENERAL[shape], None, None) is None


def test_random_record_arrays_read_alike():
    rng = random.Random(11)
    keys = ["街道", "社区", "社区名称", "指标", "期间", "数值", "值", "单位", "人口", "values", "备注"]
    values = [None, "", "南湖街道", "新村社区", "元", "3", 3, 2.5, 1e300, True, "2024年第一季度", "a]\"{"]
    for _ in range(300):
        records = [{k: rng.choice(values) for k in rng.sample(keys, rng.randint(0, 6))}
                   for _ in range(rng.randint(1, 6))]
        ctx = rng.choice(CONTEXTS)
        got, expected, _ = _both(records, *ctx)
        if got is not None:
            assert got.equals(expected), records


def test_a_file_of_records_reads_with_its_context(tmp_path):
    doc = {"区": "建邺区", "期间": "2024年第一季度", "街道": "南湖街道",
           "记录": [{"社区": "新村社区", "指标": "结对单位帮扶资金", "数值": 32600.0, "单位": "元"},
                    {"街道": "", "社区": "沿河社区", "指标": "常住人口", "数值": 10811}]}
    p = tmp_path / "r.json"
    p.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    cells = read_file(p).cells
    assert cells.rows() == [
        ("", 1, "数值", "[0]", "南湖街道", "新村社区", "结对单位帮扶资金", "2024年第一季度", "32600.0元", False, "",
         "结对单位帮扶资金"),
        ("", 2, "数值", "[1]", "南湖街道", "沿河社区", "常住人口", "2024年第一季度", "10811", False, "", "常住人口")]


VALID = ['[]', '{}', '[[[1]]]', '{"a": "[[[[", "b": [{"c": "]]]"}]}', '["\\\\", ["\\"[[", "\\\\\\"{"]]',
         '[' * 70 + ']' * 70, '[{"键": "中文[值]", "x": [1, {"y": "\\u005b"}]}]', '""', '"[["']


@pytest.mark.parametrize("text", VALID)
def test_byte_depth_scan_equals_text_scan_on_valid_json(text):
    json.loads(text)
    assert limits.json_depth_valid(text) == limits.json_depth(text)


def test_too_deep_and_broken_files_rejected_as_before(tmp_path, monkeypatch):
    monkeypatch.setenv("SHEQU_MAX_JSON_DEPTH", "64")
    cases = {
        "deep.json": ("[" * 100 + "]" * 100, "too_large", "至少 100 层"),
        # not JSON: the byte scan's figure is not trusted, the text scan decides before the parse error
        "unterminated.json": ('[{"社区": "x' + "[" * 100, "too_large", "至少 102 层"),
        "deep_in_string.json": ('["' + "[" * 500 + '"]', None, None),
        "broken.json": ('{"a": [1, 2', "file_unreadable", "JSON 解析失败"),
        "long_number.json": ("[" + "1" * 400 + "]", "number_too_long", "400 个字符"),
    }
    for name, (text, reason, words) in cases.items():
        p = tmp_path / name
        p.write_text(text, encoding="utf-8")
        if reason is None:     # brackets inside a string are no nesting: read, its one record not an object
            assert [x["reason_code"] for x in read_file(p).problems] == ["bad_record"]
            continue
        with pytest.raises(FileRejected) as e:
            read_file(p)
        assert e.value.reason == reason and words in e.value.message, (name, e.value.message)
