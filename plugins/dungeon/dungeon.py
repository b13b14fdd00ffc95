# encoding:utf-8
"""Dungeon: a text adventure told by the bot.

``$开始冒险 <story>`` starts (or restarts) an adventure in this session with that
opening (a default one without), ``$停止冒险`` ends it ("$" is
``plugin_trigger_prefix``). While it runs, every message of the session is a player
action: the plugin wraps it in a storytelling prompt (the first one also carries the
opening) and the bot continues the story.

The story lives in the bot's conversation history, so the bot must keep one per
session and be able to clear it: the OpenAI-style bots and Dify chat apps
(``bot.sessions.clear_session``). Starting and stopping clear the session, so an
adventure never mixes with earlier chat.
"""
from __future__ import annotations

from dataclasses import dataclass

import plugins
from bridge.reply import ReplyType
from common.log import logger
from config import conf
from plugins.chat_bot import answer, chat_bot_type, chat_sessions, session_state, text_command
from plugins import Event, EventAction, EventContext, Plugin

DEFAULT_STORY = (
    "你在一座废弃的古堡里醒来，只记得自己是来寻找失踪的妹妹的。"
    "走廊尽头的烛光忽明忽暗，脚下的木地板吱呀作响，你握紧了手里的旧提灯。"
)

FIRST_PROMPT = (
    "我们来玩一个文字冒险游戏，由你来讲故事。节奏放慢一些，细致描写人物的心情和周围的环境，"
    "每次只写四到六句话，然后停下来等我行动。\n故事的开头是：{story}\n我的行动：{action}"
)
NEXT_PROMPT = "继续讲这个冒险故事，这次只写四到六句话，只讲接下来几分钟里发生的事。\n我的行动：{action}"


@dataclass
class StoryTeller:
    story: str
    first_interact: bool = True

    def action(self, user_action: str) -> str:
        user_action = user_action.strip()
        # An action reads as a finished sentence; the original indexed [-1] and failed on "".
        if user_action and user_action[-1] not in "。！？.!?":
            user_action += "。"
        if self.first_interact:
            self.first_interact = False
            return FIRST_PROMPT.format(story=self.story, action=user_action)
        return NEXT_PROMPT.format(action=user_action)


@plugins.register(
    name="Dungeon",
    desire_priority=0,
    namecn="文字冒险",
    desc="A text adventure game told by the bot",
    version="1.1",
    # Off until #enablep, as in the original.
    enabled=False,
    author="dify-on-wechat",
)
class Dungeon(Plugin):
    def __init__(self):
        super().__init__()
        # A game ends with the bot session that holds its story.
        self.games = session_state()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
        logger.info("[Dungeon] inited")

    def on_handle_context(self, e_context: EventContext) -> None:
        context = e_context["context"]
        parsed = text_command(context)
        if parsed is None:
            return
        command, arg, prefix = parsed
        session_id = context.get("session_id")
        if command == f"{prefix}停止冒险":
            game = self.games.pop(session_id, None)
            if game is not None:
                sessions = chat_sessions("Dungeon")
                if sessions is not None:
                    sessions.clear_session(session_id)
            # The original said nothing without a game, so Finish answered
            # "unknown plugin command" to a command that exists.
            answer(e_context, ReplyType.INFO, "冒险结束！" if game is not None else "现在没有进行中的冒险。")
            return
        if command == f"{prefix}开始冒险":
            sessions = chat_sessions("Dungeon")
            if sessions is None:
                answer(e_context, ReplyType.ERROR,
                       f"当前的机器人（{chat_bot_type()}）不能讲冒险故事，请换用 OpenAI 类模型或 Dify 对话应用。")
                return
            story = arg or DEFAULT_STORY
            sessions.clear_session(session_id)
            self.games[session_id] = StoryTeller(story)
            answer(e_context, ReplyType.INFO, f"冒险开始！接下来你说的每句话都是你的行动，故事会随之展开。\n故事背景：{story}")
            return
        game = self.games.get(session_id)
        if game is None:
            return
        context.content = game.action(context.content)
        e_context.action = EventAction.BREAK  # the bot tells the next part

    def get_help_text(self, **kwargs) -> str:
        p = conf().get("plugin_trigger_prefix", "$")
        return (
            f"发送“{p}开始冒险 故事背景”开始一场文字冒险（不写背景则用默认的），"
            f"之后你的每条消息都是你的行动；发送“{p}停止冒险”结束。"
        )
