"""The CLI speaks Chinese, argparse's own messages included, and reports its version."""

import pytest

from shequ.cli import main


def test_version_is_printed(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip().startswith("shequ ")


def test_missing_required_argument_is_reported_in_chinese(capsys):
    with pytest.raises(SystemExit) as e:
        main(["publish"])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "用法：" in err and "错误：缺少必填参数：--quarter" in err
    assert "usage:" not in err and "required" not in err


def test_unknown_command_is_reported_in_chinese(capsys):
    with pytest.raises(SystemExit):
        main(["nosuch"])
    err = capsys.readouterr().err
    assert "无效的选择" in err and "invalid choice" not in err


def test_ctrl_c_exits_130_with_a_chinese_message(monkeypatch, capsys):
    import shequ.cli as cli

    def interrupted(args):
        raise KeyboardInterrupt
    monkeypatch.setattr(cli, "cmd_report", interrupted)
    assert cli.main(["report"]) == 130
    err = capsys.readouterr().err
    assert "已中断" in err and "Traceback" not in err


def test_piped_output_is_laid_out_wide_not_at_80_columns():
    import subprocess
    import sys
    import os
    env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
    out = subprocess.run([sys.executable, "-c", "from shequ.cli import console; print(console.width)"],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert int(out) >= 200


def test_reason_codes_are_shown_with_their_chinese_label():
    from shequ.cli import reason_labels, with_label
    assert with_label("no_values", {"no_values": "无数值"}) == "no_values（无数值）"
    assert with_label("unknown_code", {}) == "unknown_code"
    labels = reason_labels()
    assert all(isinstance(v, str) and v for v in labels.values())
