"""`python app.py` with the Dify bot against the Dify simulator, as real processes."""
from __future__ import annotations

import signal
import sys

import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, run_app, write_config

pytestmark = pytest.mark.slow


def dify_config(folder, server, **more):
    return write_config(
        folder, bot_type="", model="dify", dify_api_base=server.base_url, dify_api_key="app-test", **more
    )


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_conversation_survives_sigterm_and_restart(tmp_path):
    with DifyServer(api_key="app-test", mode="chat") as server:
        config = dify_config(tmp_path, server)
        daemon = Daemon(tmp_path, "--cmd", "--config", config)
        try:
            daemon.ask("first question")
            daemon.wait_for("echo: first question")
            daemon.proc.send_signal(signal.SIGTERM)
            assert daemon.wait(30) == 0
        finally:
            daemon.kill()
        again = run_app(tmp_path, "--cmd", "--config", config, input="second question\n")
        assert again.returncode == 0, again.stderr
        assert "echo: second question" in again.stdout.splitlines()
        assert len(server.conversations) == 1
        [conversation] = server.conversations.values()
        assert [query for query, _ in conversation["turns"]] == ["first question", "second question"]
        # One stable Dify user across both runs: the terminal's user.
        users = {request["json"]["user"] for request in server.requests_to("/v1/chat-messages")}
        assert len(users) == 1


def test_wrong_key_gives_a_clear_answer_not_a_crash(tmp_path):
    with DifyServer(api_key="app-right", mode="chat") as server:
        config = write_config(tmp_path, bot_type="", model="dify", dify_api_base=server.base_url, dify_api_key="app-wrong")
        result = run_app(tmp_path, "--cmd", "--config", config, input="hello\n")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout
    assert "dify_api_key" in result.stdout  # the answer names the setting to fix
    # ... in the answer itself, not only in the start-up line that lists every setting
    assert any(line.startswith("Dify refused the request") and "dify_api_key" in line
               for line in result.stdout.splitlines()), result.stdout


def test_sandbox_demo_answers_offline_and_says_so(tmp_path):
    config = write_config(tmp_path, bot_type="")
    result = run_app(tmp_path, "--cmd", "--sandbox", "--config", config, input="你好，沙盒\n")
    assert result.returncode == 0, result.stderr
    assert "SANDBOX: offline demo" in result.stderr
    bot_lines = result.stdout.split("Bot:")[1:]
    assert bot_lines, result.stdout
    assert "你好，沙盒" in bot_lines[0]


def test_a_dify_stream_that_never_ends_is_stopped_at_dify_answer_timeout(tmp_path):
    # Issue 11: a stream trickling one event every 0.2 s never trips the read timeout; the
    # answer's total deadline stops it, keeps what arrived, and the next question is answered.
    with DifyServer(api_key="app-test", mode="chat") as server:
        server.push_trickle("la ", every=0.2)
        config = dify_config(tmp_path, server, dify_answer_timeout=1)
        result = run_app(tmp_path, "--cmd", "--config", config, input="sing\nhello\n")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("la la ") for line in lines), result.stdout
    assert "(The answer was cut off.)" in lines
    assert "echo: hello" in lines
