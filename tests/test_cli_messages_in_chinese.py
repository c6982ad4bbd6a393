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
