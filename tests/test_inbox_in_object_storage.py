"""The inbox in object storage (issue 12 item 2) on a real SeaweedFS started by scripts/install_lake.sh: offices
upload to a bucket prefix; `shequ refresh --inbox s3://bucket/prefix` gives the same facts as the same files in a
local folder and records each object's URI, key, version and ETag; a second refresh downloads nothing; a new
version of a key is read again; an object deleted between listing and reading is recorded as object_missing; an
unreachable store fails naming its endpoint and leaves the warehouse untouched; the inbox sensor queues the
quarters of new or changed objects. Skipped when the components cannot be started, FAILED under CI=1."""

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import duckdb
import pytest

from test_lake_backend import lake_home  # noqa: F401 - the session fixture that starts the lake components

pytestmark = pytest.mark.lake
warnings.filterwarnings("ignore", module="dagster")

SHEQU = str(Path(sys.executable).with_name("shequ"))


@pytest.fixture
def bucket(lake_home, monkeypatch, request):  # noqa: F811 - the imported fixture
    """A fresh bucket (versioned unless the test asks otherwise), emptied and removed afterwards."""
    monkeypatch.setenv("SHEQU_HOME", str(lake_home))
    from shequ.lake import LakeConfig

    cfg = LakeConfig.load(need_catalog=False)
    fs = cfg.filesystem(version_aware=True)
    name = "inbox-" + uuid.uuid4().hex[:10]
    fs.mkdir(name)
    versioned = getattr(request, "param", True)
    if versioned:
        fs.call_s3("put_bucket_versioning", Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    yield {"fs": fs, "name": name, "uri": f"s3://{name}/offices/inbox", "versioned": versioned,
           "env": {**os.environ, "SHEQU_HOME": str(lake_home)}}
    out = fs.call_s3("list_object_versions", Bucket=name)
    for v in out.get("Versions", []) + out.get("DeleteMarkers", []):
        fs.call_s3("delete_object", Bucket=name, Key=v["Key"], VersionId=v["VersionId"])
    fs.call_s3("delete_bucket", Bucket=name)


def _put(bucket, rel: str, data: bytes) -> None:
    bucket["fs"].pipe(f"{bucket['name']}/offices/inbox/{rel}", data)
    bucket["fs"].invalidate_cache()


def _csv(rate: int, community: str = "北村社区") -> bytes:
    return f"社区名称,参保率\n{community},{rate}\n".encode("utf-8")


def _digest(con, sql: str) -> tuple[int, str]:
    return con.execute(f"SELECT count(*), md5(string_agg(r, chr(10) ORDER BY r)) FROM (SELECT CAST(t AS VARCHAR) AS r "
                       f"FROM ({sql}) t)").fetchall()[0]


FACTS = "SELECT * EXCLUDE (loaded_at) FROM fact_indicator_value"


def test_refresh_from_bucket_equals_refresh_from_local_inbox(built, bucket, tmp_path):
    from shequ.ingest import inventory
    from shequ.warehouse import connect

    inbox = built["inbox"]
    for p in inventory(inbox):          # uploaded in the local inventory's order
        bucket["fs"].put_file(str(p), f"{bucket['name']}/offices/inbox/{p.relative_to(inbox).as_posix()}")
    wh = tmp_path / "warehouse.duckdb"
    r = subprocess.run([SHEQU, "refresh", "--inbox", bucket["uri"], "--warehouse", str(wh)], env=bucket["env"],
                       capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    with connect(built["warehouse"], read_only=True) as local, connect(wh, read_only=True) as s3:
        for sql in (FACTS, "SELECT * FROM fact_ranking", "SELECT * FROM fact_score",
                    "SELECT * EXCLUDE (quarantined_at) FROM quarantine"):
            assert _digest(s3, sql) == _digest(local, sql), sql
        assert _digest(s3, FACTS)[0] > 10_000
        rows = s3.execute("SELECT source_file, source_uri, object_key, object_version, object_etag, size_bytes "
                          "FROM raw_file ORDER BY ingest_seq").fetchall()
    listing = bucket["fs"].find(f"{bucket['name']}/offices/inbox", detail=True)
    assert len(rows) == len(listing) == len(inventory(inbox))
    for rel, uri, key, version, etag, size in rows:
        info = listing[f"{bucket['name']}/{key}"]
        assert key == f"offices/inbox/{rel}" and uri == f"s3://{bucket['name']}/{key}"
        assert version == info["VersionId"] and version not in (None, "null")
        assert etag == info["ETag"].strip('"') and size == info["size"]


@pytest.mark.parametrize("bucket", [True, False], indirect=True, ids=["versioned", "unversioned"])
def test_cursor_reads_each_object_version_once(template, bucket, tmp_path):
    from shequ.object_inbox import ObjectInbox, ingest_objects
    from shequ.warehouse import connect

    wh = tmp_path / "w.duckdb"
    shutil.copy(template, wh)
    _put(bucket, "2024Q3/天桥区_2024Q3_一.csv", _csv(90))
    _put(bucket, "2024Q3/天桥区_2024Q3_二.csv", _csv(80, "北园东社区"))
    _put(bucket, "2024Q4/天桥区_2024Q4.csv", _csv(70))
    with connect(wh) as con:
        ob = ObjectInbox(bucket["uri"])
        first = ingest_objects(con, ob, "2024Q3")
        # only the quarter's objects are fetched; both load
        assert sorted(ob.downloaded) == ["offices/inbox/2024Q3/天桥区_2024Q3_一.csv",
                                         "offices/inbox/2024Q3/天桥区_2024Q3_二.csv"]
        assert [s.status for s in first] == ["loaded", "loaded"]
        n_rows = con.execute("SELECT count(*), max(ingest_seq) FROM raw_file").fetchall()[0]

        ob = ObjectInbox(bucket["uri"])
        again = ingest_objects(con, ob, "2024Q3")
        assert ob.downloaded == [] and [s.status for s in again] == ["unchanged", "unchanged"]
        assert con.execute("SELECT count(*), max(ingest_seq) FROM raw_file").fetchall()[0] == n_rows

        # the same bytes uploaded again: a new version (versioned bucket) is fetched once, found unchanged, and
        # its version recorded so that the next refresh does not fetch it again
        _put(bucket, "2024Q3/天桥区_2024Q3_一.csv", _csv(90))
        ob = ObjectInbox(bucket["uri"])
        same = ingest_objects(con, ob, "2024Q3")
        assert ob.downloaded == (["offices/inbox/2024Q3/天桥区_2024Q3_一.csv"] if bucket["versioned"] else [])
        assert [s.status for s in same] == ["unchanged", "unchanged"]
        ob = ObjectInbox(bucket["uri"])
        ingest_objects(con, ob, "2024Q3")
        assert ob.downloaded == []

        # other bytes under the same key: read again, a new raw_file row; the older version stays as history
        _put(bucket, "2024Q3/天桥区_2024Q3_一.csv", _csv(95))
        ob = ObjectInbox(bucket["uri"])
        changed = ingest_objects(con, ob, "2024Q3")
        assert ob.downloaded == ["offices/inbox/2024Q3/天桥区_2024Q3_一.csv"]
        assert sorted(s.status for s in changed) == ["loaded", "unchanged"]
        versions = con.execute("""SELECT object_version, object_etag, ingest_seq FROM raw_file
                                  WHERE object_key = 'offices/inbox/2024Q3/天桥区_2024Q3_一.csv'
                                  ORDER BY ingest_seq""").fetchall()
        assert len(versions) == 2 and versions[0][1] != versions[1][1]
        if bucket["versioned"]:
            assert versions[0][0] and versions[1][0] and versions[0][0] != versions[1][0]
        else:
            assert versions[0][0] is None and versions[1][0] is None
        latest = con.execute("""SELECT s.value FROM stg_value s JOIN raw_file f USING (file_id)
                                WHERE f.object_key LIKE '%_一.csv' ORDER BY f.ingest_seq DESC LIMIT 1""").fetchall()
        assert latest == [(0.95,)]          # 95 (%) as a rate


def test_objects_rejected_before_download_are_recorded(template, bucket, tmp_path, monkeypatch):
    """Deleted between the listing and the read: object_missing; over the size limit by its listed size:
    too_large without a byte fetched; a '..' key segment (AWS S3 allows it, SeaweedFS refuses the upload):
    hidden_file. The other objects still load."""
    import datetime as dt

    from shequ.ingest import Ingestor
    from shequ.object_inbox import InboxObject, ObjectInbox, _ingest_one, ingest_objects
    from shequ.warehouse import connect

    wh = tmp_path / "w.duckdb"
    shutil.copy(template, wh)
    _put(bucket, "2024Q3/天桥区_2024Q3_1.csv", _csv(90))
    _put(bucket, "2024Q3/天桥区_2024Q3_2.csv", _csv(80, "北园东社区"))
    _put(bucket, "2024Q3/天桥区_2024Q3_3.csv", _csv(70, "官扎营社区"))
    _put(bucket, "2024Q3/天桥区_2024Q3_4.csv", _csv(60) + b"," * 4000)
    monkeypatch.setenv("SHEQU_MAX_FILE_MB", "0.002")          # 2,097 bytes: the 4th object is over it
    gone = "offices/inbox/2024Q3/天桥区_2024Q3_3.csv"

    def delete_third(summary):
        if summary.source_file.endswith("_1.csv"):           # listed already; deleted before it is read
            bucket["fs"].rm(f"{bucket['name']}/{gone}")

    with connect(wh) as con:
        ob = ObjectInbox(bucket["uri"])
        out = {s.source_file: s for s in ingest_objects(con, ob, "2024Q3", on_file=delete_third)}
        climbing = InboxObject(bucket["name"], "offices/inbox/2024Q3/../天桥区_2024Q3_5.csv",
                               "2024Q3/../天桥区_2024Q3_5.csv", 40, dt.datetime.now(), "e5", None)
        assert _ingest_one(ob, Ingestor(con, tmp_path), climbing, {}, tmp_path / "x").reason_code == "hidden_file"
        rows = {r[0]: r[1:] for r in con.execute(
            "SELECT source_file, status, reason_code, message, source_uri, object_version, file_id FROM raw_file"
        ).fetchall()}
    assert ob.downloaded == ["offices/inbox/2024Q3/天桥区_2024Q3_1.csv", "offices/inbox/2024Q3/天桥区_2024Q3_2.csv"]
    assert out["2024Q3/天桥区_2024Q3_1.csv"].status == out["2024Q3/天桥区_2024Q3_2.csv"].status == "loaded"
    status, reason, msg, uri, version, file_id = rows["2024Q3/天桥区_2024Q3_3.csv"]
    assert (status, reason) == ("rejected", "object_missing") and out["2024Q3/天桥区_2024Q3_3.csv"].status == "rejected"
    assert uri == f"s3://{bucket['name']}/{gone}" and version and file_id.startswith("object:")
    assert "已被删除" in msg
    status, reason, msg, *_ = rows["2024Q3/天桥区_2024Q3_4.csv"]
    assert (status, reason) == ("rejected", "too_large") and "SHEQU_MAX_FILE_MB" in msg
    assert rows["2024Q3/../天桥区_2024Q3_5.csv"][:2] == ("rejected", "hidden_file")


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_unreachable_object_store_names_endpoint_and_changes_nothing(built, bucket, tmp_path, monkeypatch):
    from shequ.warehouse import connect

    wh = tmp_path / "warehouse.duckdb"
    shutil.copy(built["warehouse"], wh)
    before = hashlib.sha256(wh.read_bytes()).hexdigest()
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    env = {**bucket["env"], "SHEQU_LAKE_S3_ENDPOINT": endpoint}
    r = subprocess.run([SHEQU, "refresh", "--inbox", bucket["uri"], "--warehouse", str(wh)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert endpoint in r.stdout and "仓库未作任何改动" in r.stdout, r.stdout
    assert "Traceback" not in r.stdout + r.stderr
    assert hashlib.sha256(wh.read_bytes()).hexdigest() == before

    # the Dagster job (what the sensor and the schedule launch) fails at its first step; facts, rankings and
    # staging keep what they held
    from conftest import run_quarter

    monkeypatch.setenv("SHEQU_LAKE_S3_ENDPOINT", endpoint)
    with connect(wh, read_only=True) as con:
        old = [_digest(con, f"SELECT * FROM {t}") for t in ("raw_file", "stg_value", "fact_indicator_value",
                                                            "fact_ranking")]
    result = run_quarter(wh, bucket["uri"], "2024Q1")
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    err = failure.step_failure_data.error
    while err.cause is not None:
        err = err.cause
    assert failure.step_key == "inbox_files" and endpoint in err.message
    with connect(wh, read_only=True) as con:
        assert [_digest(con, f"SELECT * FROM {t}") for t in ("raw_file", "stg_value", "fact_indicator_value",
                                                             "fact_ranking")] == old


def test_store_lost_mid_read_keeps_files_read_and_fails_naming_endpoint(template, bucket, tmp_path):
    """The store goes away after the first object: that file stays loaded whole, the read fails with the
    endpoint in the message, the second object leaves no row (the next refresh reads it)."""
    import dataclasses

    from shequ.object_inbox import ObjectInbox, ObjectStoreError, ingest_objects
    from shequ.warehouse import connect

    wh = tmp_path / "w.duckdb"
    shutil.copy(template, wh)
    _put(bucket, "2024Q3/天桥区_2024Q3_1.csv", _csv(90))
    _put(bucket, "2024Q3/天桥区_2024Q3_2.csv", _csv(80, "北园东社区"))
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    ob = ObjectInbox(bucket["uri"])

    def lose_store(summary):                 # from now on every request goes to a port nobody listens on
        ob.cfg = dataclasses.replace(ob.cfg, s3_endpoint=endpoint)
        ob.endpoint, ob._fs = endpoint, None

    with connect(wh) as con:
        with pytest.raises(ObjectStoreError, match=endpoint.replace(".", r"\.")):
            ingest_objects(con, ob, "2024Q3", on_file=lose_store)
        rows = con.execute("SELECT source_file, status, n_loaded FROM raw_file").fetchall()
        staged = con.execute("SELECT count(*) FROM stg_value").fetchall()[0][0]
    assert rows == [("2024Q3/天桥区_2024Q3_1.csv", "loaded", 1)] and staged == 1


def test_sensor_queues_quarters_of_new_or_changed_objects(template, bucket, tmp_path, monkeypatch):
    import dagster as dg

    from pipelines.automation import inbox_sensor
    from shequ.object_inbox import ObjectStoreError
    from shequ.warehouse import connect

    wh = tmp_path / "warehouse.duckdb"
    shutil.copy(template, wh)
    monkeypatch.setenv("SHEQU_INBOX", bucket["uri"])
    monkeypatch.setenv("SHEQU_WAREHOUSE", str(wh))
    for q in ("2024Q1", "2024Q2", "2024Q3"):
        _put(bucket, f"{q}/天桥区_{q}.csv", _csv(int(q[-1]) * 10))
    # 2024Q1 and 2024Q3 were read by an earlier refresh: the first tick leaves them
    etags = {o["Key"].split("/")[-2]: o["ETag"].strip('"')
             for o in bucket["fs"].find(f"{bucket['name']}/offices/inbox", detail=True).values()}
    with connect(wh) as con:
        for i, q in enumerate(("2024Q1", "2024Q3"), start=1):
            con.execute("""INSERT INTO raw_file (file_id, ingest_seq, source_file, size_bytes, file_format, status,
                                                 n_cells, n_loaded, n_quarantined, ingested_at, object_etag)
                           VALUES (?, ?, ?, 1, 'csv', 'loaded', 1, 1, 0, now(), ?)""",
                        [f"f{i}", i, f"{q}/天桥区_{q}.csv", etags[q]])

    first = inbox_sensor(dg.build_sensor_context(cursor=None))
    assert [r.partition_key for r in first.run_requests] == ["2024Q2"]
    assert first.run_requests[0].tags["shequ/quarter"] == "2024Q2"
    again = inbox_sensor(dg.build_sensor_context(cursor=first.cursor))
    assert again.run_requests == []

    # the same bytes uploaded again (a new version): nothing; other bytes, and a new object: their quarters
    _put(bucket, "2024Q1/天桥区_2024Q1.csv", _csv(10))
    assert inbox_sensor(dg.build_sensor_context(cursor=again.cursor)).run_requests == []
    _put(bucket, "2024Q3/天桥区_2024Q3.csv", _csv(99))
    _put(bucket, "2024Q4/姜堰区_2024Q4.csv", _csv(70, "南苑社区"))
    later = inbox_sensor(dg.build_sensor_context(cursor=again.cursor))
    assert [r.tags["shequ/quarter"] for r in later.run_requests] == ["2024Q3", "2024Q4"]

    endpoint = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("SHEQU_LAKE_S3_ENDPOINT", endpoint)
    with pytest.raises(ObjectStoreError, match=endpoint.replace(".", r"\.")):
        inbox_sensor(dg.build_sensor_context(cursor=later.cursor))
