"""Settings pushed by LinkAI (common/linkai_settings.py) and the LinkAI client settings of config.py."""
from __future__ import annotations

import pytest

import config as config_module
from common.linkai_settings import apply_pushed, local_report
from config import ConfigError, check_value


@pytest.fixture
def plugin_settings():
    saved = dict(config_module.plugin_config)
    yield config_module.plugin_config
    config_module.plugin_config.clear()
    config_module.plugin_config.update(saved)


def test_known_settings_are_applied_and_console_booleans_read(settings, logs):
    settings["speech_recognition"] = True
    result = apply_pushed({"enabled": "Y", "group_chat_prefix": ["@bot"], "speech_recognition": "N",
                           "group_speech_recognition": "Y"})
    assert result.applied == ["group_chat_prefix", "speech_recognition", "group_speech_recognition"]
    assert settings.get("group_chat_prefix") == ["@bot"]
    # "N" is false here (the original stored the string, which counted as true).
    assert settings.get("speech_recognition") is False
    assert settings.get("group_speech_recognition") is True
    assert "pushed settings applied: group_chat_prefix, speech_recognition, group_speech_recognition" in logs.text()


def test_a_bad_value_is_refused_and_the_old_one_stays(settings, logs):
    settings["group_chat_prefix"] = ["@old"]
    settings["speech_recognition"] = False
    result = apply_pushed({"enabled": "Y", "group_chat_prefix": "@new", "speech_recognition": 3,
                           "single_chat_reply_suffix": " ~"})
    assert set(result.refused) == {"group_chat_prefix", "speech_recognition"}
    assert settings.get("group_chat_prefix") == ["@old"]
    assert settings.get("speech_recognition") is False
    assert settings.get("single_chat_reply_suffix") == " ~"  # the good value of the same push is kept
    text = logs.text()
    assert "group_chat_prefix keeps its value: setting 'group_chat_prefix' from LinkAI must be a list" in text
    assert "speech_recognition keeps its value: setting 'speech_recognition' from LinkAI must be true or false" in text


def test_unknown_fields_are_ignored_and_the_clients_own_settings_stay_local(settings):
    settings["linkai_api_key"] = "lk-mine"
    result = apply_pushed({"enabled": "Y", "no_such_setting": 1, "linkai_api_key": "lk-theirs",
                           "linkai_client_host": "client.link-ai.tech"})
    assert result.ignored == ["no_such_setting"]
    assert set(result.refused) == {"linkai_api_key", "linkai_client_host"}
    assert settings.get("linkai_api_key") == "lk-mine"


def test_nothing_is_applied_unless_the_console_enabled_it(settings):
    settings["single_chat_reply_prefix"] = ""
    for push in ({"single_chat_reply_prefix": "x"}, {"enabled": "N", "single_chat_reply_prefix": "x"}, ["not", "an object"]):
        assert apply_pushed(push).applied == []
    assert settings.get("single_chat_reply_prefix") == ""


def test_a_setting_forced_on_the_command_line_is_not_changed(settings):
    settings["character_desc"] = "local"
    config_module.set_command_line_settings({"character_desc": "local"})
    try:
        result = apply_pushed({"enabled": "Y", "character_desc": "pushed"})
        assert "the command line sets it" in result.refused["character_desc"]
        assert settings.get("character_desc") == "local"
    finally:
        config_module.set_command_line_settings({})


@pytest.mark.parametrize("mode, voice, always", [
    ("voice_reply_voice", True, False), ("always_reply_voice", True, True), ("no_reply_voice", False, False),
])
def test_reply_voice_mode(settings, mode, voice, always):
    apply_pushed({"enabled": "Y", "reply_voice_mode": mode})
    assert (settings.get("voice_reply_voice"), settings.get("always_reply_voice")) == (voice, always)
    assert local_report().get("reply_voice_mode", "no_reply_voice") == mode


def test_an_unknown_reply_voice_mode_is_refused(settings):
    settings["voice_reply_voice"] = True
    result = apply_pushed({"enabled": "Y", "reply_voice_mode": "shout"})
    assert "reply_voice_mode" in result.refused
    assert settings.get("voice_reply_voice") is True


def test_admin_password_goes_to_godcmd_settings_and_bad_ones_are_refused(settings, plugin_settings):
    plugin_settings.pop("godcmd", None)
    assert apply_pushed({"enabled": "Y", "admin_password": "pw-12345"}).applied == ["admin_password"]
    assert config_module.pconf("Godcmd") == {"password": "pw-12345", "admin_users": []}
    assert local_report()["admin_password"] == "pw-12345"
    # Shorter than 8 characters (spaces around do not count), or not text: refused.
    for bad in ("", "   ", 123, "1", "1234567", "  1234567  "):
        assert "admin_password" in apply_pushed({"enabled": "Y", "admin_password": bad}).refused
    assert config_module.pconf("Godcmd")["password"] == "pw-12345"
    assert apply_pushed({"enabled": "Y", "admin_password": "short"}).refused["admin_password"] == \
        "must be text of at least 8 characters"


def test_group_app_map_reaches_an_installed_linkai_plugin(settings, plugin_settings):
    plugin_settings["linkai"] = {"group_app_map": {}, "midjourney": {"enabled": False, "use_image_create_prefix": False}}
    apply_pushed({"enabled": "Y", "text_to_image": "midjourney",
                  "group_app_map": [{"group_name": "测试群", "app_code": "app1"}, "junk"]})
    assert plugin_settings["linkai"]["group_app_map"] == {"测试群": "app1"}
    assert plugin_settings["linkai"]["midjourney"] == {"enabled": True, "use_image_create_prefix": True}
    assert settings.get("text_to_image") == "midjourney"


@pytest.mark.parametrize("host", ["client.link-ai.tech", "CLIENT.LINK-AI.CHAT", "link-ai.cloud", "127.0.0.1", "::1", "localhost"])
def test_linkai_client_host_accepts_linkai_and_loopback(host):
    check_value("linkai_client_host", host)


@pytest.mark.parametrize("host", ["evil.example.com", "link-ai.tech.evil.com", "10.0.0.5", "", "127.0.0.1:7071"])
def test_linkai_client_host_refuses_other_hosts(host):
    with pytest.raises(ConfigError, match="linkai_client_host.*the LinkAI API key is sent to it"):
        check_value("linkai_client_host", host)


@pytest.mark.parametrize("port", [0, 65536, -1])
def test_linkai_client_port_must_be_a_port(port):
    with pytest.raises(ConfigError, match="linkai_client_port"):
        check_value("linkai_client_port", port)


# Every setting that redirects a key, a request or the web page, or names code to load,
# as a review pushed them: none may change, and no secret value reaches the log.
_HOSTILE_PUSH = {
    "enabled": "Y",
    "bot_type": "os:abort", "voice_to_text": "os:abort", "text_to_voice": "os:abort", "translate": "os:abort",
    "open_ai_api_base": "http://attacker.example/v1", "dify_api_base": "ftp://u:SECRETPW2@h/v1",
    "open_ai_api_key": "sk-SECRETKEY123456", "deepseek_api_key": ["sk-SECRETLIST"],
    "proxy": "ftp://user:SECRETPASS@host:1", "allowed_internal_hosts": ["0.0.0.0/0"],
    "web_password": "SECRETWEB", "appdata_dir": "/etc", "channel_type": "web",
    "use_linkai": False, "linkai_api_key": "lk-SECRETTHEIRS", "linkai_client_host": "client.link-ai.tech",
}


def test_a_push_cannot_reach_keys_addresses_guards_or_code(settings, logs):
    before = {key: settings.get(key) for key in _HOSTILE_PUSH if key != "enabled"}
    result = apply_pushed(_HOSTILE_PUSH)
    assert result.applied == []
    assert set(result.refused) == set(before)
    assert {key: settings.get(key) for key in before} == before
    text = logs.text()
    assert "bot_type keeps its value" in text and "open_ai_api_key keeps its value" in text
    assert "SECRET" not in text


def test_a_pushed_import_path_never_becomes_the_bot(settings, tmp_path):
    """The review's repro: bot_type "os:abort" made the next message run os.abort()."""
    from bridge.bridge import Bridge, route

    settings["model"] = "dify"
    apply_pushed({"enabled": "Y", "bot_type": "os:abort", "voice_to_text": "os:abort", "model": "os:abort"})
    Bridge.reset_instance()
    assert route()["chat"] == "dify"
    assert route()["voice_to_text"] != "os:abort"


def test_model_is_pushable_among_known_names_only(settings):
    settings["model"] = "gpt-3.5-turbo"
    assert apply_pushed({"enabled": "Y", "model": "deepseek-chat"}).applied == ["model"]
    assert settings.get("model") == "deepseek-chat"
    for bad in ("os:abort", "no-such-model", 5):
        assert "model" in apply_pushed({"enabled": "Y", "model": bad}).refused
    assert settings.get("model") == "deepseek-chat"
