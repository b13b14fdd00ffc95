"""`python app.py --cmd` with the Coze bot against the Coze v3 simulator, as real processes,
with config.json in the original's shape."""
from __future__ import annotations

import pytest

from tests.e2e.daemon import run_app, write_config
from tests.fakes.coze_server import DEFAULT_BOT, CozeServer

pytestmark = pytest.mark.slow

TOKEN = "pat_e2e_0123456789abcdef"


def coze_config(folder, server, **more):
    settings = {
        "bot_type": "", "model": "coze", "coze_api_base": server.base_url, "coze_api_key": TOKEN,
        "coze_bot_id": DEFAULT_BOT, "coze_return_show_img": "false", "coze_conversation_max_messages": 20,
    }
    settings.update(more)
    return write_config(folder, **settings)


def answers(result):
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout.splitlines()


@pytest.mark.parametrize("stream", [True, False])
def test_a_conversation_continues_across_a_restart(tmp_path, stream):
    with CozeServer(tokens={TOKEN}) as server:
        config = coze_config(tmp_path, server, coze_stream=stream)
        first = answers(run_app(tmp_path, "--cmd", "--config", config, input="first question\nsecond question\n"))
        assert "echo: first question (turn 1)" in first and "echo: second question (turn 2)" in first
        # A new process: the conversation id comes back from the state store.
        again = answers(run_app(tmp_path, "--cmd", "--config", config, input="third question\n"))
        assert "echo: third question (turn 3)" in again
        assert len(server.conversations) == 1
        [(conversation_id, conversation)] = server.conversations.items()
        requests = server.chat_requests()
        assert [r.query.get("conversation_id") for r in requests] == [None, conversation_id, conversation_id]
        assert all(r.json["stream"] is stream and r.json["bot_id"] == DEFAULT_BOT for r in requests)
        assert len({r.json["user_id"] for r in requests}) == 1  # one Coze user across both runs
        # Each question is sent once: Coze's conversation is the history.
        assert [r.json["additional_messages"] for r in requests][2] == [
            {"role": "user", "content": "third question", "content_type": "text", "type": "question"}]
        if not stream:
            polled = [r.path for r in server.requests]
            assert "/v3/chat/retrieve" in polled and "/v3/chat/message/list" in polled
    log = open(tmp_path / "run.log", encoding="utf-8").read()
    assert TOKEN not in log


def test_a_conversation_coze_forgot_starts_again_cleanly(tmp_path):
    with CozeServer(tokens={TOKEN}) as server:
        config = coze_config(tmp_path, server)
        assert "echo: one (turn 1)" in answers(run_app(tmp_path, "--cmd", "--config", config, input="one\n"))
        server.forget_conversations()
        lines = answers(run_app(tmp_path, "--cmd", "--config", config, input="two\nthree\n"))
    assert "echo: two (turn 1)" in lines and "echo: three (turn 2)" in lines, lines
    assert len(server.conversations) == 1


def test_a_wrong_token_and_an_unknown_bot_get_clear_answers(tmp_path):
    with CozeServer(tokens={"pat_the_right_one"}) as server:
        wrong_key = answers(run_app(tmp_path, "--cmd", "--config", coze_config(tmp_path, server), input="hello\n"))
    assert any(line.startswith("Coze rejected the access token: check coze_api_key") for line in wrong_key), wrong_key
    assert TOKEN not in open(tmp_path / "run.log", encoding="utf-8").read()
    with CozeServer(tokens={TOKEN}) as server:
        config = coze_config(tmp_path, server, coze_bot_id="7499999999999999999")
        unknown_bot = answers(run_app(tmp_path, "--cmd", "--config", config, input="你好\n"))
    assert "找不到这个 Coze 智能体，或它没有发布为 API 服务，请检查配置项 coze_bot_id。" in unknown_bot, unknown_bot


def test_a_cut_stream_is_told_and_the_next_question_works(tmp_path):
    with CozeServer(tokens={TOKEN}) as server:
        server.push_broken_stream("This answer stops in the mid")
        config = coze_config(tmp_path, server)
        lines = answers(run_app(tmp_path, "--cmd", "--config", config, input="tell me\nhello again\n"))
    assert "Coze's answer was cut off; please ask again." in lines, lines
    assert any(line.startswith("echo: hello again (turn ") for line in lines), lines


def test_placeholder_settings_stop_start_up(tmp_path):
    # The original's config-template has "xxx" in both: as good as empty.
    config = write_config(tmp_path, bot_type="", model="coze", coze_api_key="xxx", coze_bot_id="xxx")
    result = run_app(tmp_path, "--cmd", "--config", config, input="hello\n")
    assert result.returncode == 2, result.stdout + result.stderr
    assert "coze_api_key" in result.stderr
