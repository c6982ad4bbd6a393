"""`shequ` command line: refresh, publish, sample, export, report, ui, bench.

`shequ refresh` executes the Dagster job `quarterly_refresh` in-process (the same assets and checks the UI
runs), one quarter partition at a time, then prints a summary read back from the warehouse.
"""

import argparse
import json
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import config
from .periods import normalise_quarter_arg, quarter_label, quarters_between

# Piped or redirected output (no TTY, no COLUMNS) would otherwise be laid out for 80 columns and tables would
# cut their cells with "…"; lay it out wide instead so nothing is lost in a log file or a pipe.
console = Console(width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 240)
# Dagster's per-event DEBUG stream would bury the summary; warnings and errors still print (and the full event
# log is in the Dagster instance when DAGSTER_HOME is set)
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def _quarters_arg(text: str) -> list[str]:
    """2024Q3 | 2024年第三季度 | 2023Q1:2024Q4"""
    if ":" in text:
        a, b = text.split(":", 1)
        return quarters_between(normalise_quarter_arg(a), normalise_quarter_arg(b))
    return [normalise_quarter_arg(text)]


# ------------------------------------------------------------------ refresh
def cmd_refresh(args) -> int:
    warnings.filterwarnings("ignore", module="dagster")
    import dagster as dg

    from pipelines.definitions import defs
    from pipelines.resources import ShequWarehouse

    from .periods import quarter_to_partition
    from .pipeline import scan_inbox
    from .refresh_outcome import quarter_problems, quarters_without_files
    from .service import refresh_instance
    from .warehouse import connect

    wh = config.warehouse_path(args.warehouse)
    inbox = config.inbox_path(args.inbox)
    in_objects = config.is_object_inbox(inbox)
    if in_objects:      # s3://bucket/prefix (shequ/object_inbox.py): listed first, before anything is written
        from rich.markup import escape

        from .object_inbox import ObjectStoreError
        try:
            inbox_files = scan_inbox(None, inbox)
        except ObjectStoreError as e:
            console.print(f"[red]{escape(str(e))}[/red]")
            return 1
    elif not inbox.is_dir():
        console.print(f"[red]收件箱不存在：{inbox}[/red]")
        return 2
    else:
        inbox_files = scan_inbox(None, inbox)
    files_by_quarter: dict[str, list[str]] = {}
    for f in inbox_files:
        for fq in f.quarters:
            files_by_quarter.setdefault(fq, []).append(f.file_id)
    try:
        quarters = _quarters_arg(args.quarter) if args.quarter else sorted(files_by_quarter)
    except ValueError as e:
        console.print(f"[red]{e}[/red]")
        return 2
    if not quarters:
        console.print(f"[red]收件箱 {inbox} 中没有可识别季度的文件：没有可刷新的季度[/red]")
        return 1
    # a requested quarter with no file (in the inbox, or loaded from an earlier one) is an error, not an empty run
    if wh.exists():   # another refresh writing the file is waited for as long as a writer waits
        with connect(wh, read_only=True, retries=config.lock_wait_seconds()) as con:
            missing = quarters_without_files(con, quarters, set(files_by_quarter))
    else:
        missing = quarters_without_files(None, quarters, set(files_by_quarter))
    for q in missing:
        console.print(f"[red]{q}（{quarter_label(q)}）没有文件：收件箱 {inbox} 中没有该季度的文件，仓库中也没有"
                      f"已入库的该季度文件[/red]")
    quarters = [q for q in quarters if q not in missing]
    if not quarters:
        return 1
    started = time.time()
    console.print(f"仓库 [bold]{wh}[/bold]　收件箱 [bold]{inbox}[/bold]　季度 {', '.join(quarters)}")
    job = defs.resolve_job_def("quarterly_refresh")
    instance, where = refresh_instance()
    console.print(where)
    resource = ShequWarehouse(path=str(wh), inbox=str(inbox))
    # Data Docs (an asset that renders every quarter in one GX subprocess) once, with the last quarter
    blocking_failed, run_failed = [], []
    check_rows = []
    from pipelines.publish import start_data_docs, stop_data_docs

    from . import progress  # stages and files inside each quarter (shequ/progress.py)
    if not os.environ.get("SHEQU_NO_DATADOCS"):
        start_data_docs(wh)   # imports GX on the other core now; renders when the last quarter's data_docs runs
    from rich.markup import escape

    def run(qs: list[str], docs: bool):
        """One Dagster run of the job over the contiguous quarters ``qs`` (a single partition or a range)."""
        tags = {"shequ/quarter": qs[0] if len(qs) == 1 else f"{qs[0]}:{qs[-1]}",
                **({} if docs else {"shequ/datadocs": "skip"})}
        if len(qs) == 1:
            kw = {"partition_key": quarter_to_partition(qs[0])}
        else:
            tags |= {"dagster/asset_partition_range_start": quarter_to_partition(qs[0]),
                     "dagster/asset_partition_range_end": quarter_to_partition(qs[-1])}
            kw = {}
        return job.execute_in_process(instance=instance, resources={"warehouse": resource}, raise_on_error=False,
                                      tags=tags, run_config=QUIET, **kw)

    def outcome(result):
        """(failure message or None, [(asset, check, passed, severity)], [blocking check names])"""
        msg = None
        if not result.success:
            failure = result.get_run_failure_event()
            steps = [e for e in result.all_events if e.is_step_failure]
            if steps:
                err = steps[0].step_failure_data.error
                while err.cause is not None:  # Dagster wraps the real error; show the root cause
                    err = err.cause
                msg = f"{steps[0].step_key}：{err.message.strip()}"
            else:
                msg = failure.message if failure else "未知错误"
        checks, blocking = [], []
        for ev in result.get_asset_check_evaluations():
            sev = ev.severity.value if ev.severity else "ERROR"
            checks.append((ev.asset_check_key.asset_key.to_user_string(), ev.check_name, ev.passed, sev))
            if not ev.passed and sev == "ERROR":
                blocking.append(ev.check_name)
        return msg, checks, blocking

    # Consecutive quarters are refreshed in one Dagster run over the partition range (the assets loop over the
    # run's quarters in order; one derived-table transaction for all of them): a cold refresh of the sample's 8
    # quarters then pays the run's start-up, connections, schema check and dimension load once instead of 8
    # times. Every table ends as quarter-by-quarter runs leave it (tests/test_refresh_in_one_run_matches_per_
    # quarter.py). A range run that fails or is blocked up to fact_ranking changed no derived table (one
    # transaction, committed when fact_ranking ends); whatever failed, its quarters are then refreshed one run
    # each, as before (a later failure, e.g. in a report, costs a second pass but ends in the same tables).
    groups: list[list[str]] = []
    for q in quarters:
        if groups and quarters_between(groups[-1][-1], q)[1:] == [q]:
            groups[-1].append(q)
        else:
            groups.append([q])
    with console.status("刷新中…") as status, progress.listen(progress.console_listener(console, status)):
        try:
            for gi, group in enumerate(groups):
                last_group = gi == len(groups) - 1
                if len(group) > 1:
                    status.update(f"刷新 {quarter_label(group[0])}至{quarter_label(group[-1])}"
                                  f"（{len(group)} 个季度，一次运行）…")
                    msg, checks, blocking = outcome(run(group, docs=last_group))
                    if msg is None and not blocking:
                        # one evaluation per check covers the whole range (its metadata lists each quarter)
                        check_rows.extend((f"{group[0]}:{group[-1]}", *c) for c in checks)
                        for q in group:
                            console.print(f"  {q} [green]完成[/green]")
                        continue
                    console.print(f"  {group[0]}–{group[-1]} 一次运行未完成（"
                                  f"{escape(msg) if msg else '阻断性检查未通过：' + '、'.join(blocking)}），"
                                  f"改为逐季度刷新，每个季度单独全有或全无")
                for q in group:
                    status.update(f"刷新 {quarter_label(q)}（{q}）…")
                    msg, checks, blocking = outcome(run([q], docs=last_group and q == group[-1]))
                    if msg is not None:
                        run_failed.append((q, msg))
                    check_rows.extend((q, *c) for c in checks)
                    blocking_failed.extend((q, b) for b in blocking)
                    console.print(f"  {q} {'[green]完成[/green]' if msg is None else '[red]失败[/red]'}")
        finally:
            stop_data_docs()   # a started Data Docs process whose step did not run
    with connect(wh, read_only=True) as con:
        _print_summary(con, quarters, check_rows)
        _print_quality(con, quarters)
        from .suggest import print_refresh_hints
        print_refresh_hints(console, con, quarters)  # corrections in force, candidates for unknown names
        if in_objects:  # an object's file id (the hash of its bytes) is known once the refresh has read it
            from .object_inbox import file_ids_by_quarter
            files_by_quarter = file_ids_by_quarter(con, inbox_files)
        problems = quarter_problems(con, quarters, files_by_quarter)
    from pipelines.publish import data_docs_dir

    docs = data_docs_dir(wh) / "index.html"
    if docs.exists() and docs.stat().st_mtime >= started:
        console.print(f"数据质量文档（离线可用，asset data_docs）：[bold]{docs}[/bold]")
    from .report import report_path

    reports = [report_path(q, wh) for q in quarters          # written by this refresh, not left from an earlier one
               if report_path(q, wh).exists() and report_path(q, wh).stat().st_mtime >= started]
    if reports:
        console.print(f"季度报告（离线可用，asset quarterly_report）：{len(reports)} 个，最新 [bold]{reports[-1]}[/bold]")
    for q, msg in run_failed:
        console.print(f"{q} 运行失败：{msg}", style="red", markup=False)   # msg may quote file text
    if blocking_failed:
        console.print(f"[red]阻断性检查未通过：{blocking_failed}[/red]")
        # what failed and where: the suites' examples name the file and cell behind each row (expectations/*.json)
        with connect(wh, read_only=True) as con:
            for q, suite, exp, detail in con.execute(
                    """SELECT period_key, suite, expectation, detail FROM check_result
                       WHERE NOT success AND severity = 'critical' AND period_key IN (SELECT unnest(?::VARCHAR[]))
                       ORDER BY 1, 2, 3""", [quarters]).fetchall():
                console.print(f"  {q} {suite} {exp}：{(detail or '')[:400]}", style="red", markup=False)
    for p in problems:
        console.print(p, style="red", markup=False)
    from .lake import after_refresh  # SHEQU_BACKEND=lake: publish the quarters to the lake; embedded: nothing
    lake_problems = after_refresh(wh, quarters, {q for q, _ in run_failed} | {q for q, _ in blocking_failed})
    for p in lake_problems:
        console.print(p, style="red", markup=False)
    return 1 if (blocking_failed or run_failed or problems or missing or lake_problems) else 0


def _print_quality(con, quarters: list[str]) -> None:
    """Quality stage: violations by importance, held values, open outlier flags, reporting and on-time rates."""
    qs = list(quarters)
    v = dict(con.execute("""SELECT importance, count(*) FROM validation_violation
                            WHERE period_key IN (SELECT unnest(?::VARCHAR[])) GROUP BY 1""", [qs]).fetchall())
    held = con.execute("SELECT count(*) FROM quality_hold WHERE period_key IN (SELECT unnest(?::VARCHAR[]))",
                       [qs]).fetchall()[0][0]
    flags = con.execute("""SELECT count(*) FROM outlier_flag WHERE followup_status = 'open'
                           AND period_key IN (SELECT unnest(?::VARCHAR[]))""", [qs]).fetchall()[0][0]
    rate = con.execute("""SELECT sum(received) / sum(expected), sum(on_time) / sum(expected) FROM completeness_report
                          WHERE level = 'city' AND period_key = ?""", [qs[-1]]).fetchall()[0]
    console.print(f"数据质量：校验规则违规 HIGH {v.get('HIGH', 0)} / MEDIUM {v.get('MEDIUM', 0)} / LOW {v.get('LOW', 0)}；"
                  f"暂停参与评分的数值 {held} 个（quality_hold）；待随访离群值 {flags} 个（outlier_flag）；"
                  f"{qs[-1]} 上报率 {rate[0] or 0:.1%}，及时率 {rate[1] or 0:.1%}（completeness_report）")


def reason_labels() -> dict[str, str]:
    """code -> Chinese label from models/catalogue/reason_codes.csv (the one list of reason codes); empty if absent."""
    import csv
    path = config.MODELS / "catalogue" / "reason_codes.csv"
    if not path.exists():
        return {}
    with open(path, encoding="utf-8", newline="") as fh:
        return {r["code"]: r["label_zh"] for r in csv.DictReader(fh) if r.get("code") and r.get("label_zh")}


def with_label(code: str, labels: dict[str, str]) -> str:
    """`no_values` -> `no_values（无数值）`: the code stays greppable, the label is what a person reads."""
    return f"{code}（{labels[code]}）" if code in labels else code


def _print_summary(con, quarters: list[str], check_rows: list) -> None:
    from rich.markup import escape
    labels = reason_labels()
    qs = list(quarters)
    files = con.execute("""
        SELECT f.source_file, f.status, f.n_loaded, f.n_quarantined, coalesce(f.message, ''),
               (SELECT list(struct_pack(code := reason_code, n := n) ORDER BY n DESC) FROM
                   (SELECT reason_code, count(*) AS n FROM quarantine q WHERE q.file_id = f.file_id GROUP BY 1))
        FROM raw_file f
        WHERE list_has_any(f.period_keys, ?::VARCHAR[]) OR f.status = 'rejected' ORDER BY f.ingest_seq""",
                        [qs]).fetchall()
    t = Table(title="文件", show_lines=False)
    for c in ("文件", "状态", "入库值", "隔离值", "隔离原因", "说明"):
        t.add_column(c)
    for f, s, n, qn, m, why in files:
        why = "，".join(f"{with_label(w['code'], labels)} {w['n']}" for w in why or [])
        # file names and messages come from the files: escaped so they are never read as rich markup
        t.add_row(escape(f), "[green]已入库[/green]" if s == "loaded" else "[red]被拒[/red]", str(n), str(qn),
                  escape(why), escape(m))
    console.print(t)
    loaded = con.execute("SELECT count(*) FROM fact_indicator_value WHERE period_key IN (SELECT unnest(?::VARCHAR[]))",
                         [qs]).fetchall()[0][0]
    reasons = con.execute("""SELECT q.reason_code, count(*) FROM quarantine q JOIN raw_file f USING (file_id)
                             WHERE list_has_any(f.period_keys, ?::VARCHAR[]) OR f.status = 'rejected'
                             GROUP BY 1 ORDER BY 2 DESC""", [qs]).fetchall()
    console.print(f"读取文件 {len(files)} 个；事实表数值 {loaded} 个；隔离 {sum(n for _, n in reasons)} 个"
                  + ("（" + "，".join(f"{with_label(r, labels)} {n}" for r, n in reasons) + "）" if reasons else ""))
    passed = sum(1 for *_, p, _ in check_rows if p)
    failed = [(q, a, c, s) for q, a, c, p, s in check_rows if not p]
    console.print(f"检查 {len(check_rows)} 项：通过 {passed}，未通过 {len(failed)}"
                  + ("" if not failed else "：" + "；".join(f"{q} {c}（{s}）" for q, a, c, s in failed[:8])))
    last = qs[-1]
    top = con.execute("""
        SELECT scope_name, entity_name, printf('%.2f', score_rounded), rank, grade, coalesce(vetoes, '') FROM fact_ranking
        WHERE period_key = ? AND entity_level = 'community' AND scope_level = 'city' AND rank <= 3
        ORDER BY scope_name, rank, entity_name""", [last]).fetchall()
    t = Table(title=f"{quarter_label(last)} 各市前三名社区")
    for c in ("市", "社区", "得分", "名次", "等次", "一票否决"):
        t.add_column(c)
    for r in top:
        t.add_row(*[escape(str(x)) for x in r])
    console.print(t)
    _print_vetoes(con, last, {r[1] for r in top})
    titles = con.execute("""SELECT campaign, tier, count(*), count(*) FILTER (WHERE tie_flag) FROM fact_award
                            WHERE period_key = ? GROUP BY 1, 2 ORDER BY 1, 2""", [last]).fetchall()
    if titles:
        console.print(f"{quarter_label(last)} 称号：" + "；".join(
            f"{t}{c} {n} 个" + (f"（其中 {k} 个统计上并列）" if k else "") for c, t, n, k in titles))
    from .appraisal.store import publication_status

    for q in qs:
        for (sid,) in con.execute("SELECT DISTINCT scheme_id FROM fact_ranking WHERE period_key = ?", [q]).fetchall():
            st = publication_status(con, q, sid)
            if st and not st["matches_live"]:
                console.print(f"[yellow]{q} 已公示版本 {st['version_id']} 与本次结果不同：公示版本保持不变；"
                              f"如需更正请运行 shequ publish --quarter {q} 生成新版本（附差异清单）[/yellow]")


def _print_vetoes(con, quarter: str, shown: set[str]) -> None:
    """一票否决 in the summary: how many communities were hit, the rule in plain Chinese, and the explanation of
    each vetoed community that ranks first in its district or appears in the table above (soft-wrapped, so a
    sentence is never cut when piped)."""
    from rich.markup import escape

    from . import vetoes

    for (sid,) in con.execute("SELECT DISTINCT scheme_id FROM fact_ranking WHERE period_key = ? ORDER BY 1",
                              [quarter]).fetchall():
        v = vetoes.explanations(con, quarter, sid)
        if not v.height:
            continue
        sdef = vetoes.scheme_for(sid)
        console.print(f"{quarter_label(quarter)} 一票否决：{v.height} 个社区触及。"
                      + escape(vetoes.grades_text(sdef) + vetoes.rules_text(sdef)), soft_wrap=True)
        for r in v.filter((v["rank"] == 1) | v["name"].is_in(list(shown))).iter_rows(named=True):
            rank = f"区内第 {r['rank']} 名" if r["rank"] is not None else "未参评"
            console.print(escape(f"  {r['district']} {r['name']}（{rank}，等次 {r['grade'] or '—'}）："
                                 f"{r['detail'] or r['vetoes']}"), soft_wrap=True)


# ------------------------------------------------------------------ publish
def cmd_publish(args) -> int:
    from .appraisal.store import publish
    from .scoring import load_scheme
    from .warehouse import connect, ensure_schema

    wh = config.warehouse_path(args.warehouse)
    try:
        q = normalise_quarter_arg(args.quarter)
        scheme = load_scheme(args.scheme) if args.scheme else load_scheme()
    except ValueError as e:
        console.print(f"[red]{e}[/red]")
        return 2
    with connect(wh) as con:
        ensure_schema(con)
        try:
            res = publish(con, q, scheme, by=args.by or os.environ.get("USER"), note=args.note)
        except ValueError as e:
            console.print(f"[red]{e}[/red]")
            return 1
        if not res["new"]:
            console.print(f"{quarter_label(q)} 的结果与已公示版本 {res['version_id']} 相同，未生成新版本")
            return 0
        console.print(f"已发布 {quarter_label(q)}：版本 [bold]{res['version_id']}[/bold]"
                      + (f"（替代 {res['supersedes']}，变化 {res['changes']} 处）" if res.get("supersedes") else ""))
        if res.get("supersedes"):
            rows = con.execute("""SELECT change, entity_name, coalesce(scope_level, ''), coalesce(item, ''),
                                         coalesce(old_value, '—'), coalesce(new_value, '—')
                                  FROM publication_diff WHERE version_id = ? ORDER BY change, entity_code LIMIT 40""",
                               [res["version_id"]]).fetchall()
            t = Table(title="与上一公示版本的差异（前 40 条）")
            for c in ("变化", "对象", "范围", "称号", "原", "新"):
                t.add_column(c)
            for r in rows:
                t.add_row(*[str(x) for x in r])
            console.print(t)
    return 0


# ------------------------------------------------------------------ sample
def cmd_sample(args) -> int:
    from .sample import SAMPLE_QUARTERS, write_sample_inbox, write_synthetic_set

    quarters = _quarters_arg(args.quarters) if args.quarters else None
    if args.communities:
        out = Path(args.out) if args.out else config.DATA_DIR / "bench" / str(args.communities)
        info = write_synthetic_set(out, args.communities, quarters or ["2024Q3"])
        console.print(f"合成数据集已写入 {out}：{info}")
        console.print(f"运行：shequ refresh --inbox {out / 'inbox'} 需配合其登记表，请用 shequ bench")
        return 0
    out = Path(args.out) if args.out else config.DEFAULT_INBOX
    paths = write_sample_inbox(out, quarters or SAMPLE_QUARTERS)
    console.print(f"样例收件箱已写入 {out}：{len(paths)} 个文件")
    if not args.out:
        from .sample import write_sample_reviews

        console.print(f"样例评审核定文件已写入 {write_sample_reviews(config.DEFAULT_REVIEWS)}")
    return 0


# ------------------------------------------------------------------ export
def cmd_export(args) -> int:
    from .exports import write_sdmx_csv
    from .snapshot import read_only, source_path

    try:
        quarters = _quarters_arg(args.quarter) if args.quarter else None
    except ValueError as e:
        console.print(f"[red]{e}[/red]")
        return 2
    src = source_path(args.warehouse)
    if args.format == "gongshi":
        return _export_gongshi(args, quarters, src)
    if not src.exists():
        console.print(f"[red]仓库不存在：{src}（先运行 shequ refresh）[/red]")
        return 2
    name = f"sdmx_{quarters[0]}" if quarters and len(quarters) == 1 else \
        f"sdmx_{quarters[0]}_{quarters[-1]}" if quarters else "sdmx_all"
    out = Path(args.out) if args.out else config.DATA_DIR / "exports" / f"{name}.csv"
    with read_only(src) as con:
        info = write_sdmx_csv(con, out, quarters)
    if not info["rows"]:
        console.print(f"[yellow]没有数据：{', '.join(quarters or [])}（已写出仅含表头的文件 {out}）[/yellow]")
        return 1
    console.print(f"SDMX-CSV 2.0 已写出 [bold]{out}[/bold]：{info['rows']} 行，季度 {', '.join(info['periods'])}，"
                  f"OBS_STATUS {info['obs_status']}（读取 {src}）")
    return 0


def _export_gongshi(args, quarters: list[str] | None, src: Path) -> int:
    from .exports import write_gongshi_xlsx
    from .snapshot import read_only

    if not quarters or len(quarters) != 1:
        console.print("[red]公示表需要一个季度：--quarter 2024Q3[/red]")
        return 2
    if not src.exists():
        console.print(f"[red]仓库不存在：{src}（先运行 shequ refresh）[/red]")
        return 2
    q = quarters[0]
    out = Path(args.out) if args.out else config.DATA_DIR / "exports" / f"gongshi_{q}.xlsx"
    with read_only(src) as con:
        n = con.execute("""SELECT count(*) FROM fact_ranking WHERE period_key = ? AND scheme_id = ?
                           AND entity_level = 'community'""", [q, args.scheme]).fetchall()[0][0]
        if not n:
            console.print(f"[yellow]{q} 没有 {args.scheme} 方案的评比结果，未写出公示表[/yellow]")
            return 1
        info = write_gongshi_xlsx(con, out, q, args.scheme, notice=getattr(args, "notice", None))
    console.print(f"{quarter_label(q)} 公示表已写出 [bold]{out}[/bold]：称号 {info['titles']} 个，社区 "
                  f"{info['communities']} 个，" + (f"公示版本 {info['version_id']}" if info["version_id"]
                                                 else "未发布（预览）") + f"（读取 {src}）")
    start, end = info["period"]
    console.print(f"公示期 {start:%Y-%m-%d} 至 {end:%Y-%m-%d}；一票否决说明 {info['vetoed']} 个社区")
    if info["unfilled"]:
        console.print(f"[yellow]公示信息尚未填写：{'、'.join(info['unfilled'])}（表中标黄）。请在 {info['notice']} "
                      "填写后重新导出，再打印张贴。[/yellow]")
    return 0


# ------------------------------------------------------------------ report
def cmd_report(args) -> int:
    from .report import NoDataError, write_report
    from .snapshot import read_only, source_path

    src = source_path(args.warehouse)
    try:
        quarter = normalise_quarter_arg(args.quarter) if args.quarter else None
    except ValueError as e:
        console.print(f"[red]{e}[/red]")
        return 2
    if not src.exists():
        console.print(f"[red]仓库不存在：{src}（先运行 shequ refresh）[/red]")
        return 2
    with read_only(src) as con:
        if quarter is None:
            quarter = con.execute("SELECT max(period_key) FROM fact_ranking WHERE scheme_id = ?",
                                  [args.scheme]).fetchall()[0][0]
            if quarter is None:
                console.print(f"[yellow]仓库中没有 {args.scheme} 方案的评比结果：{src}[/yellow]")
                return 1
        try:
            info = write_report(quarter, out=args.out, warehouse=args.warehouse, scheme=args.scheme, con=con)
        except NoDataError as e:
            console.print(f"[yellow]{e}[/yellow]")
            return 1
    console.print(f"{quarter_label(quarter)} 报告已写出 [bold]{info['path']}[/bold]：{info['bytes'] / 1e6:.1f} MB，"
                  f"{info['seconds']} 秒；参评社区 {info['ranked']}，称号 {info['titles']} 个，"
                  f"检查通过 {info['checks_passed']}/{info['checks_total']}，"
                  + (f"已公示版本 {info['published']}" if info["published"] else "未发布（预览）")
                  + f"（读取 {src}）")
    return 0


# ------------------------------------------------------------------ ui
def cmd_ui(args) -> int:
    cmd = [sys.executable, "-m", "dagster", "dev", "-h", args.host, "-p", str(args.port)]
    console.print(f"启动 Dagster 界面：http://{args.host}:{args.port}（Ctrl+C 退出）")
    return subprocess.call(cmd, cwd=config.ROOT)


# ------------------------------------------------------------------ bench
def cmd_bench(args) -> int:
    from .bench import run_appraisal_bench, run_bench

    if args.rerun:
        from .rerun_bench import run_rerun_bench

        res = run_rerun_bench(args.communities, args.history, out=Path(args.out) if args.out else None,
                              console=console, keep=args.keep)
        if args.json:
            Path(args.json).write_text(json.dumps(res, ensure_ascii=False, indent=2), encoding="utf-8")
        return 0
    if args.appraisal:
        run_appraisal_bench(args.communities, args.draws, Path(args.out) if args.out else None, console)
        return 0

    return run_bench(args.communities, args.quarters, Path(args.out) if args.out else None, console,
                     keep=args.keep, draws=args.draws, json_path=Path(args.json) if args.json else None)


def _main(argv: list[str] | None = None) -> int:
    from importlib.metadata import version as _dist_version

    from .cli_zh import install as _zh_argparse
    _zh_argparse()
    p = argparse.ArgumentParser(prog="shequ", description="社区建设指标仓库")
    p.add_argument("--version", action="version", version=f"shequ {_dist_version('shequ')}",
                   help="显示版本号并退出")
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("refresh", help="读取收件箱，建仓、校验、排名并打印摘要")
    r.add_argument("--quarter", help="季度：2024Q3、2024年第三季度或区间 2023Q1:2024Q4（默认：收件箱中出现的全部季度）")
    r.add_argument("--inbox", help=f"收件箱目录，或对象存储前缀 s3://桶/前缀（默认 SHEQU_INBOX 或 {config.DEFAULT_INBOX}）")
    r.add_argument("--warehouse", help=f"DuckDB 仓库文件（默认 SHEQU_WAREHOUSE 或 {config.DEFAULT_WAREHOUSE}）")
    r.set_defaults(fn=cmd_refresh)
    pb = sub.add_parser("publish", help="公示：冻结某季度的排名与称号为新版本，并列出与上一版本的差异")
    pb.add_argument("--quarter", required=True, help="季度：2024Q3 或 2024年第三季度")
    pb.add_argument("--scheme", help=f"评价方案文件（默认 {config.DEFAULT_SCHEME}）")
    pb.add_argument("--note", help="发布说明（如：更正某社区满意度后重新公示）")
    pb.add_argument("--by", help="发布人")
    pb.add_argument("--warehouse", help="DuckDB 仓库文件")
    pb.set_defaults(fn=cmd_publish)
    s = sub.add_parser("sample", help="生成样例收件箱，或 --communities N 生成全国规模合成数据")
    s.add_argument("--out", help="输出目录")
    s.add_argument("--quarters", help="季度或区间，如 2023Q1:2024Q4")
    s.add_argument("--communities", type=int, help="合成数据的社区数（最多 600000）")
    s.set_defaults(fn=cmd_sample)
    e = sub.add_parser("export", help="导出：sdmx = 事实与汇总值的 SDMX-CSV 2.0 文件（向上报送）；"
                                      "gongshi = 可打印的评比结果公示表（xlsx）")
    e.add_argument("format", choices=["sdmx", "gongshi"], help="导出格式")
    e.add_argument("--quarter", help="季度或区间，如 2024Q3、2023Q1:2024Q4（sdmx 默认：全部季度；gongshi 必填，单个季度）")
    e.add_argument("--out", help="输出文件（默认 data/exports/sdmx_<季度>.csv 或 data/exports/gongshi_<季度>.xlsx）")
    e.add_argument("--scheme", default="default", help="评价方案 ID（gongshi；默认 default）")
    e.add_argument("--notice", help="公示信息文件：公示期、异议受理、发布单位（gongshi；默认 models/publish/gongshi.yaml）")
    e.add_argument("--warehouse", help=f"DuckDB 仓库文件（默认 SHEQU_WAREHOUSE 或 {config.DEFAULT_WAREHOUSE}；读取其快照）")
    e.set_defaults(fn=cmd_export)
    rp = sub.add_parser("report", help="季度评比报告：一个离线可用的 HTML 文件（图表脚本内嵌）")
    rp.add_argument("--quarter", help="季度：2024Q3 或 2024年第三季度（默认：仓库中最新的季度）")
    rp.add_argument("--out", help="输出文件（默认 data/reports/report_<季度>.html）")
    rp.add_argument("--warehouse", help=f"DuckDB 仓库文件（默认 SHEQU_WAREHOUSE 或 {config.DEFAULT_WAREHOUSE}；读取其快照）")
    rp.add_argument("--scheme", default="default", help="评价方案 ID（默认 default）")
    rp.set_defaults(fn=cmd_report)
    u = sub.add_parser("ui", help="启动 Dagster 界面（dagster dev）")
    u.add_argument("--host", default="127.0.0.1")
    u.add_argument("--port", type=int, default=3000)
    u.set_defaults(fn=cmd_ui)
    b = sub.add_parser("bench", help="按阶段计时：每秒数值数与峰值内存")
    b.add_argument("--communities", type=int, default=10_000)
    b.add_argument("--quarters", type=int, default=1)
    b.add_argument("--out", help="合成数据与临时仓库目录（默认 data/bench/N）")
    b.add_argument("--keep", action="store_true", help="保留临时仓库文件")
    b.add_argument("--appraisal", action="store_true",
                   help="只测评比引擎：计分、三级排名、称号与解释写入，以及蒙特卡洛（--draws）")
    b.add_argument("--rerun", action="store_true",
                   help="只测事实表重跑一个季度：有 --history 个季度历史与只有该季度的两个仓库交替比较")
    b.add_argument("--history", type=int, default=40, help="--rerun 时已装入的历史季度数（默认 40）")
    b.add_argument("--draws", type=int, default=200, help="蒙特卡洛抽样次数（默认 200）")
    b.add_argument("--json", help="把结果（各阶段秒数、数值/秒、峰值内存、写入行数、与裸 DuckDB 基准之比）另存为 JSON 文件")
    b.set_defaults(fn=cmd_bench)
    from . import migrate
    migrate.register(sub)  # shequ migrate (shequ/migrate.py)
    from . import backup
    backup.register(sub)  # shequ backup / restore (shequ/backup.py)
    from . import serve
    serve.register(sub)  # shequ serve start|stop|status|logs (shequ/serve.py)
    from . import lake
    lake.register(sub)  # shequ lake import|publish|status (shequ/lake.py)
    from . import robustness
    robustness.register(sub)  # shequ appraise optimise-weights|sensitivity (shequ/robustness.py)
    from . import fuzz
    fuzz.register(sub)  # shequ fuzz (shequ/fuzz.py)
    from .notebook import register as register_notebook

    register_notebook(sub)
    from . import corrections, registry_edit
    corrections.register(sub)    # shequ correct / bonus (shequ/corrections.py)
    registry_edit.register(sub)  # shequ registry / alias (shequ/registry_edit.py)
    args = p.parse_args(argv)
    if getattr(args, "communities", None) and args.communities > 600_000:
        p.error("--communities 最多 600000")
    return args.fn(args)


def main(argv: list[str] | None = None) -> int:
    """Entry point: Ctrl+C stops with a Chinese message and exit code 130, without a traceback."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("\n已中断（Ctrl+C），运行已停止。", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
