# encoding:utf-8
"""Godcmd: the "#" commands (help, auth, reset, model, plugin management ...).

Same commands, aliases, arguments and admin rules as the original (see
reference/anchor-behaviour.md §3.3). Settings: ``password`` and ``admin_users``,
from the Godcmd entry of plugins/config.json or plugins/godcmd/config.json.

Differences from the original, on purpose:

* With no password, the temporary one is 12 random letters and digits from
  ``secrets`` (the original: 4 distinct digits, 5040 guesses). Passwords are
  compared in constant time, and after 5 wrong ones in 10 minutes a user must wait.
* Admin commands are refused in every group chat, whoever sends them, before the
  admin check (the original answered "no permission" or "not in groups" depending
  on who asked).
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
* ``#setpri`` with a priority that is not a number, ``#model a b`` and similar
  answer a usage error (the original crashed or answered "string").
* ``#disablep godcmd`` is refused: it would leave no way to turn anything back on.
* ``#set_openai_api_key`` is refused in groups (the key would serve the whole group
  and be shown to it) and the key is echoed masked.
* ``#id`` in a group also gives the sender's own id (what ``admin_users`` needs).
* Broken settings (bad JSON, wrong types) are logged and the plugin still starts
  with a temporary password, instead of failing and taking every command with it.
* Missing settings are not written as a default config.json into the plugin folder
  (which may be read-only); config.json.template shows the format.
"""
from __future__ import annotations

import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import plugins
from bridge.bridge import Bridge, in_language, is_chinese, route
from bridge.context import ContextType
from bridge.reply import ReplyType
from common import const, memory
from common.log import is_debug, logger, set_debug
from common.masking import mask_secret
from config import conf, global_config, load_config
from plugins import Event, EventAction, EventContext, Plugin, PluginManager
from plugins.chat_bot import answer


@dataclass(frozen=True)
class Command:
    aliases: tuple[str, ...]  # the first one is shown in the help
    desc: str
    args: str = ""
    in_help: bool = True


# Open to everyone. Names, aliases and arguments are the original's.
COMMANDS: dict[str, Command] = {
    "help": Command(("help", "帮助"), "查看指令和插件的帮助；带插件名时看该插件的详细说明", "[插件名]"),
    "auth": Command(("auth", "认证"), "用口令认证为管理员（仅限私聊）", "口令", in_help=False),
    "model": Command(("model", "模型"), "查看或切换全局模型（管理员）", "[模型名]"),
    "set_openai_api_key": Command(("set_openai_api_key",), "设置你自己的 OpenAI api_key", "api_key", in_help=False),
    "reset_openai_api_key": Command(("reset_openai_api_key",), "改回默认的 api_key", in_help=False),
    "set_gpt_model": Command(("set_gpt_model",), "设置你自己使用的模型", "模型名", in_help=False),
    "reset_gpt_model": Command(("reset_gpt_model",), "改回默认模型", in_help=False),
    "gpt_model": Command(("gpt_model",), "查看你正在使用的模型", in_help=False),
    "id": Command(("id", "用户"), "查看你的用户ID"),
    "reset": Command(("reset", "重置会话"), "清空当前会话的上下文，开始新的对话"),
}

# Admins only, and only in private chats.
ADMIN_COMMANDS: dict[str, Command] = {
    "resume": Command(("resume", "恢复服务"), "恢复回复消息"),
    "stop": Command(("stop", "暂停服务"), "暂停回复消息（指令仍可用）"),
    "reconf": Command(("reconf", "重载配置"), "重新读取 config.json（不含插件配置）"),
    "resetall": Command(("resetall", "重置所有会话"), "清空所有人的会话"),
    "scanp": Command(("scanp", "扫描插件"), "扫描插件目录，加载新插件"),
    "plist": Command(("plist", "插件"), "列出所有插件"),
    "setpri": Command(("setpri", "设置插件优先级"), "设置插件的优先级，数字越大越先处理", "插件名 优先级"),
    "reloadp": Command(("reloadp", "重载插件"), "重新加载插件的配置", "插件名"),
    "enablep": Command(("enablep", "启用插件"), "启用插件", "插件名"),
    "disablep": Command(("disablep", "禁用插件"), "禁用插件", "插件名"),
    "installp": Command(("installp", "安装插件"), "从 git 仓库安装插件", "仓库地址或插件名"),
    "uninstallp": Command(("uninstallp", "卸载插件"), "卸载插件并删除其文件夹", "插件名"),
    "updatep": Command(("updatep", "更新插件"), "从 git 仓库更新插件", "插件名"),
    "debug": Command(("debug", "调试模式", "DEBUG"), "开启或关闭调试日志"),
}

# Commands whose help line is not shown on channels where user ids change at every
# login (itchat): an id read there cannot go into admin_users.
_UNSTABLE_ID_CHANNELS = ("wx",)

TEMP_PASSWORD_LENGTH = 12
# No 0/O, 1/l/I: the password is read from a log and typed on a phone.
_TEMP_PASSWORD_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnpqrstuvwxyz23456789"
MAX_AUTH_FAILURES = 5
AUTH_FAILURE_WINDOW_SECONDS = 600


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


def _usage(name: str, table: dict[str, Command]) -> str:
    command = table[name]
    return f"用法：#{command.aliases[0]} {command.args}".rstrip()


def _help_line(command: Command) -> str:
    args = f" {command.args}" if command.args else ""
    return f"#{command.aliases[0]}{args}：{command.desc}"


def _enabled_instance(name: str) -> Any:
    manager = PluginManager()
    plugincls = manager.plugins.get(name)
    if plugincls is None or not plugincls.enabled:
        return None
    return manager.instances.get(name)


def get_help_text(isadmin: bool = False, isgroup: bool = False) -> str:
    lines = ["通用指令："]
    hide_id = conf().get("channel_type", "") in _UNSTABLE_ID_CHANNELS
    for name, command in COMMANDS.items():
        if not command.in_help or (name == "id" and hide_id):
            continue
        lines.append(_help_line(command))
    plugin_lines = []
    for name, plugincls in PluginManager().list_plugins().items():
        if not plugincls.enabled or getattr(plugincls, "hidden", False):
            continue
        instance = _enabled_instance(name)
        if instance is None:
            continue
        try:
            text = str(instance.get_help_text(verbose=False, isadmin=isadmin, isgroup=isgroup) or "").strip()
        except Exception as e:
            logger.warning(f"[Godcmd] help of plugin {name} failed: {e}")
            continue
        plugin_lines.append(f"{plugincls.namecn}：{text}")
    if plugin_lines:
        lines.append("")
        lines.append("可用插件：")
        lines.extend(plugin_lines)
    if isadmin:
        lines.append("")
        lines.append("管理员指令（仅限私聊）：")
        lines.extend(_help_line(command) for command in ADMIN_COMMANDS.values())
    return "\n".join(lines)


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
            logger.info(f"[Godcmd] 未设置管理员口令，本次运行的临时口令是 {self.temp_password}")
        # Pre-set admins need no #auth. Shared with other plugins through global_config,
        # as in the original (they read global_config["admin_users"]).
        self.admin_users: list = settings["admin_users"]
        global_config["admin_users"] = self.admin_users
        self.isrunning = True
        self._lock = threading.Lock()
        self._auth_failures: dict[Any, list[float]] = {}
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
            self._auth_failures.pop(user, None)
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
            self._answer(e_context, False, "指令是空的，发送 #help 查看可用指令")
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
            self._answer(e_context, False, f"没有“{word}”这个指令，发送 #help 查看可用指令")
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
                ok, text = False, "群聊中不能执行管理员指令，请私聊"
            elif not request.isadmin:
                ok, text = False, "需要管理员权限，请先私聊发送 #auth 口令 认证"
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
            return True, str(text or "").strip() or "该插件没有帮助信息"
        return False, f"插件“{query}”不存在或未启用"

    def _auth(self, request: Request) -> tuple[bool, str]:
        if request.isgroup:
            return False, "请私聊机器人进行认证，不要在群里发送口令"
        if request.isadmin:
            return False, "你已经是管理员了"
        if len(request.args) != 1:
            return False, _usage("auth", COMMANDS)
        user = request.user
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._auth_failures.get(user, []) if now - t < AUTH_FAILURE_WINDOW_SECONDS]
            self._auth_failures[user] = recent
            if len(recent) >= MAX_AUTH_FAILURES:
                wait = int(AUTH_FAILURE_WINDOW_SECONDS - (now - recent[0])) // 60 + 1
                return False, f"口令错误次数太多，请 {wait} 分钟后再试"
        given = request.args[0].encode("utf-8")
        if self.password and hmac.compare_digest(given, self.password.encode("utf-8")):
            self._add_admin(user)
            return True, "认证成功，你现在是管理员"
        if self.temp_password and hmac.compare_digest(given, self.temp_password.encode("utf-8")):
            self._add_admin(user)
            return True, "认证成功（临时口令，重启后失效）。请尽快在 Godcmd 配置中设置 password"
        with self._lock:
            self._auth_failures.setdefault(user, []).append(now)
        logger.warning(f"[Godcmd] wrong password from {user}")
        return False, "口令错误"

    def _model(self, request: Request) -> tuple[bool, str]:
        if not request.isadmin and not self.is_admin_in_group(request.context):
            return False, "需要管理员权限"
        if not request.args:
            return True, f"当前模型：{conf().get('model') or const.GPT35}"
        if len(request.args) != 1:
            return False, _usage("model", COMMANDS)
        model = request.args[0]
        if model not in const.MODEL_LIST:
            return False, f"没有“{model}”这个模型。可选：{', '.join(const.MODEL_LIST)}"
        conf()["model"] = _model_mapping(model)
        Bridge().reset_bot()
        text = f"全局模型已切换为：{conf().get('model')}"
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
            return False, f"当前对话机器人（{bottype}）不支持重置会话"
        for sessions in usable:
            sessions.clear_session(request.session_id)
        channel = request.channel
        dropped = None
        if channel is not None and hasattr(channel, "cancel_session"):
            # Only what was queued before this command; a question sent after it is answered.
            dropped = channel.cancel_session(request.session_id)
        # An image waiting to be asked about belongs to the old conversation.
        memory.USER_IMAGE_CACHE.pop(request.session_id, None)
        return True, "会话已重置，我们重新开始吧" + _cancelled_note(request.context.content, dropped)

    def _set_openai_api_key(self, request: Request) -> tuple[bool, str]:
        if request.isgroup:
            return False, "请私聊设置 api_key，不要在群里发送"
        if len(request.args) != 1:
            return False, _usage("set_openai_api_key", COMMANDS)
        conf().get_user_data(request.user)["openai_api_key"] = request.args[0]
        return True, f"你的 OpenAI api_key 已设置为 {mask_secret(request.args[0])}"

    def _reset_openai_api_key(self, request: Request) -> tuple[bool, str]:
        user_data = conf().get_user_data(request.user)
        if "openai_api_key" not in user_data:
            return False, "你没有设置过自己的 api_key"
        user_data.pop("openai_api_key")
        return True, "你的 api_key 已清除，改用默认的"

    def _set_gpt_model(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 1:
            return False, _usage("set_gpt_model", COMMANDS)
        conf().get_user_data(request.user)["gpt_model"] = request.args[0]
        return True, f"你的模型已设置为 {request.args[0]}"

    def _reset_gpt_model(self, request: Request) -> tuple[bool, str]:
        user_data = conf().get_user_data(request.user)
        if "gpt_model" not in user_data:
            return False, "你没有设置过自己的模型"
        user_data.pop("gpt_model")
        return True, "你的模型已改回默认"

    def _gpt_model(self, request: Request) -> tuple[bool, str]:
        user_data = conf().get_user_data(request.user)
        model = user_data.get("gpt_model") or conf().get("model") or const.GPT35
        return True, f"你正在使用的模型：{model}"

    # ----------------------------------------------------------- admin commands

    def _stop(self, request: Request) -> tuple[bool, str]:
        self.isrunning = False
        return True, "服务已暂停，发送 #resume 恢复"

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
            return False, f"当前对话机器人（{bottype}）不支持重置会话"
        channel = request.channel
        dropped = None
        if channel is not None and hasattr(channel, "cancel_all_session"):
            dropped = channel.cancel_all_session()
        for sessions in usable:
            sessions.clear_all_session()
        memory.USER_IMAGE_CACHE.clear()
        return True, "所有会话已重置" + _cancelled_note(request.context.content, dropped)

    def _debug(self, request: Request) -> tuple[bool, str]:
        if is_debug():
            set_debug(False)
            return True, "调试日志已关闭"
        set_debug(True)
        return True, "调试日志已开启"

    def _plist(self, request: Request) -> tuple[bool, str]:
        lines = ["插件列表："]
        for plugincls in PluginManager().list_plugins().values():
            state = "已启用" if plugincls.enabled else "未启用"
            lines.append(f"{plugincls.name}_v{plugincls.version} 优先级 {plugincls.priority}：{state}")
        return True, "\n".join(lines)

    def _scanp(self, request: Request) -> tuple[bool, str]:
        manager = PluginManager()
        new_plugins = manager.scan_plugins()
        failed = manager.activate_plugins()
        text = "插件扫描完成"
        if new_plugins:
            text += "，发现新插件：\n" + "\n".join(f"{p.name}_v{p.version}" for p in new_plugins)
        else:
            text += "，没有发现新插件"
        if failed:
            text += "\n启动失败（已停用，详见日志）：" + ", ".join(failed)
        return True, text

    def _setpri(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 2:
            return False, _usage("setpri", ADMIN_COMMANDS)
        name, raw = request.args
        try:
            priority = int(raw)
        except ValueError:
            return False, "优先级必须是整数"
        if not PluginManager().set_plugin_priority(name, priority):
            return False, f"插件“{name}”不存在"
        return True, f"插件 {name} 的优先级已设为 {priority}"

    def _reloadp(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 1:
            return False, _usage("reloadp", ADMIN_COMMANDS)
        if not PluginManager().reload_plugin(request.args[0]):
            return False, f"插件“{request.args[0]}”不存在或未启用"
        return True, f"插件 {request.args[0]} 已重新加载"

    def _enablep(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 1:
            return False, _usage("enablep", ADMIN_COMMANDS)
        return PluginManager().enable_plugin(request.args[0])

    def _disablep(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 1:
            return False, _usage("disablep", ADMIN_COMMANDS)
        if request.args[0].upper() == self.name.upper():
            return False, "不能禁用 Godcmd，否则所有指令都会失效"
        if not PluginManager().disable_plugin(request.args[0]):
            return False, f"插件“{request.args[0]}”不存在"
        return True, f"插件 {request.args[0]} 已禁用"

    def _installp(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 1:
            return False, _usage("installp", ADMIN_COMMANDS) + "（https/ssh 的 git 地址，或 source.json 中的插件名）"
        return PluginManager().install_plugin(request.args[0])

    def _uninstallp(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 1:
            return False, _usage("uninstallp", ADMIN_COMMANDS)
        return PluginManager().uninstall_plugin(request.args[0])

    def _updatep(self, request: Request) -> tuple[bool, str]:
        if len(request.args) != 1:
            return False, _usage("updatep", ADMIN_COMMANDS)
        return PluginManager().update_plugin(request.args[0])
