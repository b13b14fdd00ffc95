"""A ChatChannel whose platform is a list: what it 'sends' is recorded.

It is the real pipeline (rules, queues, plugins, Bridge); only the platform
API at the very end is replaced, the way a platform simulator would be.
"""
from __future__ import annotations

import threading
import time

from bridge.context import ContextType
from bridge.reply import ReplyType
from channel.chat_channel import ChatChannel
from channel.chat_message import ChatMessage


def make_msg(content, *, group=None, sender="alice", sender_name="Alice", at=False, at_list=None, msg_id=None, bot_id="bot-id", ctype=ContextType.TEXT):
    """A ChatMessage as a platform adapter would build it."""
    msg = ChatMessage(None)
    msg.msg_id = msg_id or f"m-{time.monotonic_ns()}"
    msg.create_time = int(time.time())
    msg.ctype = ctype
    msg.content = content
    msg.is_at = at
    msg.at_list = at_list or []
    msg.to_user_id = bot_id
    msg.to_user_nickname = "Bot"
    if group:
        group_id, group_name = group
        msg.is_group = True
        msg.from_user_id = group_id
        msg.from_user_nickname = group_name
        msg.other_user_id = group_id
        msg.other_user_nickname = group_name
        msg.actual_user_id = sender
        msg.actual_user_nickname = sender_name
    else:
        msg.from_user_id = sender
        msg.from_user_nickname = sender_name
        msg.other_user_id = sender
        msg.other_user_nickname = sender_name
    return msg


class RecordingChannel(ChatChannel):
    NOT_SUPPORT_REPLYTYPE = [ReplyType.VOICE]
    SEND_RETRY_DELAYS = (0.01, 0.02)

    def __init__(self, fail_sends: int = 0):
        super().__init__()
        self.name = "Bot"
        self.user_id = "bot-id"
        self.sent = []  # (receiver, ReplyType, content)
        self._lock = threading.Lock()
        self.fail_sends = fail_sends
        self.send_attempts = 0

    def send(self, reply, context):
        with self._lock:
            self.send_attempts += 1
            if self.fail_sends > 0:
                self.fail_sends -= 1
                raise ConnectionError("platform said no")
            self.sent.append((context.get("receiver"), reply.type, reply.content))

    def receive(self, msg):
        """What an adapter does with a platform message."""
        context = self._compose_context(
            msg.ctype, msg.content, isgroup=msg.is_group, msg=msg
        )
        if context is not None:
            self.produce(context)
        return context


def talk_at_once(channel: "RecordingChannel", sessions: int, per_session: int) -> None:
    """`sessions` users, each on its own thread, send `per_session` questions "u<n> q<i>" in order."""

    def user(n):
        for i in range(per_session):
            channel.receive(make_msg(f"u{n} q{i}", sender=f"user-{n}", sender_name=f"U{n}"))

    threads = [threading.Thread(target=user, args=(n,)) for n in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def assert_echoed_in_order(channel: "RecordingChannel", sessions: int, per_session: int) -> None:
    """After talk_at_once with an echoing bot: every user got a TEXT echo of each question,
    in the order asked."""
    by_user: dict[str, list[str]] = {}
    for receiver, rtype, content in channel.sent:
        assert rtype == ReplyType.TEXT
        by_user.setdefault(receiver, []).append(content)
    assert len(by_user) == sessions
    for n in range(sessions):
        assert by_user[f"user-{n}"] == [f"echo: u{n} q{i}" for i in range(per_session)]
