"""Hostile and broken settings, each through a real `python app.py --config FILE`: one line
`config error: ...` on stderr, exit code 2, no traceback, nothing logged at length.

The corpus is tests/data/config/, one file per case; EXPECTED says what its line must
contain (a file without an entry fails the test, so none is forgotten)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.e2e.daemon import ROOT, run_app, user_lines, write_config

pytestmark = pytest.mark.slow

CORPUS = Path(ROOT) / "tests" / "data" / "config"

EXPECTED = {
    "alias.yaml": "uses a YAML alias (*base) at line 2",
    "alias_bomb.yaml": "uses a YAML alias",
    "binary.json": "is not UTF-8 text",
    "deep.yaml": "nested deeper than 32 levels",
    "deep_array.json": "nested deeper than 32 levels",
    "deep_value.json": "setting 'single_chat_prefix' is nested deeper than 32 levels",
    "empty.json": "is not valid JSON",
    "huge_number.json": "setting 'worker_threads' holds a number of 31 digits",
    "infinity.json": "setting 'temperature' holds -inf",
    "line_separator_value.json": "setting 'dify_app_type' must be one of",
    "lone_surrogate.json": "setting 'model' holds a lone surrogate",
    "lone_surrogate.yaml": "setting 'model' holds a lone surrogate",
    "lone_surrogate_comment.json": "setting '_note' holds a lone surrogate",
    "lone_surrogate_key.json": "a setting name holds a lone surrogate",
    "long_list.json": "setting 'single_chat_prefix' must be a list of strings",
    "long_number.json": "is not valid JSON: Exceeds the limit",
    "long_number.yaml": "is not valid YAML: Exceeds the limit",
    "long_unknown_key.json": "unknown setting",
    "long_value.json": "setting 'dify_app_type' must be one of",
    "nan.json": "setting 'temperature' holds nan",
    "nan.yaml": "setting 'temperature' holds nan",
    "nested_non_string_key.yaml": "keys must be text",
    "newline_key.json": "unknown setting",
    "non_string_key.yaml": "setting names must be text",
    "not_utf8.json": "is not UTF-8 text (byte 0xe9 at offset 14)",
    "nul_byte.json": "is not valid JSON: Invalid control character at line 1",
    "overflow_float.json": "setting 'temperature' holds inf",
    "python_tag.yaml": "uses a YAML tag settings cannot have",
    "top_level_array.json": "must hold an object of settings",
    "utf16.json": "is not UTF-8 text",
    "yaml_date.yaml": "setting 'channel_type' must be a string",
}

# What one line may be at most: a capped value (~200 characters) and the words around it.
LONGEST_LINE = 400
# run.log of a refused start: a few lines of start-up, never a value written out whole.
LONGEST_LOG = 8 * 1024


def test_every_corpus_file_has_an_expectation():
    assert sorted(p.name for p in CORPUS.iterdir()) == sorted(EXPECTED)


def refused(folder: Path, result, expected: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = user_lines(result.stderr)
    assert len(lines) == 1, lines
    [line] = lines
    assert line.startswith("config error: ") and expected in line, line
    assert len(line) <= LONGEST_LINE, len(line)
    log = folder / "run.log"
    assert not log.exists() or log.stat().st_size <= LONGEST_LOG
    return line


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_config_file_is_refused_in_one_line(tmp_path, name):
    result = run_app(tmp_path, "--cmd", "--config", str(CORPUS / name), input="hello\n")
    refused(tmp_path, result, EXPECTED[name])
    assert "echo:" not in result.stdout
    assert not (tmp_path / "pwned.txt").exists()


def test_a_50_mib_config_is_refused_unread(tmp_path):
    big = tmp_path / "config.json"
    with open(big, "wb") as f:
        f.write(b'{"character_desc": "')
        f.truncate(50 * 1024 * 1024)  # sparse: the size is what is checked first
    result = run_app(tmp_path, "--cmd", "--config", str(big), input="hello\n")
    refused(tmp_path, result, "config.json is 52428800 bytes; a settings file may hold at most 1048576 bytes")


def test_a_dotenv_that_is_not_utf8_is_refused(tmp_path):
    config = write_config(tmp_path)
    (tmp_path / ".env").write_bytes(b"MODEL=caf\xe9\n")
    result = run_app(tmp_path, "--cmd", "--config", config, input="hello\n")
    refused(tmp_path, result, ".env is not UTF-8 text")


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX environments carry bytes; Windows' carry text")
def test_an_environment_value_that_is_not_text_is_refused(tmp_path):
    config = write_config(tmp_path)
    result = run_app(tmp_path, "--cmd", "--config", config, input="hello\n", env={"MODEL": os.fsdecode(b"caf\xe9")})
    refused(tmp_path, result, "setting 'model' from environment variable MODEL holds a lone surrogate")


def test_a_deeply_nested_environment_value_is_refused(tmp_path):
    config = write_config(tmp_path)
    result = run_app(tmp_path, "--cmd", "--config", config, input="hello\n", env={"SINGLE_CHAT_PREFIX": "[" * 50_000})
    refused(tmp_path, result, "setting 'single_chat_prefix' from environment variable SINGLE_CHAT_PREFIX must be a list")


def test_long_values_that_are_valid_start_and_are_logged_cut_short(tmp_path):
    description = "你是一个助手。" * 20_000  # 140,000 characters: accepted, but not worth logging whole
    config = write_config(tmp_path, character_desc=description)
    result = run_app(tmp_path, "--cmd", "--config", config, input="hello\n",
                     env={"SUBSCRIBE_MSG": "欢迎" * 10_000})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "echo: hello" in result.stdout
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert "characters)" in log and "你是一个助手。" in log
    assert max(len(line) for line in log.splitlines()) < 2_000
    assert len(log) < 10_000


def test_broken_plugin_settings_files_never_stop_start_up(tmp_path):
    config = write_config(tmp_path)
    home = tmp_path / "plugin-home"
    home.mkdir()
    (home / "plugins.json").write_text("[" * 5000, encoding="utf-8")  # deeper than json can go
    (home / "config.json").write_bytes(b'{"Godcmd": {"password": "caf\xe9"}}')  # not UTF-8
    result = run_app(tmp_path, "--cmd", "--config", config, "--plugins-dir", str(home), input="hello\n")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "echo: hello" in result.stdout
    assert "Traceback" not in result.stderr
    assert (home / "plugins.json.broken").read_text(encoding="utf-8") == "[" * 5000  # kept for the user
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert "nested too deeply" in log and "config.json" in log
