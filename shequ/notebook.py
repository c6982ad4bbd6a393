"""`shequ notebook`: JupyterLab on the notebooks/ folder, bound to 127.0.0.1, reading the published snapshot.

The notebooks read ``shequ.snapshot.source_path()`` (the snapshot beside the warehouse named by
``SHEQU_WAREHOUSE``), so the command only passes the warehouse on through that variable and starts the
JupyterLab of the locked environment (``python -m jupyterlab``) in the foreground; Ctrl+C stops it.
"""

import os
import socket
import subprocess
import sys

from . import config
from .snapshot import snapshot_path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
    try:
        return subprocess.call(cmd, env=env)
    except KeyboardInterrupt:
        return 0


def register(sub) -> None:
    n = sub.add_parser("notebook", help="打开 JupyterLab（notebooks/ 目录，读取已发布的快照，只监听 127.0.0.1）")
    n.add_argument("--warehouse", help=f"DuckDB 仓库文件（默认 SHEQU_WAREHOUSE 或 {config.DEFAULT_WAREHOUSE}）")
    n.add_argument("--port", type=int, default=0, help="端口（默认：随机空闲端口）")
    n.add_argument("--no-browser", action="store_true", help="不自动打开浏览器")
    n.set_defaults(fn=cmd_notebook)
