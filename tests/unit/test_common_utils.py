import io
import time

import pytest

from common.utils import (
    fsize,
    get_path_suffix,
    parse_markdown_media,
    remove_markdown_symbol,
    split_string_by_utf8_length,
)


def _check_pieces(text: str, limit: int, pieces: list[str]) -> None:
    assert "".join(pieces) == text
    assert all(len(p.encode("utf-8")) <= limit for p in pieces)
    assert all(pieces)


@pytest.mark.parametrize("limit", [4, 5, 6, 7, 8, 13, 2048])
def test_split_cjk_and_emoji(limit):
    text = "你好，世界！😀👍🏽 mixed ascii 中文和emoji🎉" * 50
    pieces = split_string_by_utf8_length(text, limit)
    _check_pieces(text, limit, pieces)


def test_split_exact_boundaries():
    assert split_string_by_utf8_length("中中中", 6) == ["中中", "中"]
    assert split_string_by_utf8_length("中中中", 5) == ["中", "中", "中"]
    assert split_string_by_utf8_length("abcdef", 3) == ["abc", "def"]
    assert split_string_by_utf8_length("", 10) == []
    text = "a" * 2048 + "中"
    assert split_string_by_utf8_length(text, 2048) == ["a" * 2048, "中"]


def test_split_max_split_keeps_rest_in_last_piece():
    pieces = split_string_by_utf8_length("中" * 10, 6, max_split=2)
    assert pieces == ["中中", "中中", "中" * 6]


def test_split_character_wider_than_limit_does_not_hang():
    pieces = split_string_by_utf8_length("a😀b", 2)
    assert pieces == ["a", "😀", "b"]
    with pytest.raises(ValueError):
        split_string_by_utf8_length("x", 0)


def test_fsize(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"x" * 123)
    assert fsize(str(path)) == 123
    assert fsize(path) == 123
    assert fsize(io.BytesIO(b"abcd")) == 4
    with open(path, "rb") as fh:
        fh.read(10)
        assert fsize(fh) == 123
        assert fh.tell() == 10  # position restored
    with pytest.raises(TypeError):
        fsize(42)


def test_get_path_suffix():
    assert get_path_suffix("https://h/files/a.PNG?x=1.jpg#f.gif") == "PNG"
    assert get_path_suffix("/files/tools/abc.pdf?timestamp=1&sign=2") == "pdf"
    assert get_path_suffix("https://h/dir.v2/file") == ""
    assert get_path_suffix("https://h/") == ""
    assert get_path_suffix("C:\\dir.v2\\voice.mp3") == "mp3"


def test_remove_markdown_symbol():
    md = (
        "# Title\n"
        "Some **bold**, *italic*, __strong__ and ~~gone~~ text.\n"
        "- item one\n"
        "  * nested\n"
        "1. first\n"
        "> quoted\n"
        "---\n"
        "See [the docs](https://example.com/a_b_c) or ![pic](https://x/y.png).\n"
        "Keep snake_case, 2*3*4 and `code **here**`.\n"
        "```python\n"
        "x = a**2  # *not* emphasis\n"
        "```\n"
        "Bare https://x.com/_under_score_ stays."
    )
    expected = (
        "Title\n"
        "Some bold, italic, strong and gone text.\n"
        "item one\n"
        "  nested\n"
        "1. first\n"
        "quoted\n"
        "\n"
        "See the docs (https://example.com/a_b_c) or pic (https://x/y.png).\n"
        "Keep snake_case, 2*3*4 and code **here**.\n"
        "x = a**2  # *not* emphasis\n"
        "Bare https://x.com/_under_score_ stays."
    )
    assert remove_markdown_symbol(md) == expected
    assert remove_markdown_symbol("") == ""
    assert remove_markdown_symbol("[https://a.b](https://a.b)") == "https://a.b"


def test_parse_markdown_media_absolute_and_relative():
    answer = (
        "Here is the chart:\n![chart](https://dify.example/files/c.png?sign=1)\n"
        "and the report [report.pdf](/files/tools/r.pdf?timestamp=1&sign=x) done."
    )
    assert parse_markdown_media(answer) == [
        ("text", "Here is the chart:"),
        ("image", "https://dify.example/files/c.png?sign=1"),
        ("text", "and the report"),
        ("file", "/files/tools/r.pdf?timestamp=1&sign=x"),
        ("text", "done."),
    ]


def test_parse_markdown_media_web_link_stays_text():
    answer = "Read [the guide](https://example.com/guide) and [page](https://e.com/x.html), v [1.2](https://e.com/v1.2)."
    assert parse_markdown_media(answer) == [("text", answer)]


def test_parse_markdown_media_edges():
    assert parse_markdown_media("") == []
    assert parse_markdown_media("![](a.png)") == [("image", "a.png")]
    parts = parse_markdown_media("[a](https://e.com) x ![i](https://e.com/i.jpg) [f](https://e.com/f.docx)")
    assert parts == [
        ("text", "[a](https://e.com) x"),
        ("image", "https://e.com/i.jpg"),
        ("file", "https://e.com/f.docx"),
    ]


@pytest.mark.parametrize(
    "payload",
    ["*a " * 20000, "_a " * 20000, "**a " * 15000, "[" * 30000 + "](", "[a](" * 15000, "``a `" * 12000],
)
def test_markdown_helpers_stay_linear_on_hostile_input(payload):
    # Each of these took tens of seconds with naive lazy `.+?` patterns.
    started = time.perf_counter()
    remove_markdown_symbol(payload)
    parse_markdown_media(payload)
    assert time.perf_counter() - started < 1.0


def test_safe_file_name_is_capped_in_utf8_bytes_and_usable_on_windows():
    from common.utils import safe_file_name

    long_cjk = "报告" * 50 + ".pdf"  # 100 CJK characters: 300 bytes, over most file systems' 255
    name = safe_file_name(long_cjk)
    assert len(name.encode("utf-8")) <= 150 and name.endswith(".pdf") and name.startswith("报告")
    assert safe_file_name('a<b>c:d"e|f?g*h.txt') == "a_b_c_d_e_f_g_h.txt"
    assert safe_file_name("..\\..\\evil.txt") == "evil.txt" and safe_file_name(" . ") == "file"
    # A cut never splits a character.
    assert safe_file_name("é" * 200).encode("utf-8").decode("utf-8") == "é" * 75
