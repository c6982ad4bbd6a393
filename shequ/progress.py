"""Progress inside a quarter's refresh: which stage runs, which file is read (3/12). The stage functions in
shequ/pipeline.py and shequ/ingest.py emit events; `shequ refresh` listens and shows them (a live status line on
a terminal, one plain line per event when piped, so a log shows how far a run got). Without a listener an
event costs a function call.
"""

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass

STAGES = {
    "dimensions": "载入维表（期间、指标目录、社区登记表）",
    "staged": "读取文件",
    "facts": "生成事实表（含人工更正）",
    "aggregates": "汇总到街道、区、市",
    "quality": "数据质量规则、离群值、完整性",
    "checks": "质量检查套件",
    "rankings": "评分、排名、称号（含人工加分）",
}


@dataclass(frozen=True)
class Event:
    stage: str
    quarter: str | None = None
    done: int | None = None       # files: the one being read (1-based)
    total: int | None = None
    item: str | None = None       # file name, suite name

    def text(self) -> str:
        label = STAGES.get(self.stage, self.stage)
        count = f" {self.done}/{self.total}" if self.total else ""
        item = f"：{self.item}" if self.item else ""
        return f"{self.quarter + ' ' if self.quarter else ''}{label}{count}{item}"


_listeners: list[Callable[[Event], None]] = []


def emit(stage: str, quarter: str | None = None, done: int | None = None, total: int | None = None,
         item: str | None = None) -> None:
    if _listeners:
        ev = Event(stage, quarter, done, total, item)
        for fn in list(_listeners):
            fn(ev)


@contextlib.contextmanager
def listen(fn: Callable[[Event], None]) -> Iterator[None]:
    _listeners.append(fn)
    try:
        yield
    finally:
        _listeners.remove(fn)


def console_listener(console, status=None, tty: bool | None = None) -> Callable[[Event], None]:
    """On a terminal: update the rich status line. Piped: print each event on its own line (the same
    stage for consecutive suites is printed once)."""
    from rich.markup import escape

    tty = sys.stdout.isatty() if tty is None else tty
    last = {"key": None}

    def show(ev: Event) -> None:
        if tty and status is not None:
            status.update(escape(f"刷新 {ev.text()}…"))
            return
        key = (ev.stage, ev.quarter) if ev.stage == "checks" else None
        if key is not None and key == last["key"]:
            return
        last["key"] = key
        console.print(escape(f"  {ev.text()}"), soft_wrap=True)

    return show
