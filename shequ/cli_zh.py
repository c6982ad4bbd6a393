"""Chinese messages for argparse.

argparse builds every user-facing string through the module-level gettext alias `_` (verified in
CPython 3.11 Lib/argparse.py: 'usage: ', 'error: ', 'the following arguments are required: %s', ...) and
looks it up at call time, so installing a translating `_` in the argparse module is the gettext hook the
stdlib offers; no .mo catalogue is shipped for argparse, so the table below is that catalogue.
"""

import argparse
from gettext import gettext as _untranslated

ZH = {
    "usage: ": "用法：",
    "positional arguments": "位置参数",
    "options": "选项",
    "show this help message and exit": "显示本帮助并退出",
    "show program's version number and exit": "显示版本号并退出",
    "%(prog)s: error: %(message)s\n": "%(prog)s：错误：%(message)s\n",
    "the following arguments are required: %s": "缺少必填参数：%s",
    "unrecognized arguments: %s": "无法识别的参数：%s",
    "argument %(argument_name)s: %(message)s": "参数 %(argument_name)s：%(message)s",
    "invalid choice: %(value)r (choose from %(choices)s)": "无效的选择：%(value)r（可选：%(choices)s）",
    "invalid %(type)s value: %(value)r": "无效的 %(type)s 值：%(value)r",
    "expected one argument": "需要一个值",
    "expected at most one argument": "最多需要一个值",
    "expected at least one argument": "至少需要一个值",
    "ambiguous option: %(option)s could match %(matches)s": "选项有歧义：%(option)s 可能是 %(matches)s",
    "not allowed with argument %s": "不能与参数 %s 同时使用",
    "one of the arguments %s is required": "参数 %s 必须提供其中之一",
    "unexpected option string: %s": "意外的选项：%s",
    "ignored explicit argument %r": "忽略了显式给出的值 %r",
    "unknown parser %(parser_name)r (choices: %(choices)s)": "未知的命令 %(parser_name)r（可选：%(choices)s）",
}


def translate(message: str) -> str:
    return ZH.get(message, _untranslated(message))


def install() -> None:
    argparse._ = translate
