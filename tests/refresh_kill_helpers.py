"""Helpers for the kill tests: a pre-imported process that forks real `shequ refresh` processes (so a trial
spends its seconds refreshing, not importing Dagster), and per-quarter digests of every key table.

The fork server imports shequ.cli and the Dagster definitions once, then for each request forks a child that
runs ``shequ.cli.main(argv)`` with its output in a log file, SIGKILLs it after ``kill_after`` seconds if it is
still running, reaps it and answers with its exit status. The child is an ordinary separate process: the kill
is a real ``kill -9`` of a refresh in the middle of whatever it was doing.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb

# every table a refresh derives for a quarter; all of them must come from the same refresh
KEY_TABLES = ("fact_indicator_value", "agg_indicator_value", "validation_violation", "quality_hold",
              "outlier_flag", "completeness_report", "check_result", "fact_score", "fact_ranking", "fact_award",
              "fact_explanation", "ranking_release")
# check_result rows of the staging and dimension suites are written with staging (which keeps per-file progress)
STAGING_SUITES = ("stg_value", "dim_indicator", "dim_community")


def key_digests(warehouse: Path | str) -> dict[str, dict[str, str]]:
    """{quarter: {table: md5 of its rows}}, timestamps left out (they record when, not what)."""
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        out: dict[str, dict[str, str]] = {}
        for table in KEY_TABLES:
            cols = [r[0] for r in con.execute(f"DESCRIBE {table}").fetchall() if "TIMESTAMP" not in r[1]]
            row = " || '|' || ".join(f"coalesce(CAST({c} AS VARCHAR), '<NULL>')" for c in cols)
            where = f"WHERE suite NOT IN {STAGING_SUITES}" if table == "check_result" else ""
            for period, digest in con.execute(
                f"SELECT period_key, md5(string_agg(r, chr(10) ORDER BY r)) "
                f"FROM (SELECT period_key, {row} AS r FROM {table} {where}) GROUP BY period_key").fetchall():
                out.setdefault(period, {})[table] = digest
        return out
    finally:
        con.close()


SERVER = r"""
import json, os, resource, signal, sys, time, warnings
warnings.filterwarnings("ignore")
import shequ.cli
import pipelines.definitions  # noqa: F401  (imported once, shared by every forked refresh)
# what a refresh imports on first use (modules only: nothing runs, no thread pool starts before the fork)
import importlib
for m in ("pandas", "pyarrow", "plotly.graph_objects", "plotly.io", "sqlalchemy", "alembic", "structlog",
          "shequ.appraisal.reviews", "shequ.refresh_outcome", "shequ.service", "shequ.report", "rich.table",
          "dagster._core.storage.runs.sqlite", "dagster._core.storage.event_log.sqlite",
          "dagster._core.storage.schedules.sqlite", "dagster._core.instance", "_strptime", "encodings.gbk",
          "encodings.gb18030"):
    try:
        importlib.import_module(m)
    except ImportError:
        pass
print(json.dumps({"ready": True}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    t0 = time.monotonic()
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    pid = os.fork()
    if pid == 0:
        fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.environ.update(req.get("env") or {})
        try:
            rc = shequ.cli.main(req["argv"])
        except BaseException:
            import traceback
            traceback.print_exc()
            rc = 99
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(rc or 0)
    killed = False
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if req.get("kill_after") is not None and time.monotonic() - t0 >= req["kill_after"]:
            os.kill(pid, signal.SIGKILL)
            killed = True
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(0.01)
    rc = os.waitstatus_to_exitcode(status)
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"pid": pid, "rc": rc, "killed": killed and rc == -signal.SIGKILL,
                      "seconds": round(time.monotonic() - t0, 3),
                      "cpu": round(cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime, 3)}), flush=True)
"""


class ForkServer:
    """``with ForkServer() as fs: fs.run(argv, log, kill_after=None, env=None)``"""

    def __enter__(self):
        root = Path(__file__).resolve().parent.parent
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, cwd=root)
        assert json.loads(self.proc.stdout.readline())["ready"]
        return self

    def run(self, argv: list[str], log: Path, kill_after: float | None = None, env: dict | None = None) -> dict:
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log), "kill_after": kill_after,
                                          "env": env or {}}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def __exit__(self, *exc):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
