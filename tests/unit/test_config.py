"""Settings: sources and their order, validation, masking."""
from __future__ import annotations

import json
import logging

import pytest

import config as config_module
from config import ConfigError, build_config, drag_sensitive, parse_env_value


def write(path, data):
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return str(path)


def test_json_file_values_are_read(tmp_path):
    path = write(tmp_path / "config.json", {"channel_type": "terminal", "single_chat_prefix": ["bot"], "debug": True})
    data = build_config(path, environ={}, dotenv_path=str(tmp_path / "none.env"))
    assert data == {"channel_type": "terminal", "single_chat_prefix": ["bot"], "debug": True}


def test_yaml_file_values_are_read(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("channel_type: terminal\ngroup_name_white_list:\n  - 测试群\nconcurrency_in_session: 2\n", encoding="utf-8")
    data = build_config(str(path), environ={}, dotenv_path="")
    assert data == {"channel_type": "terminal", "group_name_white_list": ["测试群"], "concurrency_in_session": 2}


def test_template_is_used_when_config_json_is_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config_module, "get_root", lambda: str(tmp_path))
    write(tmp_path / "config-template.json", {"model": "dify"})
    assert config_module.find_config_file().endswith("config-template.json")
    write(tmp_path / "config.json", {"model": "x"})
    assert config_module.find_config_file().endswith("config.json")
    (tmp_path / "config.json").unlink()
    (tmp_path / "config-template.json").unlink()
    with pytest.raises(ConfigError, match="no config.json"):
        config_module.find_config_file()


def test_json_is_preferred_to_yaml(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config_module, "get_root", lambda: str(tmp_path))
    (tmp_path / "config.yaml").write_text("model: y\n", encoding="utf-8")
    assert config_module.find_config_file().endswith("config.yaml")
    write(tmp_path / "config.json", {"model": "x"})
    assert config_module.find_config_file().endswith("config.json")


def test_dotenv_overrides_file_and_environment_overrides_dotenv(tmp_path):
    path = write(tmp_path / "config.json", {"model": "from-file", "dify_api_key": "file-key", "debug": False})
    env_file = tmp_path / ".env"
    env_file.write_text("MODEL=from-dotenv\nDIFY_API_KEY=dotenv-key\ndebug=true\n", encoding="utf-8")
    data = build_config(path, environ={"model": "from-env"}, dotenv_path=str(env_file))
    assert data["model"] == "from-env"
    assert data["dify_api_key"] == "dotenv-key"
    assert data["debug"] is True


@pytest.mark.parametrize(
    "key, raw, expected",
    [
        ("single_chat_prefix", '["bot", "@bot"]', ["bot", "@bot"]),
        ("concurrency_in_session", "3", 3),
        ("temperature", "0.5", 0.5),
        ("debug", "True", True),
        ("debug", "false", False),
        ("debug", "1", True),
        ("wechatcomapp_agent_id", "1000002", "1000002"),  # string settings keep the text
        ("dify_api_key", "app-123", "app-123"),
        ("dify_api_key", "12345", "12345"),
        ("character_desc", "__import__('os')", "__import__('os')"),  # never evaluated
        ("model", "max", "max"),  # the original's eval turned this into a builtin
    ],
)
def test_environment_values_are_json_or_text(key, raw, expected):
    assert parse_env_value(key, raw) == expected


def test_environment_names_match_in_any_case(tmp_path):
    path = write(tmp_path / "config.json", {})
    data = build_config(path, environ={"MINIMAX_API_KEY": "k", "Web_Port": "9000", "PATH": "/bin"}, dotenv_path="")
    assert data == {"Minimax_api_key": "k", "web_port": 9000}


def test_unknown_key_names_the_closest_setting(tmp_path):
    path = write(tmp_path / "config.json", {"dify_convsersation_max_messages": 5})
    with pytest.raises(ConfigError) as err:
        build_config(path, environ={}, dotenv_path="")
    assert str(err.value) == "unknown setting 'dify_convsersation_max_messages' (did you mean 'dify_conversation_max_messages'?)"


def test_unknown_key_without_a_close_match(tmp_path):
    path = write(tmp_path / "config.json", {"zzzz": 1})
    with pytest.raises(ConfigError) as err:
        build_config(path, environ={}, dotenv_path="")
    assert str(err.value) == "unknown setting 'zzzz'"


def test_keys_starting_with_underscore_are_comments(tmp_path):
    path = write(tmp_path / "config.json", {"_comment": "my notes", "model": "dify"})
    assert build_config(path, environ={}, dotenv_path="") == {"model": "dify"}


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("single_chat_prefix", "bot", "setting 'single_chat_prefix' must be a list"),
        ("group_name_white_list", ["ok", 3], "setting 'group_name_white_list' must be a list of strings"),
        ("debug", "yes", "setting 'debug' must be true or false"),
        ("wechatmp_port", "8080", "setting 'wechatmp_port' must be a whole number"),
        ("wechatmp_port", True, "setting 'wechatmp_port' must be a whole number"),
        ("temperature", "hot", "setting 'temperature' must be a number"),
        ("concurrency_in_session", 0, "setting 'concurrency_in_session' must be at least 1"),
        ("model", ["dify"], "setting 'model' must be a string"),
    ],
)
def test_wrong_type_names_key_and_expected_type(tmp_path, key, value, message):
    path = write(tmp_path / "config.json", {key: value})
    with pytest.raises(ConfigError) as err:
        build_config(path, environ={}, dotenv_path="")
    assert str(err.value).startswith(message)


def test_wrong_type_from_environment_is_refused(tmp_path):
    path = write(tmp_path / "config.json", {})
    with pytest.raises(ConfigError, match="setting 'single_chat_prefix' from environment variable SINGLE_CHAT_PREFIX must be a list"):
        build_config(path, environ={"SINGLE_CHAT_PREFIX": "bot"}, dotenv_path="")


def test_broken_json_names_line_and_column(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "model": "dify",\n}', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"config.json is not valid JSON: .* line 3"):
        build_config(str(path), environ={}, dotenv_path="")


def test_top_level_must_be_an_object(tmp_path):
    path = write(tmp_path / "config.json", ["model"])
    with pytest.raises(ConfigError, match="must hold an object"):
        build_config(path, environ={}, dotenv_path="")


def test_get_uses_code_default_then_call_site_default(settings):
    assert settings.get("trigger_by_self") is True  # the original's code default
    assert settings.get("trigger_by_self", False) is False  # a call-site default wins when unset
    settings["trigger_by_self"] = False
    assert settings.get("trigger_by_self", True) is False
    with pytest.raises(ConfigError, match="unknown setting 'no_such_key'"):
        settings.get("no_such_key")
    with pytest.raises(ConfigError):
        settings["no_such_key"] = 1


def test_defaults_are_not_shared_between_callers(settings):
    settings.get("single_chat_prefix").append("changed")
    assert settings.get("single_chat_prefix") == [""]


def test_secrets_are_masked_when_logged():
    masked = drag_sensitive({"dify_api_key": "app-1234567890", "wechatmp_token": "tok-abcdefgh", "web_ui_password": "short", "model": "dify"})
    assert masked == {"dify_api_key": "app*****890", "wechatmp_token": "tok*****fgh", "web_ui_password": "*****", "model": "dify"}
    text = drag_sensitive(json.dumps({"open_ai_api_key": "sk-abcdefghijkl"}))
    assert "abcdefghi" not in text


def test_load_config_logs_no_secret(tmp_path, settings, caplog, monkeypatch):
    path = write(tmp_path / "config.json", {"dify_api_key": "app-supersecretvalue", "model": "dify"})
    monkeypatch.chdir(tmp_path)
    logger = logging.getLogger("log")
    logger.propagate = True
    try:
        with caplog.at_level(logging.INFO, logger="log"):
            config_module.load_config(path)
    finally:
        logger.propagate = False
        config_module._config_path = None
    assert "supersecret" not in caplog.text
    assert "app*****lue" in caplog.text
    assert settings.get("model") == "dify"


def test_failed_reload_keeps_the_live_config(tmp_path, settings, monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = write(tmp_path / "config.json", {"model": "dify"})
    try:
        config_module.load_config(good)
        (tmp_path / "config.json").write_text('{"modle": "x"}', encoding="utf-8")
        with pytest.raises(ConfigError):
            config_module.load_config(good)
        assert settings.get("model") == "dify"
    finally:
        config_module._config_path = None


def test_pconf_looks_up_exact_then_lower_case_name():
    config_module.write_plugin_config({"Keyword": {"keyword": {"a": "b"}}})
    try:
        assert config_module.pconf("Keyword") == {"keyword": {"a": "b"}}
        assert config_module.pconf("keyword") == {"keyword": {"a": "b"}}
        config_module.remove_plugin_config("KEYWORD")
        assert config_module.pconf("keyword") is None
    finally:
        config_module.plugin_config.clear()


def test_subscribe_msg_fills_trigger_prefix(settings):
    settings["single_chat_prefix"] = ["bot"]
    settings["subscribe_msg"] = "Send {trigger_prefix} + your question"
    assert config_module.subscribe_msg() == "Send bot + your question"


def test_template_is_valid():
    import os

    root = os.path.dirname(os.path.abspath(config_module.__file__))
    data = build_config(os.path.join(root, "config-template.json"), environ={}, dotenv_path="")
    assert data["channel_type"] == "terminal" and data["model"] == "dify"


def test_logged_context_masks_keys_copied_from_user_data():
    from bridge.context import Context, ContextType

    text = str(Context(ContextType.TEXT, "hi", {"openai_api_key": "sk-abcdefghijklmnop", "session_id": "s1"}))
    assert "abcdefghijklmnop" not in text
    assert "sk-*****nop" in text and "s1" in text


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("dify_app_type", "chatbott", "setting 'dify_app_type' must be one of chatbot, chatflow, agent, workflow, completion"),
        ("dify_response_mode", "stream", "setting 'dify_response_mode' must be one of streaming, blocking"),
        ("dify_max_retries", -1, "setting 'dify_max_retries' must not be negative"),
    ],
)
def test_choices_and_ranges(tmp_path, key, value, message):
    path = write(tmp_path / "config.json", {key: value})
    with pytest.raises(ConfigError) as err:
        build_config(path, environ={}, dotenv_path="")
    assert str(err.value).startswith(message)


@pytest.mark.parametrize("value, ok", [("1-2", True), ("0", True), (0, True), (1.5, True), (" 2 - 5 ", True), ("soon", False), ("1-", False)])
def test_wework_reply_delay_format(tmp_path, value, ok):
    path = write(tmp_path / "config.json", {"wework_reply_delay": value})
    if ok:
        assert build_config(path, environ={}, dotenv_path="")["wework_reply_delay"] == value
    else:
        with pytest.raises(ConfigError, match="wework_reply_delay"):
            build_config(path, environ={}, dotenv_path="")


def test_item_access_is_the_originals(settings):
    settings["model"] = "dify"
    assert settings["model"] == "dify"
    dict.pop(settings, "trigger_by_self", None)
    with pytest.raises(KeyError):
        settings["trigger_by_self"]  # known but not set: the original raises KeyError (get() gives defaults)
    assert "trigger_by_self" not in settings
    with pytest.raises(ConfigError, match="unknown setting 'no_such_key'"):
        settings["no_such_key"]


def test_available_setting_holds_every_key_with_the_originals_table_values():
    from config import SETTINGS, available_setting

    assert set(SETTINGS) <= set(available_setting)
    # The original's table values, which are hints there (the code defaults differ).
    assert available_setting["single_chat_prefix"] == ["bot", "@bot"]
    assert available_setting["single_chat_reply_prefix"] == "[bot] "
    assert available_setting["image_create_prefix"] == ["画", "看", "找"]
    assert available_setting["group_name_white_list"] == ["ChatGPT测试群", "ChatGPT测试群2"]
    assert available_setting["channel_type"] == ""
    assert available_setting["feishu_port"] == 80
    assert available_setting["trigger_by_self"] is False
    assert available_setting["text_to_voice"] == "openai"
    assert available_setting["concurrency_in_session"] == 1
    assert available_setting["expires_in_seconds"] == 3600
    assert available_setting["model"] == "gpt-3.5-turbo"
    assert available_setting["dify_api_key"] == "app-xxx"
    assert available_setting["debug"] is False
    # Keys the original lacks carry our default.
    assert available_setting["shutdown_timeout"] == SETTINGS["shutdown_timeout"][0]


def test_a_plugin_may_add_its_own_setting(settings, monkeypatch):
    from config import available_setting

    with pytest.raises(ConfigError):
        settings.get("my_plugin_switch")
    monkeypatch.setitem(available_setting, "my_plugin_switch", True)
    assert settings.get("my_plugin_switch") is None  # the table value is a hint, as in the original
    assert settings.get("my_plugin_switch", False) is False
    settings["my_plugin_switch"] = True
    assert settings["my_plugin_switch"] is True and settings.get("my_plugin_switch") is True


# --- where a value came from (environment, .env) --------------------------------------------


def test_bad_environment_value_names_the_variable(tmp_path):
    path = write(tmp_path / "config.json", {})
    with pytest.raises(ConfigError) as err:
        build_config(path, environ={"DEBUG": "maybe"}, dotenv_path="")
    assert str(err.value) == 'setting \'debug\' from environment variable DEBUG must be true or false, got str "maybe"'


def test_bad_dotenv_value_names_the_line(tmp_path):
    path = write(tmp_path / "config.json", {})
    env_file = tmp_path / ".env"
    env_file.write_text("# my settings\nMODEL=dify\n\nCONCURRENCY_IN_SESSION=0\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        build_config(path, environ={}, dotenv_path=str(env_file))
    assert str(err.value) == "setting 'concurrency_in_session' from .env line 4 must be at least 1, got 0"


def test_dotenv_key_that_is_not_a_setting_is_refused(tmp_path):
    path = write(tmp_path / "config.json", {})
    env_file = tmp_path / ".env"
    env_file.write_text("MODEL=dify\nDIFY_API_KYE=app-123\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        build_config(path, environ={}, dotenv_path=str(env_file))
    assert str(err.value) == "unknown setting 'DIFY_API_KYE' in .env line 2 (did you mean 'dify_api_key'?)"
    # A .env written for another tool gets a line saying what to do about it.
    env_file.write_text("COMPOSE_PROJECT_NAME=dow\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        build_config(path, environ={}, dotenv_path=str(env_file))
    assert str(err.value) == ("unknown setting 'COMPOSE_PROJECT_NAME' in .env line 1: this program reads ./.env "
                              "as settings; move other tools' variables to another file")


def test_dotenv_line_that_is_not_key_value_is_refused(tmp_path):
    path = write(tmp_path / "config.json", {})
    env_file = tmp_path / ".env"
    env_file.write_text("MODEL=dify\nthis is not a setting\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^\.env line 2 is not a KEY=value line$"):
        build_config(path, environ={}, dotenv_path=str(env_file))
    env_file.write_text("MODEL=dify\nDEBUG\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"^\.env line 2: 'DEBUG' has no value"):
        build_config(path, environ={}, dotenv_path=str(env_file))


def test_environment_variables_that_are_not_settings_are_ignored(tmp_path):
    path = write(tmp_path / "config.json", {"model": "dify"})
    assert build_config(path, environ={"HOME": "/root", "DIFY_API_KYE": "x"}, dotenv_path="") == {"model": "dify"}


# --- command-line settings and reloads ------------------------------------------------------


@pytest.fixture
def fresh_loading(monkeypatch, tmp_path, settings):
    """load_config's remembered path and command-line settings, restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(config_module, "_config_path", None)
    monkeypatch.setattr(config_module, "_chosen_path", None, raising=False)
    monkeypatch.setattr(config_module, "_command_line_settings", {}, raising=False)
    for name in list(__import__("os").environ):
        if name.lower() in config_module.SETTINGS:
            monkeypatch.delenv(name)
    yield tmp_path


def test_command_line_settings_survive_a_reload(fresh_loading, settings):
    path = write(fresh_loading / "my.json", {"channel_type": "wework", "model": "gpt-4o", "dify_api_key": "app-real"})
    config_module.load_config(path)
    config_module.set_command_line_settings({"channel_type": "terminal", "model": "dify", "dify_api_key": "app-sandbox"})
    write(fresh_loading / "my.json", {"channel_type": "wework", "model": "gpt-4o", "dify_api_key": "app-real", "debug": False})
    config_module.load_config()  # what #reconf calls
    assert (settings.get("channel_type"), settings.get("model"), settings.get("dify_api_key")) == ("terminal", "dify", "app-sandbox")
    assert config_module.config_path() == path  # --config is read again, not ./config.json


def test_reload_without_config_flag_finds_a_config_json_made_after_start(fresh_loading, settings, monkeypatch):
    monkeypatch.setattr(config_module, "get_root", lambda: str(fresh_loading))
    write(fresh_loading / "config-template.json", {"model": "from-template"})
    config_module.load_config()
    assert settings.get("model") == "from-template"
    write(fresh_loading / "config.json", {"model": "from-config"})
    config_module.load_config()
    assert settings.get("model") == "from-config"


def test_secrets_and_proxy_passwords_are_masked_in_the_loaded_config_log(fresh_loading, logs):
    path = write(fresh_loading / "config.json", {"proxy": "http://bob:hunter2hunter2@10.0.0.1:3128", "web_password": "correct-horse-battery"})
    (fresh_loading / ".env").write_text("OPEN_AI_API_BASE=https://alice:s3cr3tpass@llm.example/v1\n", encoding="utf-8")
    config_module.load_config(path)
    text = logs.text()
    for secret in ("hunter2", "horse", "s3cr3t"):
        assert secret not in text
    assert "http://bob:*****@10.0.0.1:3128" in text  # the host stays readable
    assert "https://alice:*****@llm.example/v1" in text


def test_shown_is_one_short_line_of_any_value():
    from config import LOGGED_VALUE_CHARS, shown

    assert shown("dify") == '"dify"' and shown(["#清除记忆"]) == '["#清除记忆"]'
    long = shown("x" * 10_000)
    assert long.endswith("… (10002 characters)") and len(long) < LOGGED_VALUE_CHARS + 30
    tricky = shown("a\nb\r\u2028c\x85d\ud800")
    assert len(tricky.splitlines()) == 1 and "\\ud800" in tricky
    tricky.encode("utf-8")  # loggable


def test_check_plain_refuses_what_no_setting_can_hold():
    from config import check_plain

    check_plain({"a": ["b", 1, 2.5, None, True]}, "x")
    for bad, why in [
        (float("nan"), "nan"), (float("inf"), "inf"), (10**40, "digits"), ("\udc80", "lone surrogate"),
        ({1: "x"}, "keys must be text"), ({"\ud800": 1}, "lone surrogate"),
    ]:
        with pytest.raises(ConfigError, match=why):
            check_plain(bad, "setting 'x'")
    deep: list = []
    for _ in range(100_000):  # deeper than Python's recursion limit: checked without recursion
        deep = [deep]
    with pytest.raises(ConfigError, match="nested deeper"):
        check_plain(deep, "setting 'x'")


@pytest.mark.parametrize("entry", ["http://10.0.0.5", "nas:8080", "10.0.0.0/33", "", "a b", "host/path"])
def test_allowed_internal_hosts_takes_hosts_not_urls(entry):
    # A URL or host:port there would match no link's host, silently (issue 11).
    with pytest.raises(ConfigError, match="allowed_internal_hosts"):
        config_module.check_value("allowed_internal_hosts", [entry])


@pytest.mark.parametrize("entry", ["nas.local", "NAS", "192.168.1.10", "10.0.0.0/8", "::1", "[fd00::1]", "fd00::/8"])
def test_allowed_internal_hosts_accepts_names_addresses_and_networks(entry):
    config_module.check_value("allowed_internal_hosts", [entry])
