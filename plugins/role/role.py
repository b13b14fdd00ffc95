# encoding:utf-8
"""Role: makes the bot play a preset or custom character in this chat.

Commands ("$" is ``plugin_trigger_prefix``):

* ``$角色 <name>`` / ``$role <name>``: play a preset of roles.json, with its Chinese
  (``descn``) or English (``description``) prompt; the name is matched loosely
  (exact, then contained, then the most similar title). Without a name, or with
  "help"/"帮助", shows the help.
* ``$设定扮演 <prompt>``: play a character described by your own prompt.
* ``$停止扮演``: back to the bot's usual self.
* ``$角色类型 <tag | 所有>``: lists the presets of a tag (by key or name), or all.

While a role is on, each message of the session is wrapped in the role's ``wrapper``
("%s" stands for the message) before the bot gets it.

The role text becomes the session's system prompt through
``bot.sessions.build_session(session_id, prompt)``, so it works with every bot whose
session manager has ``build_session`` and ``clear_session``: the OpenAI-style bots
(the prompt is the system message) and Dify. With Dify the prompt is sent as the
input variable ``system_prompt`` and a new Dify conversation starts whenever it
changes: the Dify app must define an input variable named ``system_prompt`` and use
it in its prompt / instructions, otherwise Dify ignores it.

roles.json: ``{"tags": {key: 名称}, "roles": [{"title", "description", "descn",
"wrapper", "remark", "tags": [key, ...]}]}``.
"""
from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from typing import Any

import plugins
from bridge.reply import ReplyType
from common.log import logger
from config import conf
from plugins.chat_bot import answer, chat_bot_type, chat_sessions, session_state, text_command
from plugins import Event, EventAction, EventContext, Plugin

ROLES_FILE = "roles.json"
MIN_SIMILARITY = 0.35
ALL_TAGS = ("所有", "all")


def wrap(wrapper: str, text: str) -> str:
    if "%s" not in wrapper:
        # The original raised TypeError here ("not all arguments converted") for a
        # wrapper without a placeholder; the message then follows the wrapper.
        return f"{wrapper}\n{text}" if wrapper else text
    try:
        return wrapper % text
    except (TypeError, ValueError):  # a stray "%" elsewhere in the wrapper
        return wrapper.replace("%s", text, 1)


@dataclass
class RolePlay:
    prompt: str
    wrapper: str = "%s"

    def start(self, sessions: Any, session_id: str) -> None:
        # OpenAI-style bots: the prompt becomes the system message and the history
        # restarts. Dify: the prompt is stored with the session and sent as the input
        # variable `system_prompt` from the next message on, in a new conversation; the
        # Dify app must define that input variable and use it in its prompt.
        sessions.build_session(session_id, system_prompt=self.prompt)

    def action(self, sessions: Any, session_id: str, text: str) -> str:
        # The session may have expired, been reset (#reset) or recreated by another bot
        # since the role was set: put the prompt back. build_session(sid) alone never
        # resets, so the history is kept while the prompt is in place.
        session = sessions.build_session(session_id)
        if getattr(session, "system_prompt", None) != self.prompt:
            sessions.build_session(session_id, system_prompt=self.prompt)
        return wrap(self.wrapper, text)


@plugins.register(
    name="Role",
    desire_priority=0,
    namecn="角色扮演",
    desc="Lets the bot play a preset or custom character",
    version="1.1",
    # Off until #enablep, as in the original.
    enabled=False,
    author="dify-on-wechat",
)
class Role(Plugin):
    def __init__(self):
        super().__init__()
        self.roles: dict[str, dict[str, Any]] = {}  # lower-case title -> role
        self.tags: dict[str, tuple[str, list[dict[str, Any]]]] = {}  # key -> (name, roles)
        path = os.path.join(getattr(self, "path", None) or os.path.dirname(os.path.abspath(__file__)), ROLES_FILE)
        try:
            with open(path, "r", encoding="utf-8-sig") as f:
                self._load(json.load(f))
        except FileNotFoundError:
            logger.warning(f"[Role] {path} not found; plugin stays off")
            return
        except (OSError, ValueError) as e:
            logger.error(f"[Role] cannot load {path}: {e}; plugin stays off")
            return
        if not self.roles:
            logger.warning(f"[Role] {path} has no usable role; plugin stays off")
            return
        # Role plays end with the bot session they shape.
        self.roleplays = session_state()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
        logger.info(f"[Role] inited with {len(self.roles)} role(s)")

    def _load(self, data: Any) -> None:
        if not isinstance(data, dict) or not isinstance(data.get("roles"), list):
            raise ValueError('expected {"tags": {...}, "roles": [...]}')
        tag_names = data.get("tags") if isinstance(data.get("tags"), dict) else {}
        tags: dict[str, tuple[str, list]] = {str(k): (str(v), []) for k, v in tag_names.items()}
        for role in data["roles"]:
            if not (isinstance(role, dict) and isinstance(role.get("title"), str) and role["title"].strip()
                    and (isinstance(role.get("descn"), str) or isinstance(role.get("description"), str))):
                logger.warning(f"[Role] a role needs a title and a description; skipped: {str(role)[:80]}")
                continue
            self.roles[role["title"].strip().lower()] = role
            for tag in role.get("tags") or []:
                tag = str(tag)
                if tag not in tags:
                    logger.warning(f"[Role] role {role['title']} has the undeclared tag {tag}")
                    tags[tag] = (tag, [])
                tags[tag][1].append(role)
        self.tags = {k: v for k, v in tags.items() if v[1]}

    # ------------------------------------------------------------------ lookup
    def get_role(self, name: str, find_closest: bool = True, min_sim: float = MIN_SIMILARITY) -> str | None:
        """The key (lower-case title) of the role called ``name``, or of the closest one."""
        name = name.strip().lower()
        if name in self.roles:
            return name
        if not find_closest or not name:
            return None
        contained = [title for title in self.roles if name in title]
        if len(contained) == 1:
            return contained[0]
        best, best_sim = None, min_sim
        for title in self.roles:
            sim = difflib.SequenceMatcher(None, name, title).ratio()
            if sim >= best_sim:
                best, best_sim = title, sim
        return best

    def _tag_list(self) -> str:
        return "，".join(name for name, _ in self.tags.values())

    def _list_roles(self, tag: str | None) -> str:
        if not tag:
            return f"请在命令后写上角色类型。\n角色类型有：{self._tag_list()}，或“所有”。"
        key = next((k for k, (name, _) in self.tags.items() if tag in (k, name)), None)
        if tag.lower() in ALL_TAGS:
            roles = list(self.roles.values())
        elif key is not None:
            roles = self.tags[key][1]
        else:
            return f"没有“{tag}”这个角色类型。\n角色类型有：{self._tag_list()}，或“所有”。"
        return "角色列表：\n" + "\n".join(f"{r['title']}: {r.get('remark', '')}" for r in roles)

    # ------------------------------------------------------------------ events
    def on_handle_context(self, e_context: EventContext) -> None:
        context = e_context["context"]
        parsed = text_command(context)
        if parsed is None:
            return
        command, arg, prefix = parsed
        content = context.content
        session_id = context.get("session_id")
        commands = {
            f"{prefix}停止扮演": "stop",
            f"{prefix}角色": "descn",
            f"{prefix}设定扮演": "custom",
            f"{prefix}角色类型": "tags",
        }
        kind = commands.get(command)
        if kind is None and command.lower() == f"{prefix}role":
            kind = "description"
        if kind is None:
            if session_id in self.roleplays:
                self._play(e_context, session_id, content)
            return

        if kind == "tags":
            answer(e_context, ReplyType.INFO, self._list_roles(arg))
            return
        if kind == "stop":
            if self.roleplays.pop(session_id, None) is not None:
                sessions = chat_sessions("Role", need_prompt=True)
                if sessions is not None:
                    sessions.clear_session(session_id)
            answer(e_context, ReplyType.INFO, "角色扮演已结束。")
            return
        english = kind == "description"
        sessions = chat_sessions("Role", need_prompt=True)
        if sessions is None:
            btype = chat_bot_type()
            answer(e_context, ReplyType.ERROR,
                        f"The current bot ({btype}) cannot play roles." if english else f"当前的机器人（{btype}）不支持角色扮演。")
            return
        if kind == "custom":
            if not arg:
                answer(e_context, ReplyType.ERROR, f"请在命令后写上角色设定，例如：{prefix}设定扮演 你是一位耐心的数学老师")
                return
            self._start(sessions, session_id, RolePlay(arg))
            answer(e_context, ReplyType.INFO, f"已设定自定义角色：\n{arg}")
        else:
            if not arg or arg.lower() in ("help", "帮助"):
                answer(e_context, ReplyType.INFO, self.get_help_text(verbose=True))
                return
            key = self.get_role(arg)
            if key is None:
                answer(e_context, ReplyType.ERROR,
                            f"No role called '{arg}'. Send {prefix}角色类型 所有 to list them." if english
                            else f"找不到角色“{arg}”。发送 {prefix}角色类型 所有 查看全部角色。")
                return
            role = self.roles[key]
            prompt = role.get(kind) or role.get("descn") or role.get("description")
            self._start(sessions, session_id, RolePlay(prompt, str(role.get("wrapper") or "%s")))
            title = role["title"]
            answer(e_context, ReplyType.INFO,
                        f"Now playing {title}:\n{prompt}" if english else f"已切换为预设角色 {title}：\n{prompt}")

    def _start(self, sessions: Any, session_id: str, roleplay: RolePlay) -> None:
        roleplay.start(sessions, session_id)
        self.roleplays[session_id] = roleplay

    def _play(self, e_context: EventContext, session_id: str, content: str) -> None:
        sessions = chat_sessions("Role", need_prompt=True)
        roleplay = self.roleplays.get(session_id)
        if sessions is None or roleplay is None:
            return
        context = e_context["context"]
        context.content = roleplay.action(sessions, session_id, content)
        context["generate_breaked_by"] = EventAction.BREAK
        e_context.action = EventAction.BREAK  # the bot answers the wrapped message

    def get_help_text(self, verbose: bool = False, **kwargs) -> str:
        if not verbose:
            return "让机器人扮演预设或自定义的角色。\n"
        p = conf().get("plugin_trigger_prefix", "$")
        return (
            "用法：\n"
            f"{p}角色 角色名：扮演一个预设角色（中文设定，名字可以不完整）。\n"
            f"{p}role 角色名：同上，使用英文设定。\n"
            f"{p}设定扮演 设定：按你写的设定扮演。\n"
            f"{p}停止扮演：结束角色扮演。\n"
            f"{p}角色类型 类型：列出某一类的预设角色，“所有”列出全部。\n"
            f"角色类型有：{self._tag_list()}。\n"
            f"例如：{p}角色 写作助理 / {p}角色类型 所有 / {p}停止扮演\n"
            "使用 Dify 时，角色设定以输入变量 system_prompt 发给 Dify 应用："
            "应用需要定义名为 system_prompt 的输入变量，并在提示词中引用它。\n"
        )
