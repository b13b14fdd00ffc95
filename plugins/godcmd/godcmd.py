# encoding:utf-8
"""Godcmd: the "#" commands (help, auth, reset, model, plugin management ...).

Same commands, aliases, arguments, admin rules and answers as the original (see
reference/anchor-behaviour.md §3.3). Settings: ``password`` and ``admin_users``,
from the Godcmd entry of plugins/config.json or plugins/godcmd/config.json.

Differences from the original, on purpose (CHANGELOG.md lists them too):

* With no password, the temporary one is 12 letters and digits from ``secrets``
  (the original drew letters, digits and "!@#$%&?" with ``random``, which is not
  meant for secrets) and is shown on the console only, never written to run.log.
  Passwords are compared in constant time (as NFC-normalised UTF-8), and after 5
  wrong ones in 10 minutes a user must wait; after 10 wrong ones in 10 minutes from
  one source (``context["source"]``, the client address on the web channel), every
  user there must wait, so new user ids do not buy new guesses. The counters are
  bounded tables.
* Admin commands are refused in every group chat, whoever sends them, before the
  admin check (the original answered "no permission" there even to an admin).
* ``#reset`` / ``#resetall`` work for every chat bot whose ``sessions`` has
  ``clear_session`` / ``clear_all_session``, not only for the original's fixed list
  of bot types. With Dify the reset is durable: the
  conversation id is removed from the state store.
* The ``clear_memory_commands`` aliases of ``#reset`` are read at each command,
  so ``#reconf`` applies them; command words match in any letter case
  (phones capitalise the first letter).
* ``#reconf`` with a broken config.json answers an error naming the problem and
  keeps the running settings; when the new settings route to another bot, the
  Bridge is reset so they take effect.
* While stopped (``#stop``), a "#" text meant for a plugin (``plugin_trigger_prefix``
  "#") is swallowed too; the original let it reach the bot.
* "#" followed by spaces is an empty command, ``#setpri`` with a priority that is
  not a number and ``#model a b`` answer an error (the original crashed or
  answered "string"); a command that fails answers an error naming it.
* ``#model`` names ``bot_type`` when one is set (it decides the bot, not the model).
* ``#scanp`` also names the plugins that failed to start.
* ``#disablep godcmd`` is refused: it would leave no way to turn anything back on.
* ``#set_openai_api_key`` is refused in groups (the key would serve the whole group
  and be shown to it) and the key is echoed masked.
* ``#id`` in a group also gives the sender's own id (what ``admin_users`` needs), and
  ``#help`` lists ``#id`` on every channel but wx, whose ids change at each login
  (the original listed it on wxy and wechatmp only).
* Broken settings (bad JSON, wrong types) are logged and the plugin still starts
  with a temporary password, instead of failing and taking every command with it.
* Missing settings are not written as a default config.json into the plugin folder
  (which may be read-only); config.json.template shows the format.
"""
from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from typing import Any, Callable

import plugins
from bridge.bridge import Bridge, in_language, is_chinese, route
from bridge.context import ContextType
from bridge.reply import ReplyType
from common import const, memory
from common.attempt_limiter import AttemptLimiter
from common.log import CONSOLE_ONLY, is_debug, logger, set_debug
from common.masking import mask_secret
from common.secret_compare import same_secret
from config import conf, global_config, load_config
from plugins import Event, EventAction, EventContext, Plugin, PluginManager
from plugins.chat_bot import answer


@dataclass(frozen=True)
class Command:
    aliases: tuple[str, ...]  # the first one is shown in the help
    desc: str
    args: str = ""
    in_help: bool = True


# Open to everyone. Names, aliases, arguments and help texts are the original's;
# "helpp" is the help line of "#help <plugin>" (dispatched as "help").
COMMANDS: dict[str, Command] = {
    "help": Command(("help", "帮助"), "回复此帮助"),
    "helpp": Command(("help", "帮助"), "回复指定插件的详细帮助", "插件名"),
    "auth": Command(("auth", "认证"), "管理员认证", "口令", in_help=False),
    "model": Command(("model", "模型"), "查看和设置全局模型"),
    "set_openai_api_key": Command(("set_openai_api_key",), "设置你的OpenAI私有api_key", "api_key", in_help=False),
    "reset_openai_api_key": Command(("reset_openai_api_key",), "重置为默认的api_key", in_help=False),
    "set_gpt_model": Command(("set_gpt_model",), "设置你的私有模型", in_help=False),
    "reset_gpt_model": Command(("reset_gpt_model",), "重置你的私有模型", in_help=False),
    "gpt_model": Command(("gpt_model",), "查询你使用的模型", in_help=False),
    "id": Command(("id", "用户"), "获取用户id"),
    "reset": Command(("reset", "重置会话"), "重置会话"),
}

# Admins only, and only in private chats.
ADMIN_COMMANDS: dict[str, Command] = {
    "resume": Command(("resume", "恢复服务"), "恢复服务"),
    "stop": Command(("stop", "暂停服务"), "暂停服务"),
    "reconf": Command(("reconf", "重载配置"), "重载配置(不包含插件配置)"),
    "resetall": Command(("resetall", "重置所有会话"), "重置所有会话"),
    "scanp": Command(("scanp", "扫描插件"), "扫描插件目录是否有新插件"),
    "plist": Command(("plist", "插件"), "打印当前插件列表"),
    "setpri": Command(("setpri", "设置插件优先级"), "设置指定插件的优先级，越大越优先", "插件名 优先级"),
    "reloadp": Command(("reloadp", "重载插件"), "重载指定插件配置", "插件名"),
    "enablep": Command(("enablep", "启用插件"), "启用指定插件", "插件名"),
    "disablep": Command(("disablep", "禁用插件"), "禁用指定插件", "插件名"),
    "installp": Command(("installp", "安装插件"), "安装指定插件", "仓库地址或插件名"),
    "uninstallp": Command(("uninstallp", "卸载插件"), "卸载指定插件", "插件名"),
    "updatep": Command(("updatep", "更新插件"), "更新指定插件", "插件名"),
    "debug": Command(("debug", "调试模式", "DEBUG"), "开启机器调试日志"),
}

# Commands whose help line is not shown on channels where user ids change at every
# login (the original's itchat `wx`): an id read there cannot go into admin_users.
# `wx` is now Tencent's iLink bot, whose user ids (`<id>@im.wechat`) are stable, so none is.
_UNSTABLE_ID_CHANNELS: tuple[str, ...] = ()

TEMP_PASSWORD_LENGTH = 12
# No 0/O, 1/l/I: the password is read from a log and typed on a phone.
_TEMP_PASSWORD_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"
MAX_AUTH_FAILURES = 5
MAX_AUTH_FAILURES_PER_SOURCE = 10  # a shared address (an office) has several users
AUTH_FAILURE_WINDOW_SECONDS = 600
AUTH_TABLE_SIZE = 10000  # users and sources remembered; the longest quiet go first


@dataclass
class Request:
    """One command as godcmd sees it."""

    cmd: str  # the canonical command name
    args: list[str]
    user: Any  # context["receiver"]: the peer in private, the group id in a group
    session_id: Any
    isgroup: bool
    isadmin: bool
    e_context: EventContext

    @property
    def context(self):
        return self.e_context["context"]

    @property
    def channel(self):
        return self.e_context["channel"]


def _help_line(command: Command) -> str:
    # The original's layout: "#name args: desc", with a space before ":" when there are no args.
    return f"#{command.aliases[0]} {command.args}: {command.desc}\n"


def _enabled_instance(name: str) -> Any:
    manager = PluginManager()
    plugincls = manager.plugins.get(name)
    if plugincls is None or not plugincls.enabled:
        return None
    return manager.instances.get(name)


def get_help_text(isadmin: bool = False, isgroup: bool = False) -> str:
    text = "通用指令\n"
    hide_id = conf().get("channel_type", "") in _UNSTABLE_ID_CHANNELS
    for name, command in COMMANDS.items():
        if not command.in_help or (name == "id" and hide_id):
            continue
        text += _help_line(command)
    text += "\n可用插件"
    for name, plugincls in PluginManager().list_plugins().items():
        if not plugincls.enabled or getattr(plugincls, "hidden", False):
            continue
        instance = _enabled_instance(name)
        if instance is None:
            continue
        try:
            # Only verbose=False, as the original passes: older plugins take no other argument.
            plugin_help = str(instance.get_help_text(verbose=False) or "").strip()
        except Exception as e:
            logger.warning(f"[Godcmd] help of plugin {name} failed: {e}")
            continue
        text += f"\n{plugincls.namecn}:{plugin_help}"
    if isadmin:
        text += "\n\n管理员指令：\n"
        text += "".join(_help_line(command) for command in ADMIN_COMMANDS.values())
    return text


def _lookup(word: str, table: dict[str, Command], extra: dict[str, tuple[str, ...]] | None = None) -> str | None:
    lowered = word.lower()
    for name, command in table.items():
        if any(lowered == alias.lower() for alias in command.aliases):
            return name
    for name, aliases in (extra or {}).items():
        if any(lowered == alias.lower() for alias in aliases):
            return name
    return None


def _reset_aliases() -> tuple[str, ...]:
    """The ``clear_memory_commands`` entries ("#清除记忆") without their "#"."""
    aliases = []
    for entry in conf().get("clear_memory_commands") or []:
        if isinstance(entry, str) and entry.startswith("#") and entry[1:].strip():
            aliases.append(entry[1:].strip())
    return tuple(aliases)


def _cancelled_note(command: Any, dropped: Any) -> str:
    """The line telling how many queued messages a reset cancelled ("" for none), in the
    user's language: Chinese when the command or a cancelled message is."""
    if not isinstance(dropped, list) or not dropped:  # a channel of the original's kind returns None
        return ""
    count = len(dropped)
    chinese = is_chinese(command) or any(is_chinese(getattr(c, "content", None)) for c in dropped)
    zh = f"此前还在排队的 {count} 条消息已取消。"
    en = f"{count} earlier message{'s' if count != 1 else ''} still waiting {'were' if count != 1 else 'was'} cancelled."
    return "\n" + in_language(zh, en, chinese)


def _model_mapping(model: str) -> str:
    # The original maps the short name to the dated turbo model it supports.
    if model == const.GPT4_TURBO:
        return const.GPT4_TURBO_PREVIEW
    return model


@plugins.register(
    name="Godcmd",
    desire_priority=999,
    hidden=True,
    desc="“#”开头的指令：帮助、管理员认证、重置会话、切换模型和管理插件。请放在优先级首位，在配置中设置 password 后即可认证管理员",
    version="1.0",
    author="lanvent",
)
class Godcmd(Plugin):
    def __init__(self):
        super().__init__()
        settings = self._read_settings()
        self.password: str = settings["password"]
        if self.password:
            self.temp_password = None
        else:
            self.temp_password = "".join(secrets.choice(_TEMP_PASSWORD_ALPHABET) for _ in range(TEMP_PASSWORD_LENGTH))
            # On the console only: run.log is kept, rotated and shared; a password has no place there.
            logger.warning(
                f"[Godcmd] 未设置管理员口令，本次运行的临时口令是 {self.temp_password}（只显示在控制台）", extra=CONSOLE_ONLY
            )
            logger.info("[Godcmd] no password is set: a temporary one was printed on the console")
        # Pre-set admins need no #auth. Shared with other plugins through global_config,
        # as in the original (they read global_config["admin_users"]).
        self.admin_users: list = settings["admin_users"]
        global_config["admin_users"] = self.admin_users
        self.isrunning = True
        self._lock = threading.Lock()
        self._user_failures = AttemptLimiter(MAX_AUTH_FAILURES, AUTH_FAILURE_WINDOW_SECONDS, AUTH_TABLE_SIZE)
        self._source_failures = AttemptLimiter(MAX_AUTH_FAILURES_PER_SOURCE, AUTH_FAILURE_WINDOW_SECONDS, AUTH_TABLE_SIZE)
        self._user_commands: dict[str, Callable[[Request], tuple[bool, str]]] = {
            "help": self._help,
            "auth": self._auth,
            "model": self._model,
            "id": self._id,
            "reset": self._reset,
            "set_openai_api_key": self._set_openai_api_key,
            "reset_openai_api_key": self._reset_openai_api_key,
            "set_gpt_model": self._set_gpt_model,
            "reset_gpt_model": self._reset_gpt_model,
            "gpt_model": self._gpt_model,
        }
        self._admin_commands: dict[str, Callable[[Request], tuple[bool, str]]] = {
            "stop": self._stop,
            "resume": self._resume,
            "reconf": self._reconf,
            "resetall": self._resetall,
            "debug": self._debug,
            "plist": self._plist,
            "scanp": self._scanp,
            "setpri": self._setpri,
            "reloadp": self._reloadp,
            "enablep": self._enablep,
            "disablep": self._disablep,
            "installp": self._installp,
            "uninstallp": self._uninstallp,
            "updatep": self._updatep,
        }
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
        logger.info("[Godcmd] inited")

    # ------------------------------------------------------------------ settings

    def _read_settings(self) -> dict:
        try:
            settings = self.load_config()
        except Exception as e:  # bad JSON: commands must keep working
            logger.error(f"[Godcmd] settings cannot be read, running without password and admins: {e}")
            settings = {}
        else:
            if not settings:
                # The original wrote a default config.json into the plugin folder here; the
                # code folder may be read-only (Docker) and the template is shipped, so
                # this only says where the settings go.
                logger.info(
                    "[Godcmd] no settings: set password / admin_users in the Godcmd entry of "
                    "plugins/config.json or in plugins/godcmd/config.json (see config.json.template)"
                )
                settings = {}
        if not isinstance(settings, dict):
            logger.error("[Godcmd] settings must be an object with password and admin_users")
            settings = {}
        password = settings.get("password")
        password = "" if password is None else str(password)
        admins = settings.get("admin_users") or []
        if not isinstance(admins, list):
            logger.error("[Godcmd] admin_users must be a list of user ids; ignored")
            admins = []
        return {"password": password, "admin_users": [a if isinstance(a, str) else str(a) for a in admins]}

    def reload(self) -> None:
        """Take the password and admins of the settings again (LinkAI pushes a password this
        way). As in the original, an empty password keeps the running one; a password ends the
        temporary one."""
        settings = self._read_settings()
        with self._lock:
            if settings["password"]:
                self.password = settings["password"]
                self.temp_password = None
            # Added, not replaced: users who passed #auth since the start stay admins.
            self.admin_users.extend(a for a in settings["admin_users"] if a not in self.admin_users)
        logger.info("[Godcmd] settings reloaded")

    def get_help_text(self, isadmin: bool = False, isgroup: bool = False, **kwargs) -> str:
        return get_help_text(isadmin, isgroup)

    # ------------------------------------------------------------------ helpers

    def is_admin(self, user: Any) -> bool:
        if user is None:
            return False
        user = user if isinstance(user, str) else str(user)
        return user in self.admin_users or user in (global_config.get("admin_users") or [])

    def is_admin_in_group(self, context) -> bool:
        if not context.get("isgroup", False):
            return False
        return self.is_admin(getattr(context.get("msg"), "actual_user_id", None))

    def _add_admin(self, user: Any) -> None:
        with self._lock:
            self._user_failures.forget(user)
            if user not in self.admin_users:
                self.admin_users.append(user)
            shared = global_config.get("admin_users")
            if isinstance(shared, list) and shared is not self.admin_users and user not in shared:
                shared.append(user)

    @staticmethod
    def _answer(e_context: EventContext, ok: bool, text: str) -> None:
        answer(e_context, ReplyType.INFO if ok else ReplyType.ERROR, text)

    # ------------------------------------------------------------------ dispatch

    def on_handle_context(self, e_context: EventContext) -> None:
        context = e_context["context"]
        content = context.content
        if context.type != ContextType.TEXT or not isinstance(content, str) or not content.startswith("#"):
            if not self.isrunning:
                e_context.action = EventAction.BREAK_PASS  # paused: nothing is answered
            return
        words = content[1:].split()
        if not words:
            self._answer(e_context, False, "空指令，输入#help查看指令列表\n")
            return
        word, args = words[0], words[1:]
        name = _lookup(word, COMMANDS, {"reset": _reset_aliases()})
        admin_name = None if name else _lookup(word, ADMIN_COMMANDS)
        if name is None and admin_name is None:
            if conf().get("plugin_trigger_prefix") == "#":
                # A plugin's command: let the plugins have it (unless paused).
                if not self.isrunning:
                    e_context.action = EventAction.BREAK_PASS
                return
            self._answer(e_context, False, f"未知指令：{word}\n查看指令列表请输入#help \n")
            return

        user = context.get("receiver")
        isgroup = bool(context.get("isgroup", False))
        request = Request(
            cmd=name or admin_name,
            args=args,
            user=user,
            session_id=context.get("session_id"),
            isgroup=isgroup,
            isadmin=self.is_admin(user),
            e_context=e_context,
        )
        if admin_name is not None:
            if isgroup:
                ok, text = False, "群聊不可执行管理员指令"
            elif not request.isadmin:
                ok, text = False, "需要管理员权限才能执行该指令"
            else:
                ok, text = self._run(self._admin_commands[admin_name], request)
        else:
            ok, text = self._run(self._user_commands[name], request)
        logger.info(f"[Godcmd] #{request.cmd} by {user}: {'ok' if ok else 'refused/failed'}")
        self._answer(e_context, ok, text)

    @staticmethod
    def _run(handler: Callable[[Request], tuple[bool, str]], request: Request) -> tuple[bool, str]:
        try:
            return handler(request)
        except Exception as e:
            logger.exception(f"[Godcmd] #{request.cmd} failed")
            return False, f"执行 #{request.cmd} 时出错：{type(e).__name__}"

    # ------------------------------------------------------------ user commands

    def _help(self, request: Request) -> tuple[bool, str]:
        if not request.args:
            return True, get_help_text(request.isadmin, request.isgroup)
        query = request.args[0]
        for name, plugincls in PluginManager().list_plugins().items():
            if query.upper() != name and query.lower() != str(plugincls.namecn).lower():
                continue
            instance = _enabled_instance(name)
            if instance is None:
                break
            text = instance.get_help_text(isgroup=request.isgroup, isadmin=request.isadmin, verbose=True)
            return True, str(text or "")
        return False, "插件不存在或未启用"

    def _auth(self, request: Request) -> tuple[bool, str]:
        if request.isgroup:
            return False, "请勿在群聊中认证"
        if request.isadmin:
            return False, "管理员账号无需认证"
        if len(request.args) != 1:
            return False, "请提供口令"
        user = request.user
        source = request.context.get("source")
        sources = [source] if source else []
        wait = max(self._user_failures.wait([user]), self._source_failures.wait(sources))
        if wait > 0:
            return False, f"口令错误次数太多，请 {int(wait) // 60 + 1} 分钟后再试"
        given = request.args[0]
        if self.password and same_secret(given, self.password):
            self._add_admin(user)
            return True, "认证成功"
        if self.temp_password and same_secret(given, self.temp_password):
            self._add_admin(user)
            return True, "认证成功，请尽快设置口令"
        self._user_failures.fail([user])
        self._source_failures.fail(sources)
        logger.warning(f"[Godcmd] wrong password from {user}")
        return False, "认证失败"

    def _model(self, request: Request) -> tuple[bool, str]:
        if not request.isadmin and not self.is_admin_in_group(request.context):
            return False, "需要管理员权限执行"
        if not request.args:
            return True, f"当前模型为: {conf().get('model') or const.GPT35}"
        if len(request.args) != 1:
            return False, "用法：#model [模型名]"
        model = request.args[0]
        if model not in const.MODEL_LIST:
            return False, "模型名称不存在"
        conf()["model"] = _model_mapping(model)
        Bridge().reset_bot()
        text = f"模型设置为: {conf().get('model')}"
        if conf().get("bot_type"):
            text += f"\n注意：配置了 bot_type={conf().get('bot_type')}，回复仍由它决定"
        return True, text

    def _id(self, request: Request) -> tuple[bool, str]:
        if request.isgroup:
            sender = getattr(request.context.get("msg"), "actual_user_id", None)
            return True, f"群ID：{request.user}\n你的ID：{sender}"
        return True, str(request.user)

    def _chat_session_managers(self) -> tuple[str, list[Any], str | None]:
        """(bot type, the session managers of the chat bot, an error text)."""
        bridge = Bridge()
        bottype = bridge.get_bot_type("chat")
        try:
            bot = bridge.get_bot("chat")
        except Exception as e:
            logger.error(f"[Godcmd] chat bot {bottype} unavailable: {e}")
            return bottype, [], f"对话机器人 {bottype} 不可用，无法重置会话"
        managers = []
        for candidate in (bot, bridge.chat_bots.get(bottype)):
            sessions = getattr(candidate, "sessions", None)
            if sessions is not None and all(s is not sessions for s in managers):
                managers.append(sessions)
        return bottype, managers, None

    def _reset(self, request: Request) -> tuple[bool, str]:
        bottype, managers, error = self._chat_session_managers()
        if error:
            return False, error
        usable = [m for m in managers if callable(getattr(m, "clear_session", None))]
        if not usable:
            return False, "当前对话机器人不支持重置会话"
        for sessions in usable:
            sessions.clear_session(request.session_id)
        channel = request.channel
        dropped = None
        if channel is not None and hasattr(channel, "cancel_session"):
            # Only what was queued before this command; a question sent after it is answered.
            dropped = channel.cancel_session(request.session_id)
        # An image waiting to be asked about belongs to the old conversation.
        memory.USER_IMAGE_CACHE.pop(request.session_id, None)
        return True, "会话已重置" + _cancelled_note(request.context.content, dropped)

    def _set_openai_api_key(self, request: Request) -> tuple[bool, str]:
        if request.isgroup:
            return False, "请私聊设置 api_key，不要在群里发送"
        if len(request.args) != 1:
            return False, "请提供一个api_key"
        conf().get_user_data(request.user)["openai_api_key"] = request.args[0]
        return True, f"你的OpenAI私有api_key已设置为{mask_secret(request.args[0])}"

    def _reset_openai_api_key(self, request: Request) -> tuple[bool, str]:
        user_data = conf().get_user_data(request.user)
        if "openai_api_key" not in user_data:
            return False, "你没有设置私有api_key"
        user_data.pop("openai_api_key")
        return True, "你的OpenAI私有api_key已清除"

    def _set_gpt_model(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 1:
            return False, "请提供一个GPT模型"
        conf().get_user_data(request.user)["gpt_model"] = request.args[0]
        return True, f"你的GPT模型已设置为{request.args[0]}"

    def _reset_gpt_model(self, request: Request) -> tuple[bool, str]:
        user_data = conf().get_user_data(request.user)
        if "gpt_model" not in user_data:
            return False, "你没有设置私有GPT模型"
        user_data.pop("gpt_model")
        return True, "你的GPT模型已重置"

    def _gpt_model(self, request: Request) -> tuple[bool, str]:
        user_data = conf().get_user_data(request.user)
        model = user_data.get("gpt_model") or conf().get("model") or const.GPT35
        return True, f"你的GPT模型为{model}"

    # ----------------------------------------------------------- admin commands

    def _stop(self, request: Request) -> tuple[bool, str]:
        self.isrunning = False
        return True, "服务已暂停"

    def _resume(self, request: Request) -> tuple[bool, str]:
        self.isrunning = True
        return True, "服务已恢复"

    def _reconf(self, request: Request) -> tuple[bool, str]:
        try:
            load_config()
        except Exception as e:
            logger.error(f"[Godcmd] #reconf failed, the running settings are kept: {e}")
            return False, f"配置没有重载，仍在使用原来的配置。原因：{e}"
        if route() != Bridge().btype:
            Bridge().reset_bot()
        return True, "配置已重载"

    def _resetall(self, request: Request) -> tuple[bool, str]:
        bottype, managers, error = self._chat_session_managers()
        if error:
            return False, error
        usable = [m for m in managers if callable(getattr(m, "clear_all_session", None))]
        if not usable:
            return False, "当前对话机器人不支持重置会话"
        channel = request.channel
        dropped = None
        if channel is not None and hasattr(channel, "cancel_all_session"):
            dropped = channel.cancel_all_session()
        for sessions in usable:
            sessions.clear_all_session()
        memory.USER_IMAGE_CACHE.clear()
        return True, "重置所有会话成功" + _cancelled_note(request.context.content, dropped)

    def _debug(self, request: Request) -> tuple[bool, str]:
        if is_debug():
            set_debug(False)
            return True, "DEBUG模式已关闭"
        set_debug(True)
        return True, "DEBUG模式已开启"

    def _plist(self, request: Request) -> tuple[bool, str]:
        text = "插件列表：\n"
        for plugincls in PluginManager().list_plugins().values():
            state = "已启用" if plugincls.enabled else "未启用"
            text += f"{plugincls.name}_v{plugincls.version} {plugincls.priority} - {state}\n"
        return True, text

    def _scanp(self, request: Request) -> tuple[bool, str]:
        manager = PluginManager()
        new_plugins = manager.scan_plugins()
        failed = manager.activate_plugins()
        text = "插件扫描完成"
        if new_plugins:
            text += "\n发现新插件：\n" + "\n".join(f"{p.name}_v{p.version}" for p in new_plugins)
        else:
            text += ", 未发现新插件"
        if failed:
            text += "\n启动失败（已停用，详见日志）：" + ", ".join(failed)
        return True, text

    def _setpri(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 2:
            return False, "请提供插件名和优先级"
        name, raw = request.args
        try:
            priority = int(raw)
        except ValueError:
            return False, "优先级必须是整数"
        if not PluginManager().set_plugin_priority(name, priority):
            return False, "插件不存在"
        return True, f"插件{name}优先级已设置为{raw}"

    def _reloadp(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 1:
            return False, "请提供插件名"
        if not PluginManager().reload_plugin(request.args[0]):
            return False, "插件不存在"
        return True, "插件配置已重载"

    def _enablep(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 1:
            return False, "请提供插件名"
        return PluginManager().enable_plugin(request.args[0])

    def _disablep(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 1:
            return False, "请提供插件名"
        if request.args[0].upper() == self.name.upper():
            return False, "不能禁用 Godcmd，否则所有指令都会失效"
        if not PluginManager().disable_plugin(request.args[0]):
            return False, "插件不存在"
        return True, "插件已禁用"

    def _installp(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 1:
            return False, "请提供插件名或.git结尾的仓库地址"
        return PluginManager().install_plugin(request.args[0])

    def _uninstallp(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 1:
            return False, "请提供插件名"
        return PluginManager().uninstall_plugin(request.args[0])

    def _updatep(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 1:
            return False, "请提供插件名"
        return PluginManager().update_plugin(request.args[0])
