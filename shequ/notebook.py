"""`shequ notebook`: JupyterLab on the notebooks/ folder, bound to 127.0.0.1, reading the published snapshot.

The notebooks read ``shequ.snapshot.source_path()`` (the snapshot beside the warehouse named by
``SHEQU_WAREHOUSE``), so the command only passes the warehouse on through that variable and starts the
JupyterLab of the locked environment (``python -m jupyterlab``). JupyterLab runs in a process group of its own;
Ctrl+C, SIGTERM or SIGHUP of `shequ notebook` stops that whole group (JupyterLab shuts its kernels down on
SIGTERM), so no server is left behind when the command is stopped by a terminal, a service manager or a test.

``setup_display()`` is what each notebook calls first: plotly figures render both in JupyterLab (plotly's own
mime type, drawn by the jupyterlab-plotly extension) and in an HTML export (nbconvert keeps the ``text/html``
alternative, and the first call embeds plotly.js once, so the page works offline); polars tables show whole.
"""

import os
import signal
import socket
import subprocess
import sys

from . import config
from .snapshot import snapshot_path

PLOTLY_RENDERER = "plotly_mimetype+notebook"   # not notebook_connected: that one loads plotly.js from a CDN
TABLE_ROWS = 500                               # polars shows up to this many rows before eliding


def setup_display(max_rows: int = TABLE_ROWS) -> None:
    """Plotly renderer and table display for the notebooks; does nothing to plotly outside a kernel (setting the
    renderer there would print the whole plotly.js bundle)."""
    import polars as pl

    pl.Config.set_tbl_rows(max_rows)
    pl.Config.set_tbl_cols(-1)
    pl.Config.set_fmt_str_lengths(200)
    try:
        from IPython import get_ipython
    except ImportError:                         # pragma: no cover - IPython comes with ipykernel
        return
    shell = get_ipython()
    if shell is not None and getattr(shell, "kernel", None) is not None:
        import plotly.io as pio

        pio.renderers.default = PLOTLY_RENDERER


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Stop(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop_group(proc: subprocess.Popen, grace: float = 20.0) -> None:
    """SIGTERM to JupyterLab's process group (it stops its kernels and exits), SIGKILL after ``grace`` s."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
            break
        except subprocess.TimeoutExpired:
            continue
    try:                                        # anything the group left running (the leader has exited)
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def cmd_notebook(args) -> int:
    wh = config.warehouse_path(args.warehouse)
    snap = snapshot_path(wh)
    if not snap.exists() and not wh.exists():
        print(f"仓库与快照都不存在：{wh}（先运行 shequ refresh）", file=sys.stderr)
        return 1
    port = args.port or _free_port()
    env = dict(os.environ, SHEQU_WAREHOUSE=str(wh))
    print(f"JupyterLab：http://127.0.0.1:{port}/lab　笔记本目录 {config.ROOT / 'notebooks'}　"
          f"数据来源 {snap if snap.exists() else wh}（Ctrl+C 退出）", flush=True)
    cmd = [sys.executable, "-m", "jupyterlab", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
           "--ServerApp.port_retries=0", f"--ServerApp.root_dir={config.ROOT / 'notebooks'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:      # containers and CI run as root
        cmd.append("--allow-root")
    if args.no_browser:
        cmd.append("--no-browser")

    def on_signal(signum, frame):
        raise _Stop(signum)

    stops = [s for s in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)) if s is not None]
    previous = {s: signal.signal(s, on_signal) for s in stops}
    proc = None
    try:
        # its own session and process group: a terminal's Ctrl+C reaches us only, and we stop the whole group
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        return proc.wait()
    except (_Stop, KeyboardInterrupt) as e:
        print("正在关闭 JupyterLab……", file=sys.stderr, flush=True)
        if proc is not None:
            _stop_group(proc)
        return 0 if isinstance(e, KeyboardInterrupt) or e.signum == signal.SIGINT else 128 + e.signum
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        if proc is not None and proc.poll() is None:
            _stop_group(proc)


def register(sub) -> None:
    n = sub.add_parser("notebook", help="打开 JupyterLab（notebooks/ 目录，读取已发布的快照，只监听 127.0.0.1）")
    n.add_argument("--warehouse", help=f"DuckDB 仓库文件（默认 SHEQU_WAREHOUSE 或 {config.DEFAULT_WAREHOUSE}）")
    n.add_argument("--port", type=int, default=0, help="端口（默认：随机空闲端口）")
    n.add_argument("--no-browser", action="store_true", help="不自动打开浏览器")
    n.set_defaults(fn=cmd_notebook)
