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
    settings["concurrency_in_session"] = 2
    result = apply_pushed({"enabled": "Y", "group_chat_prefix": "@new", "concurrency_in_session": 0,
                           "single_chat_reply_suffix": " ~"})
    assert set(result.refused) == {"group_chat_prefix", "concurrency_in_session"}
    assert settings.get("group_chat_prefix") == ["@old"]
    assert settings.get("concurrency_in_session") == 2
    assert settings.get("single_chat_reply_suffix") == " ~"  # the good value of the same push is kept
    text = logs.text()
    assert "group_chat_prefix keeps its value: setting 'group_chat_prefix' from LinkAI must be a list" in text
    assert "concurrency_in_session keeps its value: setting 'concurrency_in_session' from LinkAI must be at least 1" in text


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
    config_module.set_command_line_settings({"channel_type": "terminal"})
    try:
        result = apply_pushed({"enabled": "Y", "channel_type": "web"})
        assert "the command line sets it" in result.refused["channel_type"]
        assert settings.get("channel_type") == "terminal"
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
    assert apply_pushed({"enabled": "Y", "admin_password": "pw-1"}).applied == ["admin_password"]
    assert config_module.pconf("Godcmd") == {"password": "pw-1", "admin_users": []}
    assert local_report()["admin_password"] == "pw-1"
    for bad in ("", "   ", 123):
        assert "admin_password" in apply_pushed({"enabled": "Y", "admin_password": bad}).refused
    assert config_module.pconf("Godcmd")["password"] == "pw-1"


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
