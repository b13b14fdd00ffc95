# encoding:utf-8
# A chat game in the style of the ecosystem's group games: "$猜数字" starts a round for the
# session, then plain numbers are guesses until one is right. Game state is per session_id.
import plugins
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from plugins import *


@plugins.register(name="GuessGame", desire_priority=20, desc="guess the number", version="0.1", author="tests")
class GuessGame(Plugin):
    def __init__(self):
        super().__init__()
        self.secret = int((self.load_config() or {}).get("secret", 42))
        self.games = {}
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context

    def on_handle_context(self, e_context: EventContext):
        context = e_context["context"]
        if context.type != ContextType.TEXT:
            return
        session_id, content = context["session_id"], context.content.strip()
        if content == "$猜数字":
            self.games[session_id] = 0
            text = "猜一个 1 到 100 的数"
        elif session_id in self.games and content.isdigit():
            self.games[session_id] += 1
            guess = int(content)
            if guess == self.secret:
                text = f"猜对了！用了 {self.games.pop(session_id)} 次"
            else:
                text = "大了" if guess > self.secret else "小了"
        else:
            return
        e_context["reply"] = Reply(ReplyType.TEXT, text)
        e_context.action = EventAction.BREAK_PASS
