"""The Data Docs process a refresh starts ahead (it imports GX while the refresh works, then waits for the check
results on its stdin) writes the same site as the one-shot `python -m shequ.datadocs --warehouse`; a process whose
data_docs step never comes ends without writing anything."""

import pickle
import re
import subprocess
import sys
import time

from shequ.config import ROOT


def _site(folder) -> dict[str, str]:
    """Every file of a Data Docs site; the index's "generated at" minute and the random ids GX gives its
    collapsible blocks (uuid4, new in every build) left out."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            text = p.read_bytes().decode("utf-8", "replace")
            text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "UUID", text)
            out[p.relative_to(folder).as_posix()] = re.sub(r"生成于 [0-9: -]+", "生成于 …", text)
    return out


def test_started_ahead_renders_the_same_site_as_the_one_shot_build(built, tmp_path):
    from shequ.datadocs import results

    wh = built["warehouse"]
    ahead = subprocess.Popen([sys.executable, "-m", "shequ.datadocs", "--rows-on-stdin", "--out",
                              str(tmp_path / "ahead")], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    one_shot = subprocess.run([sys.executable, "-m", "shequ.datadocs", "--warehouse", str(wh), "--out",
                               str(tmp_path / "one_shot")], cwd=ROOT, capture_output=True, text=True)
    assert one_shot.returncode == 0, one_shot.stderr
    out, err = ahead.communicate(pickle.dumps(results(wh)), timeout=300)
    assert ahead.returncode == 0, err.decode()
    a, b = _site(tmp_path / "ahead"), _site(tmp_path / "one_shot")
    assert len(a) > 20 and "index.html" in a
    assert a.keys() == b.keys()
    assert [k for k in a if a[k] != b[k]] == []


def test_a_process_started_ahead_whose_step_never_runs_writes_nothing(tmp_path):
    from pipelines import publish

    wh = tmp_path / "warehouse.duckdb"
    docs = publish.data_docs_dir(wh)
    publish.start_data_docs(wh)
    proc = publish._STARTED[str(docs)]
    publish.start_data_docs(wh)                   # once per site: a second call keeps the waiting process
    assert publish._STARTED[str(docs)] is proc and proc.poll() is None
    time.sleep(1)
    publish.stop_data_docs()                       # the refresh ended before its data_docs step
    assert proc.poll() is not None and publish._STARTED == {}
    assert not docs.exists()
    # end of input without rows (the refresh process exited): the process ends cleanly, nothing written
    r = subprocess.run([sys.executable, "-m", "shequ.datadocs", "--rows-on-stdin", "--out", str(docs)],
                       cwd=ROOT, input=b"", capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode()
    assert not docs.exists()
