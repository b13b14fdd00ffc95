"""What a new user meets first, through real `python app.py` processes: the sandbox demo,
a quiet terminal, missing keys, a reload, the template."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import ROOT, Daemon, run_app, user_lines, write_config

pytestmark = pytest.mark.slow

SANDBOX_ANSWER = "[Offline sandbox] This is a local Dify simulator; no model is connected."


def admin_plugins_dir(folder) -> str:
    """A plugins folder whose shared config gives godcmd a password, so a test can #auth."""
    target = os.path.join(str(folder), "plugins")
    os.makedirs(target, exist_ok=True)
    with open(os.path.join(target, "config.json"), "w", encoding="utf-8") as f:
        json.dump({"godcmd": {"password": "pw-for-tests", "admin_users": []}}, f)
    return target


def loaded_configs(folder) -> list[str]:
    log = (folder / "run.log").read_text(encoding="utf-8")
    return [line for line in log.splitlines() if "[INIT] load config from " in line]


def test_reconf_keeps_the_command_line_sandbox_and_terminal(tmp_path):
    # The file names another channel and bot: --cmd and --sandbox must win, also after #reconf.
    config = write_config(tmp_path, channel_type="wework", bot_type="", model="gpt-4o", open_ai_api_key="sk-test-key-123")
    daemon = Daemon(tmp_path, "--cmd", "--sandbox", "--config", config, "--plugins-dir", admin_plugins_dir(tmp_path))
    try:
        daemon.ask("before")
        daemon.wait_for(SANDBOX_ANSWER + " Turn 1 of this conversation, you said: before")
        daemon.ask("#auth pw-for-tests")
        daemon.wait_for("认证成功")  # the original's answer
        daemon.ask("#reconf")
        daemon.wait_for("配置已重载")
        daemon.ask("after")
        daemon.wait_for(SANDBOX_ANSWER + " Turn 2 of this conversation, you said: after")
        daemon.proc.stdin.close()
        assert daemon.wait(30) == 0
    finally:
        daemon.kill()
    first, reloaded = loaded_configs(tmp_path)
    assert '"channel_type": "terminal"' in first
    assert '"channel_type": "terminal"' in reloaded and '"bot_type": "dify"' in reloaded
    # The console stayed quiet after the reload too: no INFO line on the screen.
    assert "[INFO]" not in daemon.stderr()


def test_terminal_stdout_is_the_conversation_and_logs_go_to_stderr_and_run_log(tmp_path):
    config = write_config(tmp_path, bot_type="")
    result = run_app(tmp_path, "--cmd", "--sandbox", "--config", config, input="hello\n")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stdout.splitlines() if line] == [
        "Bot:",
        "【离线沙盒】这是本地模拟的 Dify，没有连接任何模型。本会话第 1 轮，你说：hello",
        SANDBOX_ANSWER + " Turn 1 of this conversation, you said: hello",
    ]
    assert "[INFO]" not in result.stderr
    assert result.stderr.count("SANDBOX: offline demo") == 1
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert "[INFO]" in log and "[INIT] load config from " in log and "SANDBOX: offline demo" in log


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"model": "dify", "dify_api_key": ""},
         "config error: setting 'dify_api_key' is empty: put the API key of your Dify app (app-...) in it, "
         "or try the offline demo with --sandbox"),
        ({"model": "dify", "dify_api_key": "app-xxx"},
         "config error: setting 'dify_api_key' is still the template's placeholder 'app-xxx': "
         "fill in the API key of your Dify app (app-...)"),
        ({"model": "gpt-4o"},
         "config error: setting 'open_ai_api_key' is empty: put your OpenAI API key in it "
         "(or point open_ai_api_base at a server that needs no key)"),
        # The original's cookie-based web Claude (model / bot_type `claude`) is retired: start-up
        # says so and names Claude through Anthropic's API, whichever setting chose it.
        ({"model": "claude"},
         "config error: bot type 'claude' (model or bot_type 'claude': the claude.ai web client with "
         "claude_api_cookie) is retired and cannot work any more: use Claude through Anthropic's API instead, "
         "with bot_type 'claudeAPI' (or a model starting with 'claude-3') and your key in claude_api_key"),
        ({"bot_type": "claude"},
         "config error: bot type 'claude' (model or bot_type 'claude': the claude.ai web client with "
         "claude_api_cookie) is retired and cannot work any more: use Claude through Anthropic's API instead, "
         "with bot_type 'claudeAPI' (or a model starting with 'claude-3') and your key in claude_api_key"),
        ({"bot_type": "linkai", "open_ai_api_key": "sk-not-what-linkai-needs"},
         "config error: setting 'linkai_api_key' is empty: put your LinkAI API key in it"),
    ],
    ids=["dify-no-key", "dify-placeholder", "openai-no-key", "model-retired", "bot-type-retired", "linkai-no-key"],
)
def test_a_bot_that_cannot_work_stops_start_up_with_one_line(tmp_path, settings, expected):
    config = write_config(tmp_path, **{"bot_type": "", **settings})
    result = run_app(tmp_path, "--cmd", "--config", config, input="hello\n")
    assert user_lines(result.stderr) == [expected]
    assert result.returncode == (2 if expected.startswith("config error") else 1)
    assert result.stdout == ""


def test_no_key_is_needed_for_the_sandbox_or_a_self_hosted_openai_server(tmp_path):
    config = write_config(tmp_path, bot_type="", model="gpt-4o", open_ai_api_base="http://127.0.0.1:9/v1")
    assert run_app(tmp_path, "--cmd", "--config", config, input="").returncode == 0
    config = write_config(tmp_path, bot_type="", model="dify", dify_api_key="")
    assert run_app(tmp_path, "--cmd", "--sandbox", "--config", config, input="").returncode == 0
    # LinkAI wants its own key, not OpenAI's.
    config = write_config(tmp_path, bot_type="linkai", linkai_api_key="Link_test_key_123")
    assert run_app(tmp_path, "--cmd", "--config", config, input="").returncode == 0


def test_custom_dify_app_supplies_the_dify_key(tmp_path):
    # The original's custom_dify_app gives chats their own Dify app: the global key may stay empty.
    plugins = os.path.join(str(tmp_path), "plugins")
    os.makedirs(plugins)
    with DifyServer(api_key="app-custom", mode="chat") as dify:
        with open(os.path.join(plugins, "config.json"), "w", encoding="utf-8") as f:
            json.dump({"CustomDifyApp": [{"app_name": "mine", "app_type": "chatbot", "api_base": dify.base_url,
                                          "api_key": "app-custom", "use_on_single_chat": True}]}, f)
        config = write_config(tmp_path, bot_type="", model="dify", dify_api_key="")
        result = run_app(tmp_path, "--cmd", "--config", config, "--plugins-dir", plugins, input="hello\n")
        assert result.returncode == 0, result.stderr
        assert len(dify.requests_to("/v1/chat-messages")) == 1
    assert "echo: hello" in result.stdout.splitlines()  # the custom app's answer
    assert "plugin CUSTOMDIFYAPP supplies these settings per chat" in result.stderr


def test_sandbox_conversations_never_reach_a_real_dify(tmp_path):
    config = write_config(tmp_path, bot_type="")
    demo = run_app(tmp_path, "--cmd", "--sandbox", "--config", config, input="asked in the sandbox\n")
    assert demo.returncode == 0, demo.stderr
    with DifyServer(api_key="app-real", mode="chat") as real:
        config = write_config(tmp_path, bot_type="", model="dify", dify_api_base=real.base_url, dify_api_key="app-real")
        result = run_app(tmp_path, "--cmd", "--config", config, input="asked for real\n")
        assert result.returncode == 0, result.stderr
        [request] = real.requests_to("/v1/chat-messages")
    assert "conversation_id" not in request["json"]  # the sandbox's conversation stayed in the sandbox
    # A second sandbox run (a new simulator) starts afresh instead of asking for the old id.
    again = run_app(tmp_path, "--cmd", "--sandbox", "--config", write_config(tmp_path, bot_type=""), input="once more\n")
    assert "本会话第 1 轮" in again.stdout
    assert "Conversation Not Exists" not in (tmp_path / "run.log").read_text(encoding="utf-8")


def test_the_template_runs_on_linux_as_the_readme_says(tmp_path):
    """README: copy config-template.json to config.json and run `python app.py`; with the
    sandbox standing in for the Dify key, the template's channel answers here."""
    shutil.copy(os.path.join(ROOT, "config-template.json"), tmp_path / "config.json")
    env = {"APPDATA_DIR": str(tmp_path / "data")}
    result = run_app(tmp_path, "--sandbox", "--plugins-dir", str(tmp_path), input="hello\n", env=env)
    assert result.returncode == 0, result.stderr
    assert SANDBOX_ANSWER + " Turn 1 of this conversation, you said: hello" in result.stdout.splitlines()
    without_key = run_app(tmp_path, "--plugins-dir", str(tmp_path), input="", env=env)
    assert without_key.returncode == 2
    assert "'dify_api_key' is still the template's placeholder" in without_key.stderr


def test_secret_commands_stay_out_of_run_log_with_debug_on(tmp_path):
    # With debug on, every message is logged at DEBUG; the password of #auth and a key given
    # with #set_openai_api_key must not go with it.
    config = write_config(tmp_path, bot_type="", debug=True)
    result = run_app(
        tmp_path, "--cmd", "--sandbox", "--config", config, "--plugins-dir", admin_plugins_dir(tmp_path),
        input="#auth pw-for-tests\n#set_openai_api_key sk-abcdefghijklmnop123\nhello\n",
    )
    assert result.returncode == 0, result.stderr
    assert "认证成功" in result.stdout
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert "[DEBUG]" in log and "#auth *****" in log  # the command is logged, its argument is not
    for secret in ("pw-for-tests", "abcdefghijklmnop"):
        assert secret not in log
