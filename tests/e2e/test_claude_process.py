"""`python app.py --cmd` with the Claude bot (claudeAPI) against the Anthropic simulator,
as real processes, with config.json in the original's shape."""
from __future__ import annotations

import pytest

from tests.e2e.daemon import run_app, write_config
from tests.fakes.anthropic_server import AnthropicServer

pytestmark = pytest.mark.slow

KEY = "sk-ant-e2e-0123456789"
MODEL_ID = "claude-3-5-sonnet-latest"  # what the original's short name is mapped to


def claude_config(folder, server, base_setting="claude_api_base", **more):
    settings = {
        "bot_type": "", "model": "claude-3-5-sonnet", "claude_api_key": KEY,
        "character_desc": "You are a terse assistant.",
        # The original's relay addresses were written the OpenAI way, ending in /v1.
        base_setting: server.base_url + ("/v1" if base_setting == "open_ai_api_base" else ""),
    }
    settings.update(more)
    return write_config(folder, **settings)


def answers(result):
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("stream, base_setting", [(True, "claude_api_base"), (False, "open_ai_api_base")])
def test_a_conversation_keeps_its_history(tmp_path, stream, base_setting):
    # open_ai_api_base is how the original pointed Claude at a relay: still honoured.
    # Streamed, the first answer is cut mid-stream (the connection drops inside a chunk): the
    # user is told, nothing hangs, and the failed question leaves nothing in the history.
    with AnthropicServer(api_keys={KEY}, models=[MODEL_ID]) as server:
        if stream:
            server.push_broken_stream("This answer stops in the mid")
        config = claude_config(tmp_path, server, base_setting, claude_stream=stream)
        questions = ("tell me\n" if stream else "") + "first question\nsecond question\n"
        result = run_app(tmp_path, "--cmd", "--config", config, input=questions)
    lines = answers(result)
    if stream:
        assert lines.count("Claude's answer was cut off; please ask again.") == 1, result.stdout
    assert "echo: first question (turns: 1)" in lines, result.stdout
    # The second request carried question, answer, question: the history.
    assert "echo: second question (turns: 3)" in lines, result.stdout
    *_, second = server.message_requests()
    assert second.json["messages"] == [
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "echo: first question (turns: 1)"},
        {"role": "user", "content": "second question"},
    ]
    assert second.json["system"] == "You are a terse assistant."  # character_desc, apart from the messages
    assert second.json["model"] == MODEL_ID and second.json["max_tokens"] == 4096
    assert bool(second.json.get("stream")) is stream
    assert KEY not in open(tmp_path / "run.log", encoding="utf-8").read()


def test_a_wrong_key_gets_a_clear_answer(tmp_path):
    with AnthropicServer(api_keys={"sk-ant-the-right-one"}) as server:
        config = claude_config(tmp_path, server)
        result = run_app(tmp_path, "--cmd", "--config", config, input="hello\n你好\n")
    lines = answers(result)
    assert "The Claude API key was rejected (401): check the claude_api_key setting." in lines, result.stdout
    assert "Claude 的 API Key 无效（401），请检查配置项 claude_api_key。" in lines, result.stdout
    log = open(tmp_path / "run.log", encoding="utf-8").read()
    assert KEY not in log and KEY[:3] + "*****" + KEY[-3:] in log  # masked, still recognisable


def test_an_unknown_model_gets_a_clear_answer(tmp_path):
    with AnthropicServer(api_keys={KEY}, models=[MODEL_ID]) as server:
        config = claude_config(tmp_path, server, model="claude-3-7-nonesuch")
        result = run_app(tmp_path, "--cmd", "--config", config, input="hello\n")
    lines = answers(result)
    assert any(line.startswith("Claude model 'claude-3-7-nonesuch' or its API address not found (404)") for line in lines), result.stdout


def test_the_retired_web_client_stops_start_up_and_names_claude_api(tmp_path):
    config = write_config(tmp_path, bot_type="", model="claude", claude_api_cookie="sessionKey=x")
    result = run_app(tmp_path, "--cmd", "--config", config, input="hello\n")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "retired" in result.stderr and "claudeAPI" in result.stderr and "claude_api_key" in result.stderr


def test_a_missing_key_stops_start_up(tmp_path):
    config = write_config(tmp_path, bot_type="", model="claude-3-haiku")
    result = run_app(tmp_path, "--cmd", "--config", config, input="hello\n")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "claude_api_key" in result.stderr


def test_an_openai_model_name_is_not_sent_to_anthropic(tmp_path):
    """bot_type claudeAPI with the original's default model (gpt-3.5-turbo): every message
    was a 404; the Claude default is asked for instead."""
    with AnthropicServer(api_keys={KEY}, models=[MODEL_ID]) as server:
        config = claude_config(tmp_path, server, bot_type="claudeAPI", model="gpt-3.5-turbo")
        result = run_app(tmp_path, "--cmd", "--config", config, input="hello\n")
    lines = answers(result)
    assert "echo: hello (turns: 1)" in lines, result.stdout
    assert [r.json["model"] for r in server.message_requests()] == [MODEL_ID]
