import pytest

from shequ.text import DecodeError, clean_text, decode_bytes, mojibake_ratio, squash

CONTENT = "社区名称,参保率\n南湖社区,95%\n"


@pytest.mark.parametrize("data,enc", [
    (CONTENT.encode("gbk"), "gb18030"),
    (CONTENT.encode("utf-8"), "utf-8"),
    (CONTENT.encode("utf-8-sig"), "utf-8-sig"),
    (CONTENT.encode("utf-16"), "utf-16"),
    ("䶮㙟社区,1\n".encode("gb18030"), "gb18030"),
])
def test_decode_ladder(data, enc):
    text, got = decode_bytes(data)
    assert got == enc
    assert "社区" in text


def test_big5_traditional_is_read_and_simplified():
    text, enc = decode_bytes("社區名稱,參保率\n".encode("big5"))
    assert enc == "big5"
    assert clean_text(text.split(",")[0]) == "社区名称"


def test_undecodable_bytes_are_rejected():
    with pytest.raises(DecodeError):
        decode_bytes(b"\xff\xff\xff\x00\x81")


def test_script_normalisation():
    assert clean_text("社區(qū)居委會(huì)") == "社区居委会"
    assert clean_text("建鄴區濱湖街道") == "建邺区滨湖街道"
    assert clean_text("乾城社区") == "乾城社区"      # OpenCC alone gives 干城社区
    assert squash("南 湖 社 区") == "南湖社区"
    assert clean_text("（筹）") == "(筹)"


def test_mojibake_detected():
    assert mojibake_ratio("。ㄒ唬┣袑(shí)加强") > 0.1
    assert mojibake_ratio("建邺区南湖街道南湖社区") == 0


def test_registry_names_that_opencc_would_rewrite_are_protected():
    from shequ import text

    assert text.t2s("乾城社区") == "乾城社区"
    assert text.t2s("於家社区") == "于家社区"           # OpenCC rewrites the surname 於 ...
    added = text.protect_registry_names(["於家社区", "南湖社区"])
    assert added == {"於"}
    assert text.t2s("於家社区") == "於家社区"           # ... until a registry name written with it protects it
    assert text.clean_text("於家社區") == "於家社区"    # Traditional input still converts around it
