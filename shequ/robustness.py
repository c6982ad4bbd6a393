"""`shequ appraise ...`: the robustness analysis for the office that sets the weights (docs/robustness.md).

    shequ appraise optimise-weights --quarter 2024Q3 --target "社区服务:0.3,满意度:0.3,治安法治:0.4"
    shequ appraise sensitivity --quarter 2024Q3 [--n 200]

Both read the warehouse snapshot (as the report does); `sensitivity` writes analysis_sensitivity and so opens
the warehouse itself.
"""

import re
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import config

console = Console()


def parse_target(text: str) -> dict[str, float]:
    """"安居:0.3,治理:0.3" (also full-width ，/：) -> {"安居": 0.3, "治理": 0.3}."""
    out = {}
    for part in re.split(r"[,，;；]", text or ""):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"(.+?)\s*[:：=]\s*([0-9.]+%?)", part)
        if not m:
            raise ValueError(f"目标格式有误：{part!r}（应为 节点:份额，如 满意度:0.3）")
        v = float(m.group(2).rstrip("%")) / (100 if m.group(2).endswith("%") else 1)
        out[m.group(1).strip()] = v
    if len(out) < 2:
        raise ValueError("目标至少需要两个节点（如 满意度:0.5,社区服务:0.5）")
    return out


def _scheme_path(arg: str | None) -> Path:
    if not arg:
        return config.DEFAULT_SCHEME
    p = Path(arg)
    if p.exists():
        return p
    cand = config.SCHEMES_DIR / f"{arg}.yaml"
    if cand.exists():
        return cand
    raise ValueError(f"找不到评价方案：{arg}（可填文件路径或 models/schemes/ 下的方案 ID）")


def cmd_optimise(args) -> int:
    from .appraisal.analysis import optimise_weights
    from .appraisal.scheme import SchemeError
    from .appraisal.store import final_appraisal
    from .periods import normalise_quarter_arg, quarter_label
    from .scoring import load_scheme
    from .snapshot import read_only, source_path

    try:
        q = normalise_quarter_arg(args.quarter)
        scheme = load_scheme(_scheme_path(args.scheme))
        target = parse_target(args.target)
    except (ValueError, SchemeError) as e:
        console.print(f"[red]{e}[/red]")
        return 2
    src = source_path(args.warehouse)
    if not src.exists():
        console.print(f"[red]仓库不存在：{src}（先运行 shequ refresh）[/red]")
        return 2
    with read_only(src) as con:
        try:
            app, _ = final_appraisal(con, q, scheme)
            res = optimise_weights(app, target, tolerance=args.tolerance)
        except SchemeError as e:
            console.print(f"[red]{e}[/red]")
            return 2
    t = Table(title=f"{quarter_label(q)} 按目标重要性优化的权重（方案 {scheme.scheme_id} {scheme.version}）")
    for c in ("节点", "现行权重", "建议权重", "目标重要性", "达到的重要性"):
        t.add_column(c)
    for c in target:
        t.add_row(c, f"{scheme.nodes[c].weight:g}", f"{res.weights[c]:.2f}", f"{res.target[c]:.4f}",
                  f"{res.importance[c]:.4f}")
    console.print(t)
    console.print(res.message, markup=False)
    # one machine-readable line: the weights as the scheme's tree takes them (the listed nodes keep their total)
    print("weights: " + ", ".join(f"{c}={w:.2f}" for c, w in res.weights.items()))
    return 0 if res.ok else 1


def cmd_sensitivity(args) -> int:
    from .appraisal.store import sensitivity_period
    from .periods import normalise_quarter_arg, quarter_label
    from .scoring import load_scheme
    from .warehouse import connect, ensure_schema

    try:
        q = normalise_quarter_arg(args.quarter)
        scheme = load_scheme(_scheme_path(args.scheme))
    except ValueError as e:
        console.print(f"[red]{e}[/red]")
        return 2
    with connect(config.warehouse_path(args.warehouse)) as con:
        ensure_schema(con)
        info = sensitivity_period(con, q, scheme, n=args.n)
        rows = con.execute("""SELECT factor_label, round(si, 3), round(sti, 3), round(sti_low, 3), round(sti_high, 3)
                              FROM analysis_sensitivity WHERE period_key = ? AND scheme_id = ? AND target = 'rank_shift'
                              ORDER BY sti DESC""", [q, scheme.scheme_id]).fetchall()
    t = Table(title=f"{quarter_label(q)} 各假设对排名的影响（{info['runs']} 次重算，{info['seconds']} 秒）")
    for c in ("假设", "一阶指数", "总效应指数", "总效应 5%", "总效应 95%"):
        t.add_column(c)
    for r in rows:
        t.add_row(*[str(x) for x in r])
    console.print(t)
    return 0


def register(sub) -> None:
    p = sub.add_parser("appraise", help="评比方法分析：按目标重要性优化权重、敏感性分析（docs/robustness.md）")
    asub = p.add_subparsers(dest="appraise_cmd", required=True)
    o = asub.add_parser("optimise-weights", help="求一组权重，使各节点对总分的重要性（与总分相关系数的平方，归一）接近目标")
    o.add_argument("--quarter", required=True, help="季度：2024Q3 或 2024年第三季度")
    o.add_argument("--target", required=True, help="目标重要性，如 \"社区服务:0.3,满意度:0.3,治安法治:0.4\"（自动归一）")
    o.add_argument("--tolerance", type=float, default=0.02, help="容差：每个节点的重要性与目标之差的上限（默认 0.02）")
    o.add_argument("--scheme", help=f"评价方案文件或 ID（默认 {config.DEFAULT_SCHEME}）")
    o.add_argument("--warehouse", help="DuckDB 仓库文件（读取其快照）")
    o.set_defaults(fn=cmd_optimise)
    s = asub.add_parser("sensitivity", help="敏感性分析：各不确定假设对社区排名的 Sobol 一阶与总效应指数，写入仓库")
    s.add_argument("--quarter", required=True, help="季度：2024Q3 或 2024年第三季度")
    s.add_argument("--n", type=int, help="基础样本量 N（共重算 N×(假设数+2) 次；默认方案 uncertainty.sensitivity_n 或 100）")
    s.add_argument("--scheme", help=f"评价方案文件或 ID（默认 {config.DEFAULT_SCHEME}）")
    s.add_argument("--warehouse", help="DuckDB 仓库文件")
    s.set_defaults(fn=cmd_sensitivity)
