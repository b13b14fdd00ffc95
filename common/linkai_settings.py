"""The settings the LinkAI console and this daemon exchange.

``local_report()`` is what the client tells LinkAI about this daemon after each login
(the console shows and edits it); ``apply_pushed(config)`` applies what the console
pushes back. The field names are LinkAI's (the original's client used the same ones).

Only the settings the LinkAI console itself shows and edits can be pushed (PUSHABLE: the
ones the original's client reported to the console, plus the system prompt, the model
among the names ``#model`` accepts, and the voice switches). Anything else a push holds
is refused: addresses and keys (``*_api_base``, ``*_api_key``, ``proxy``), network and
web-page guards, paths, and engine or bot names, which may be import paths that run
code. A push comes from a remote service; it must not be able to redirect a key or load
a module. A pushable value gets the checks of config.json (config.apply_setting): a
wrong one is refused with a log line naming it and the running value stays; a refused
value is never logged for a key that looks secret. Besides
settings, the console pushes a few fields of its own: ``enabled`` ("Y": apply; anything
else: ignore the whole push), ``reply_voice_mode``, ``admin_password`` (godcmd's
password), and ``group_app_map`` / ``text_to_image`` for the linkai plugin when one is
installed. Booleans come as "Y"/"N": the original stored the string, so "N" counted as
true; here it is turned into false.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from common import const
from common.log import logger
from common.masking import is_secret_key
from config import ConfigError, SETTINGS, apply_setting, conf, expected_types, pconf, plugin_config, shown, write_plugin_config

SOURCE = "LinkAI"

# Fields of a push that are not settings, handled below (or only meant for the console).
_CONSOLE_FIELDS = {"enabled", "reply_voice_mode", "admin_password", "group_app_map", "channelId"}

# reply_voice_mode -> (voice_reply_voice, always_reply_voice)
VOICE_MODES = {
    "voice_reply_voice": (True, False),
    "always_reply_voice": (True, True),
    "no_reply_voice": (False, False),
}

# The settings a push may change. The first group is what the original's client reports
# to the console (its _build_config), so what the console edits; then the prompt, the
# model (checked against const.MODEL_LIST below) and the voice and image switches.
PUSHABLE = frozenset({
    "linkai_app_code",
    "single_chat_prefix", "single_chat_reply_prefix", "single_chat_reply_suffix",
    "group_chat_prefix", "group_chat_reply_prefix", "group_chat_reply_suffix",
    "group_name_white_list", "nick_name_black_list",
    "speech_recognition", "text_to_image", "image_create_prefix",
    "character_desc", "model",
    "group_speech_recognition", "voice_reply_voice", "always_reply_voice",
})

# The godcmd password a push may set: at least this long (a remote push of "1" would
# hand admin rights to anyone who guesses it).
MIN_ADMIN_PASSWORD = 8


@dataclass
class PushResult:
    applied: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # key -> why
    ignored: list[str] = field(default_factory=list)  # not a setting this daemon knows


def local_report() -> dict[str, Any]:
    """This daemon's settings as LinkAI's console shows them."""
    settings = conf()
    report: dict[str, Any] = {
        "linkai_app_code": settings.get("linkai_app_code"),
        "single_chat_prefix": settings.get("single_chat_prefix"),
        "single_chat_reply_prefix": settings.get("single_chat_reply_prefix"),
        "single_chat_reply_suffix": settings.get("single_chat_reply_suffix"),
        "group_chat_prefix": settings.get("group_chat_prefix"),
        "group_chat_reply_prefix": settings.get("group_chat_reply_prefix"),
        "group_chat_reply_suffix": settings.get("group_chat_reply_suffix"),
        "group_name_white_list": settings.get("group_name_white_list"),
        "nick_name_black_list": settings.get("nick_name_black_list"),
        "speech_recognition": "Y" if settings.get("speech_recognition") else "N",
        "text_to_image": settings.get("text_to_image"),
        "image_create_prefix": settings.get("image_create_prefix"),
    }
    if settings.get("always_reply_voice"):
        report["reply_voice_mode"] = "always_reply_voice"
    elif settings.get("voice_reply_voice"):
        report["reply_voice_mode"] = "voice_reply_voice"
    linkai_plugin = pconf("linkai")
    if isinstance(linkai_plugin, dict):
        report["group_app_map"] = linkai_plugin.get("group_app_map")
    godcmd = pconf("Godcmd")
    if isinstance(godcmd, dict) and godcmd.get("password"):
        report["admin_password"] = godcmd.get("password")
    return report


def apply_pushed(pushed: Any) -> PushResult:
    """Apply a config push; never raises for what the push holds."""
    result = PushResult()
    if not isinstance(pushed, dict):
        result.refused["(push)"] = f"not an object: {shown(pushed, 60)}"
        return result
    if pushed.get("enabled") != "Y":
        logger.info("[LinkAI] pushed settings not applied: the console's remote config is not enabled")
        return result
    for key, value in pushed.items():
        if key in _CONSOLE_FIELDS or value is None:
            continue
        if not isinstance(key, str) or key not in SETTINGS:
            result.ignored.append(shown(key, 60) if not isinstance(key, str) or not key.isprintable() else key[:60])
            continue
        if key not in PUSHABLE:
            result.refused[key] = "LinkAI may not change this setting; only the local config sets it"
            continue
        if key == "model" and value not in const.MODEL_LIST:
            result.refused[key] = f"not a model name this daemon knows (#model lists them), got {shown(value, 60)}"
            continue
        _apply(key, _from_console(key, value), result)
    mode = pushed.get("reply_voice_mode")
    if mode:
        if mode in VOICE_MODES:
            voice, always = VOICE_MODES[mode]
            _apply("voice_reply_voice", voice, result)
            _apply("always_reply_voice", always, result)
        else:
            result.refused["reply_voice_mode"] = f"must be one of {', '.join(VOICE_MODES)}, got {shown(mode, 60)}"
    if pushed.get("admin_password") is not None:
        _apply_admin_password(pushed["admin_password"], result)
    _apply_linkai_plugin(pushed, result)
    if "model" in result.applied:
        _reset_bots()
    for key, why in result.refused.items():
        logger.warning(f"[LinkAI] pushed value refused, {key} keeps its value: {why}")
    if result.ignored:
        logger.info(f"[LinkAI] pushed fields that are no setting here, ignored: {', '.join(sorted(result.ignored))}")
    if result.applied:
        logger.info(f"[LinkAI] pushed settings applied: {', '.join(result.applied)}")
    return result


def _from_console(key: str, value: Any) -> Any:
    if expected_types(key) == (bool,) and value in ("Y", "N"):
        return value == "Y"
    return value


def _apply(key: str, value: Any, result: PushResult) -> None:
    try:
        apply_setting(key, value, SOURCE)
    except ConfigError as e:
        # The check's message may quote the value: a secret-looking key's is not kept (it is logged).
        result.refused[key] = "not a valid value (not logged: the setting looks secret)" if is_secret_key(key) else str(e)
        return
    result.applied.append(key)


def _apply_admin_password(password: Any, result: PushResult) -> None:
    if not isinstance(password, str) or len(password.strip()) < MIN_ADMIN_PASSWORD:
        result.refused["admin_password"] = f"must be text of at least {MIN_ADMIN_PASSWORD} characters"
        return
    godcmd = pconf("Godcmd")
    if isinstance(godcmd, dict):
        godcmd["password"] = password
    else:
        # In memory only, as in the original: a pushed secret is not written to disk.
        write_plugin_config({"Godcmd": {"password": password, "admin_users": []}})
    _reload_plugin("GODCMD")
    result.applied.append("admin_password")


def _apply_linkai_plugin(pushed: dict, result: PushResult) -> None:
    """The linkai plugin's settings, when that plugin is installed (it is not bundled)."""
    plugin = plugin_config.get("linkai")
    if not isinstance(plugin, dict):
        return
    apps = pushed.get("group_app_map")
    if isinstance(apps, list):
        plugin["group_app_map"] = {
            item.get("group_name"): item.get("app_code") for item in apps if isinstance(item, dict)
        }
        result.applied.append("group_app_map")
        _reload_plugin("LINKAI")
    drawing = pushed.get("text_to_image")
    midjourney = plugin.get("midjourney")
    if isinstance(midjourney, dict) and drawing == "midjourney":
        midjourney["enabled"] = True
        midjourney["use_image_create_prefix"] = True
    elif isinstance(midjourney, dict) and drawing in ("dall-e-2", "dall-e-3"):
        midjourney["use_image_create_prefix"] = False


def _reset_bots() -> None:
    """A pushed model takes effect as one set by #model does: the routing is read again."""
    from bridge.bridge import Bridge

    Bridge().reset_bot()


def _reload_plugin(name: str) -> None:
    from plugins import PluginManager

    instance = PluginManager().instances.get(name)
    if instance is None:
        return
    try:
        instance.reload()
    except Exception as e:  # a plugin's bug must not end the LinkAI client
        logger.error(f"[LinkAI] plugin {name} could not take the pushed settings: {e}")
