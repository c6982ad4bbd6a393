"""Distributed ingestion for the lake backend on real components: 2 real celery workers (`shequ lake workers
start`, dagster-celery on the Redis of scripts/install_lake.sh) stage the bundled sample file by file into the
SeaweedFS bucket, then the quarter merge, checks and appraisal run once and publish into the Iceberg lake. One run,
during which the process executing a file's task on one worker is SIGKILLed mid-file, pins:
- the lake holds the same facts, aggregates, scores, ranks and titles as the embedded path (bit-exact digests);
- both workers took tasks;
- the killed task was handed out again and its file is staged exactly once: no partial partition, no duplicate.
Skipped when the components cannot be started, FAILED under CI=1 (fixtures of tests/test_lake_backend.py)."""

import signal
import subprocess
import threading
import time

import duckdb
import psutil
import pytest

from test_lake_backend import SHEQU, lake_env, lake_home  # noqa: F401 - the shared lake fixtures

pytestmark = pytest.mark.lake

COMPARED = ("fact_indicator_value", "agg_indicator_value", "fact_score", "fact_ranking", "fact_award")


def _digests(con) -> dict:
    """{table/quarter: (rows, md5)} over every column cast to VARCHAR (as tests/results_digest.py); the facts'
    loaded_at (the time the fact build ran) left out."""
    out = {}
    for t in COMPARED:
        src = f"(SELECT * EXCLUDE (loaded_at) FROM {t})" if t == "fact_indicator_value" else t
        cols = [r[0] for r in con.execute(f"DESCRIBE {src}").fetchall()]
        row = " || '|' || ".join(f"coalesce(CAST(\"{c}\" AS VARCHAR), '<NULL>')" for c in cols)
        for pk, n, md5 in con.execute(
                f"SELECT period_key, count(*), md5(string_agg(r, chr(10) ORDER BY r)) "
                f"FROM (SELECT period_key, {row} AS r FROM {src}) GROUP BY 1 ORDER BY 1").fetchall():
            out[f"{t}/{pk}"] = (n, md5)
    return out


@pytest.fixture(scope="module")
def workers(lake_home):
    env = {**__import__("os").environ, "SHEQU_HOME": str(lake_home)}
    r = subprocess.run([SHEQU, "lake", "workers", "start", "--count", "2"], env=env, capture_output=True, text=True,
                       timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("已启动") + r.stdout.count("已在运行") == 2, r.stdout
    yield lake_home
    subprocess.run([SHEQU, "lake", "workers", "stop"], env=env, capture_output=True, text=True, timeout=120)


def _engine_events(instance, run_id):
    from dagster import DagsterEventType

    out = []
    for rec in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        ev = rec.dagster_event
        md = ev.engine_event_data.metadata if ev and ev.engine_event_data else {}
        if "Celery worker" in md:
            out.append((ev.step_key, md["Celery worker"].value))
    return out


@pytest.fixture(scope="module")
def run(workers, built, tmp_path_factory):
    """The sample through the 2 workers, the task of one file killed while it runs; returns what happened."""
    import os

    from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter

    from shequ import lake, workers as w

    mp = pytest.MonkeyPatch()
    ns = "t_celery_" + os.urandom(4).hex()
    mp.setenv("SHEQU_HOME", str(workers))
    mp.setenv("SHEQU_LAKE_NAMESPACE", ns)
    wh = tmp_path_factory.mktemp("lake_ingest") / "warehouse.duckdb"
    instance = DagsterInstance.from_config(str(w.dagster_home()))
    before = {r.run_id for r in instance.get_runs(filters=RunsFilter(job_name="lake_ingest"))}
    box: dict = {}

    def launch():
        try:
            box["result"] = w.run_ingest(str(built["inbox"]), str(wh), namespace=ns, min_workers=2)
        except BaseException as e:  # noqa: BLE001 - reported by the assertions below
            box["error"] = e

    t0 = time.perf_counter()
    th = threading.Thread(target=launch)
    th.start()
    killed = None
    while th.is_alive() and killed is None:
        time.sleep(0.1)
        runs = [r for r in instance.get_runs(filters=RunsFilter(job_name="lake_ingest",
                                                                statuses=[DagsterRunStatus.STARTED]))
                if r.run_id not in before]
        if not runs:
            continue
        run_id = runs[0].run_id
        done = {rec.dagster_event.step_key for rec in instance.all_logs(run_id, of_type=DagsterEventType.STEP_SUCCESS)}
        running = [(k, host) for k, host in _engine_events(instance, run_id)
                   if k.startswith("stage_file[") and k not in done]
        # not the first file: let the other worker be busy too, so the kill lands while work is spread
        if len(_engine_events(instance, run_id)) >= 3 and running:
            step, host = running[-1]
            pid = w.running()[host.split("@")[0]]
            children = psutil.Process(pid).children()
            assert len(children) == 1          # --concurrency 1: one pool process runs the task
            os.kill(children[0].pid, signal.SIGKILL)
            killed = {"step": step, "worker": host, "pid": children[0].pid}
    th.join(timeout=600)
    took = time.perf_counter() - t0
    mp.undo()
    assert "error" not in box, box.get("error")
    res = box["result"]
    events = _engine_events(instance, res["run_id"])
    yield {"result": res, "killed": killed, "events": events, "warehouse": wh, "ns": ns, "seconds": took}
    mp.setenv("SHEQU_HOME", str(workers))
    mp.setenv("SHEQU_LAKE_NAMESPACE", ns)
    cfg = lake.LakeConfig.load()
    cat = cfg.catalog()
    for ident in cat.list_tables(ns):
        cat.purge_table(ident)
    cat.drop_namespace(ns)
    fs = cfg.filesystem()
    fs.rm(f"{cfg.bucket}/staging/{ns}", recursive=True)
    mp.undo()


def test_two_workers_publish_the_embedded_paths_facts_scores_ranks_and_titles(run, built, monkeypatch):
    from shequ import lake

    res = run["result"]
    assert res["success"], res["failures"]
    print(f"\nsample (12 files, 3 quarters) through 2 celery workers into the lake: {run['seconds']:.1f} s wall")
    assert res["output"]["published"] == ["2023Q4", "2024Q1", "2024Q2"]
    want_con = duckdb.connect(str(built["warehouse"]), read_only=True)
    want = _digests(want_con)
    monkeypatch.setenv("SHEQU_HOME", str(lake_home_path()))
    monkeypatch.setenv("SHEQU_LAKE_NAMESPACE", run["ns"])
    lcon = duckdb.connect()
    lake.attach(lcon)
    got = _digests(lcon)
    assert got == want
    assert {k.split("/")[1] for k in got} == {"2023Q4", "2024Q1", "2024Q2"}
    assert all(n > 0 for n, _ in got.values())
    # the node's local warehouse: the staged rows once each, as the embedded path stages them
    local = duckdb.connect(str(run["warehouse"]), read_only=True)
    for t in ("raw_file", "stg_value"):
        assert (local.execute(f"SELECT count(*) FROM {t}").fetchall()
                == want_con.execute(f"SELECT count(*) FROM {t}").fetchall()), t


def test_both_workers_took_file_tasks(run):
    hosts = {host.split("@")[0] for step, host in run["events"] if step.startswith("stage_file[")}
    assert hosts == {"w1", "w2"}, run["events"]
    assert res_workers(run) == ["w1", "w2"]


def test_worker_killed_mid_file_is_retried_with_no_partial_or_duplicate_rows(run):
    from shequ import distributed, lake

    k = run["killed"]
    assert k is not None, "the run ended before a file task could be killed"
    assert not psutil.pid_exists(k["pid"]) or psutil.Process(k["pid"]).status() == psutil.STATUS_ZOMBIE
    # the killed step was handed out again (task_acks_late + task_reject_on_worker_lost) and the run succeeded
    executions = [host for step, host in run["events"] if step == k["step"]]
    assert len(executions) >= 2, (k, run["events"])
    assert run["result"]["success"]
    # its file: one committed marker naming one complete attempt, whose rows entered the warehouse once
    mp = pytest.MonkeyPatch()
    mp.setenv("SHEQU_HOME", str(lake_home_path()))
    mp.setenv("SHEQU_LAKE_NAMESPACE", run["ns"])
    cfg = lake.LakeConfig.load()
    mp.undo()
    fs = cfg.filesystem()
    local = duckdb.connect(str(run["warehouse"]), read_only=True)
    dup = local.execute("SELECT count(*) FROM (SELECT *, count(*) AS n FROM stg_value GROUP BY ALL HAVING n > 1)"
                        ).fetchall()[0][0]
    assert dup == 0
    for file_id, n_stg, n_q in local.execute(
            """SELECT r.file_id, (SELECT count(*) FROM stg_value s WHERE s.file_id = r.file_id),
                      (SELECT count(*) FROM quarantine q WHERE q.file_id = r.file_id) FROM raw_file r""").fetchall():
        m = distributed.read_marker(fs, cfg, file_id)
        assert m is not None
        assert (m["objects"]["stg_value"]["rows"], m["objects"]["quarantine"]["rows"]) == (n_stg, n_q)


def lake_home_path():
    from test_lake_backend import TEST_HOME

    return TEST_HOME


def res_workers(run):
    return run["result"]["output"]["workers"]


def test_unreachable_redis_is_named_in_the_message(lake_home, tmp_path):
    import os

    env = {**os.environ, "SHEQU_HOME": str(lake_home), "SHEQU_LAKE_REDIS_URL": "redis://127.0.0.1:9/0"}
    for cmd in (["workers", "start", "--count", "1"], ["ingest", "--inbox", str(tmp_path), "--warehouse",
                                                       str(tmp_path / "w.duckdb")]):
        r = subprocess.run([SHEQU, "lake", *cmd], env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 1, r.stdout + r.stderr
        assert "无法连接 Redis redis://127.0.0.1:9/0" in r.stdout, r.stdout
