"""The inbox sensor (on by default in the service): its first tick takes the inbox as it is and queues nothing
for files the warehouse already recorded; later ticks queue exactly the quarters of new or changed files."""

import datetime as dt
import json
import os
import warnings

import dagster as dg

from pipelines.automation import inbox_sensor, quarterly_refresh_schedule
from shequ.ingest import sha256
from shequ.warehouse import connect

warnings.filterwarnings("ignore", module="dagster")


def _record(warehouse, path, rel):
    """A raw_file row for `path` as ingest writes it (file_id = sha256 of the bytes)."""
    with connect(warehouse) as con:
        con.execute("""INSERT INTO raw_file (file_id, ingest_seq, source_file, size_bytes, file_format, status,
                                             n_cells, n_loaded, n_quarantined, ingested_at, period_keys)
                       VALUES (?, (SELECT coalesce(max(ingest_seq), 0) + 1 FROM raw_file), ?, ?, 'csv', 'loaded',
                               1, 1, 0, now(), ['2024Q3'])""", [sha256(path), rel, path.stat().st_size])


def test_automation_is_on_by_default():
    assert quarterly_refresh_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert inbox_sensor.default_status == dg.DefaultSensorStatus.RUNNING


def test_first_tick_skips_loaded_files_then_only_new_or_changed(tmp_path, monkeypatch, template):
    import shutil

    wh = tmp_path / "warehouse.duckdb"
    shutil.copy(template, wh)
    inbox = tmp_path / "inbox"
    monkeypatch.setenv("SHEQU_INBOX", str(inbox))
    monkeypatch.setenv("SHEQU_WAREHOUSE", str(wh))
    for q in ("2024Q1", "2024Q2", "2024Q3"):
        (inbox / q).mkdir(parents=True)
        (inbox / q / f"天桥区_{q}.csv").write_text(f"社区名称,参保率\n北村社区,{q[-1]}0\n", encoding="utf-8")
    for q in ("2024Q1", "2024Q3"):          # loaded earlier (by `shequ refresh`): the first tick leaves them
        _record(wh, inbox / q / f"天桥区_{q}.csv", f"{q}/天桥区_{q}.csv")

    first = inbox_sensor(dg.build_sensor_context(cursor=None))
    assert [r.partition_key for r in first.run_requests] == ["2024Q2"]
    assert first.run_requests[0].tags["shequ/quarter"] == "2024Q2"
    cursor = json.loads(first.cursor)
    assert set(cursor["files"]) == {f"{q}/天桥区_{q}.csv" for q in ("2024Q1", "2024Q2", "2024Q3")}

    again = inbox_sensor(dg.build_sensor_context(cursor=first.cursor))
    assert again.run_requests == []

    # touched, same bytes: nothing; changed bytes: its quarter; a new file: its quarter
    f1 = inbox / "2024Q1" / "天桥区_2024Q1.csv"
    os.utime(f1, (dt.datetime(2025, 1, 1).timestamp(),) * 2)
    assert inbox_sensor(dg.build_sensor_context(cursor=again.cursor)).run_requests == []
    f3 = inbox / "2024Q3" / "天桥区_2024Q3.csv"
    f3.write_text("社区名称,参保率\n北村社区,95\n", encoding="utf-8")
    (inbox / "2024Q4").mkdir()
    (inbox / "2024Q4" / "姜堰区_2024Q4.csv").write_text("社区名称,参保率\n北村社区,70\n", encoding="utf-8")
    later = inbox_sensor(dg.build_sensor_context(cursor=again.cursor))
    assert [r.partition_key for r in later.run_requests] == ["2024Q3", "2024Q4"]
    assert all(r.tags["shequ/quarter"] == r.partition_key for r in later.run_requests)
