"""The pipeline between a platform adapter and the bots (DESIGN §3).

ChatMessage -> _compose_context (the original's rules, in its order)
  -> ON_RECEIVE_MESSAGE -> per-session queue -> worker -> ON_HANDLE_CONTEXT
  -> Bridge -> Reply -> ON_DECORATE_REPLY -> decorate -> ON_SEND_REPLY -> send
"""
from __future__ import annotations

import enum
import os
import re
import threading
import time
from typing import Any

from bridge.bridge import is_chinese
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from channel import inbox_record
from channel.channel import Channel
from channel.chat_message import ChatMessage
from channel.session_dispatcher import Admission, SessionDispatcher
from common import memory
from common.log import logger
from common.masking import mask_command
from common.store import DedupKey
from common.text import cut_text, safe_text
from common.tmp_dir import UNWRITABLE_TEXT, is_tmp_write_error
from config import conf
from plugins import Event, EventContext, PluginManager

# How long a handled message id is remembered. Platforms retry within minutes
# (WeChat: three tries in 15 s; Feishu and DingTalk redeliver after reconnects).
DEDUP_TTL_SECONDS = 6 * 3600  # the default of the dedup_ttl setting

# Refusals name the message they refuse ({quote}: its start): one arrives at once, ahead of the
# answers to earlier messages still waiting, and the user must know which one to send again.
BUSY_TEXT_ZH = "消息太多，正在处理中，这条没有收到：“{quote}”，请稍后再发"
BUSY_TEXT_EN = "Too many messages are waiting, so this one was not taken: “{quote}”. Please send it again in a moment."
NOT_STORED_TEXT_ZH = "消息没能保存，这条没有收到：“{quote}”，请稍后再发"
NOT_STORED_TEXT_EN = "Your message could not be saved, so it was not taken: “{quote}”. Please send it again in a moment."
# Characters of the refused message quoted in a refusal.
REFUSAL_QUOTE_CHARS = 40
# Sent instead of a second answer to a message whose answer was cut off by a crash after its
# first part went out: answering again would repeat that part (a bot's second answer is not
# the first one either), and saying nothing would leave the user with half an answer.
INTERRUPTED_TEXT_ZH = "上一条消息的回答因程序重启而中断：“{quote}”，如需完整回答请再发一次"
INTERRUPTED_TEXT_EN = "The answer to your message was cut off by a restart: “{quote}”. Send it again for the whole answer."


def refusal_text(template_zh: str, template_en: str, content: Any, ctype: ContextType = ContextType.TEXT) -> str:
    """A refusal naming the message: in Chinese when the message is, its start on one line.
    A picture, voice or file is named by its kind (its content is a path on this machine)."""
    if ctype != ContextType.TEXT:
        return template_en.format(quote=f"[{ctype.name.lower()}]")
    text = str(content)
    quote = " ".join(mask_command(text).split())  # "#auth <password>" is not said back in a group
    if len(quote) > REFUSAL_QUOTE_CHARS:
        quote = quote[:REFUSAL_QUOTE_CHARS] + "…"
    return (template_zh if is_chinese(text) else template_en).format(quote=quote)


class Produced(enum.Enum):
    """What produce() did with a context. Only ACCEPTED is true."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"  # its message id is in the inbox or was answered: nothing to do
    BUSY = "busy"  # a queue bound was hit; the user was told (see REFUSAL_IN_RESPONSE)
    NOT_STORED = "not_stored"  # the state store failed; the user was told
    STOPPING = "stopping"  # the daemon is stopping
    IGNORED = "ignored"  # no context (the rules dropped the message)

    def __bool__(self) -> bool:
        return self is Produced.ACCEPTED


class _Duplicate(Exception):
    """The inbox already has (or had) this message id."""


def check_prefix(content: str, prefix_list: list[str] | None) -> str | None:
    """The first prefix of `prefix_list` that `content` starts with, else None."""
    if not prefix_list:
        return None
    for prefix in prefix_list:
        if content.startswith(prefix):
            return prefix
    return None


def has_content(reply: Reply | None) -> bool:
    """Whether `reply` has something to send (the original sends only `if reply and reply.content`).

    A text that is only blanks counts as empty too: decorated, it would be a lone "@nick" in a group.
    """
    if reply is None or not reply.type or not reply.content:
        return False
    text_like = reply.type in (ReplyType.TEXT, ReplyType.TEXT_, ReplyType.INFO, ReplyType.ERROR)
    return not (text_like and isinstance(reply.content, str) and not reply.content.strip())


def bound_reply(reply: Reply, context: Context) -> None:
    """Make a text reply sendable, in place, after the last plugin had it (plugins can
    produce anything): no lone surrogate (which no platform can encode), and at most
    `answer_max_chars` characters, a longer one cut with a note to the user."""
    if not isinstance(reply.content, str):
        return
    text = safe_text(reply.content)
    limit = int(conf().get("answer_max_chars"))
    if len(text) > limit and reply.type in (ReplyType.TEXT, ReplyType.TEXT_, ReplyType.INFO, ReplyType.ERROR):
        logger.warning(f"[chat] a {reply.type} reply of {len(text)} characters cut to answer_max_chars ({limit})")
        text = cut_text(text, limit, is_chinese(str(context.content)))
    reply.content = text


def _is_command(context: Context) -> bool:
    return context.type == ContextType.TEXT and isinstance(context.content, str) and context.content.startswith("#")


def _text_weight(context: Context) -> int:
    """What a waiting context counts against max_pending_chars: its text (paths and ids of
    media are short)."""
    return len(context.content) if isinstance(context.content, str) else 0


def check_contain(content: str | None, keyword_list: list[str] | None) -> bool | None:
    """True when `content` contains one of the keywords, else None (the original's shape)."""
    if not keyword_list or content is None:
        return None
    for keyword in keyword_list:
        if content.find(keyword) != -1:
            return True
    return None


class ChatChannel(Channel):
    name = None  # the logged-in account's display name
    user_id = None  # the logged-in account's id
    # The original's class attributes, which plugins written for it may read: its
    # per-session futures and (queue, semaphore) pairs, and the lock guarding them. Queues
    # live in self.dispatcher here, so these stay empty; use cancel_session() to drop work.
    futures: dict = {}
    sessions: dict = {}
    lock = threading.Lock()

    # Seconds between send attempts after a failure (the original: 3 s, then 6 s).
    SEND_RETRY_DELAYS: tuple[float, ...] = (3, 6)
    # False where every private message is meant for the bot, so `single_chat_prefix` is
    # stripped when present but not required: the terminal, the web page (and, in the
    # original, WeCom apps).
    PRIVATE_NEEDS_PREFIX = True
    # True where the platform request that brought a message is itself answered with a refusal
    # (the web channel's 503), so a busy or not-saved refusal is not sent as a reply as well.
    REFUSAL_IN_RESPONSE = False
    # True where a message the store could not take is refused to the platform itself, which
    # then delivers it again (a webhook's non-200, a pull cursor that stays before it): telling
    # the user each time would repeat the refusal once per delivery.
    NOT_STORED_IN_RESPONSE = False
    # True where the platform never delivers a message again (a wechaty puppet, WeChatFerry): a
    # message that arrives while the daemon stops is then written to the inbox all the same and
    # answered after the next start, instead of being lost.
    KEEP_WHILE_STOPPING = False
    # Set when several channels run in one daemon (channel_group.py): the channel's name, put in
    # front of its session ids so that the same id on two platforms is two conversations. Empty
    # for a daemon of one channel, whose session ids stay the platform's (as in the original).
    session_scope = ""

    def __init__(self) -> None:
        # Per instance (the original shared these between channels as class attributes).
        self.dispatcher = SessionDispatcher(
            self._handle_queued,
            workers=conf().get("worker_threads"),
            concurrency=conf().get("concurrency_in_session"),
            queue_size=conf().get("session_queue_size"),
            max_pending=conf().get("max_pending_messages"),
            max_pending_weight=conf().get("max_pending_chars"),
            name=f"{type(self).__name__}-worker",
        )

    # ------------------------------------------------------------------ rules
    def _compose_context(self, ctype: ContextType, content, **kwargs) -> Context | None:
        """The context for a platform message, or None when the rules (or a plugin) drop it
        or its message id was accepted before."""
        first_in = ctype != ContextType.ACCEPT_FRIEND and "receiver" not in kwargs
        dedup = self._dedup_key(kwargs.get("msg")) if first_in else None
        context = self._compose(ctype, content, kwargs)
        if dedup is not None:
            if context is None:
                # Dropped: a redelivery is dropped at once, without the rules and plugins again.
                self._remember(dedup)
            else:
                # Written by produce() together with the inbox item: a message id counts as
                # seen only once its message is safely stored.
                context._pending_dedup = dedup
        return context

    def _compose(self, ctype: ContextType, content, kwargs: dict) -> Context | None:
        context = Context(ctype, content, kwargs)
        if ctype == ContextType.ACCEPT_FRIEND:
            return context
        # origin_ctype lets a transcribed private voice message skip the prefix rule.
        if "origin_ctype" not in context:
            context["origin_ctype"] = ctype
        config = conf()
        first_in = "receiver" not in context
        if first_in:
            cmsg = context["msg"]
            if context.get("isgroup", False):
                group_name = cmsg.other_user_nickname
                group_id = cmsg.other_user_id
                white_list = config.get("group_name_white_list", [])
                keyword_white_list = config.get("group_name_keyword_white_list", [])
                if not (
                    group_name in white_list
                    or "ALL_GROUP" in white_list
                    or check_contain(group_name, keyword_white_list)
                ):
                    return None
                in_one_session = config.get("group_chat_in_one_session", [])
                shared = group_name in in_one_session or "ALL_GROUP" in in_one_session
                context["session_id"] = self._scoped(group_id if shared else "{}@@{}".format(cmsg.actual_user_id, group_id))
                context["is_shared_session_group"] = shared
                context["group_name"] = group_name
                context["receiver"] = group_id
            else:
                context["session_id"] = self._scoped(cmsg.other_user_id)
                context["receiver"] = cmsg.other_user_id
            # After the group white list: a group the bot ignores costs no store write.
            if self._is_duplicate(cmsg):
                logger.info(f"[chat] message {cmsg.msg_id} was handled before, ignored")
                return None
            # Read without creating an entry for every sender (plugins create them when they write).
            user_data = config.user_data_book.peek(cmsg.from_user_id) or {}
            context["openai_api_key"] = user_data.get("openai_api_key")
            context["gpt_model"] = user_data.get("gpt_model")
            e_context = PluginManager().emit_event(
                EventContext(Event.ON_RECEIVE_MESSAGE, {"channel": self, "context": context})
            )
            context = e_context["context"]
            # BREAK_PASS here means "accept without the trigger rules".
            if e_context.is_pass() or context is None:
                return context
            if cmsg.from_user_id == self.user_id and not config.get("trigger_by_self", True):
                logger.debug("[chat] own message skipped")
                return None

        # Only TEXT has trigger rules: other types (shared links, images, files...) of an allowed
        # chat go on to the plugins as they are, as in the original.
        if ctype == ContextType.TEXT:
            content = self._apply_text_triggers(context, content)
            if content is None:
                return None
            content = content.strip()
            img_prefix = check_prefix(content, config.get("image_create_prefix"))
            if img_prefix:
                content = content.replace(img_prefix, "", 1)
                context.type = ContextType.IMAGE_CREATE
            else:
                context.type = ContextType.TEXT
            context.content = content.strip()
            if (
                "desire_rtype" not in context
                and config.get("always_reply_voice")
                and ReplyType.VOICE not in self.NOT_SUPPORT_REPLYTYPE
            ):
                context["desire_rtype"] = ReplyType.VOICE
        elif context.type == ContextType.VOICE:
            if (
                "desire_rtype" not in context
                and config.get("voice_reply_voice")
                and ReplyType.VOICE not in self.NOT_SUPPORT_REPLYTYPE
            ):
                context["desire_rtype"] = ReplyType.VOICE
        return context

    def _scoped(self, session_id):
        return f"{self.session_scope}:{session_id}" if self.session_scope else session_id

    def _state_name(self) -> str:
        """This channel's name in the state store (dedup namespace, inbox)."""
        return self.channel_type or type(self).__name__

    def _dedup_key(self, cmsg) -> DedupKey | None:
        msg_id = getattr(cmsg, "msg_id", None)
        if msg_id is None or msg_id == "" or conf().state_store is None:
            return None
        # Scoped by conversation: some platforms (WeCom's server_id) number messages per chat.
        key = f"{getattr(cmsg, 'other_user_id', '') or ''}/{msg_id}"
        return DedupKey(f"dedup:{self._state_name()}", key, float(conf().get("dedup_ttl", DEDUP_TTL_SECONDS)))

    def _is_duplicate(self, cmsg) -> bool:
        """True when this message id was accepted before (a platform retry or redelivery).

        Kept in the state store, so a restart does not answer a redelivery twice. Only
        looks: the id is recorded when its message is stored (produce) or dropped.
        """
        dedup = self._dedup_key(cmsg)
        if dedup is None:
            return False
        try:
            return conf().state_store.is_seen(dedup.namespace, dedup.key)
        except Exception as e:  # the inbox write that follows decides whether it is taken
            logger.error(f"[chat] duplicate check failed, going on with the message: {e}")
            return False

    def _remember(self, dedup: DedupKey) -> None:
        try:
            conf().state_store.seen(dedup.namespace, dedup.key, dedup.ttl)
        except Exception as e:  # only costs a second look at a redelivery
            logger.warning(f"[chat] could not record message id {dedup.key}: {e}")

    def _is_black_listed(self, nickname: str | None) -> bool:
        return bool(nickname) and nickname in conf().get("nick_name_black_list", [])

    def _apply_text_triggers(self, context: Context, content: str) -> str | None:
        """The text after the trigger is removed, or None when nothing triggers."""
        cmsg = context["msg"]
        config = conf()
        if not context.get("isgroup", False):
            if self._is_black_listed(cmsg.from_user_nickname):
                logger.warning(f"[chat] nickname '{cmsg.from_user_nickname}' is in nick_name_black_list, ignored")
                return None
            match_prefix = check_prefix(content, config.get("single_chat_prefix", [""]))
            if match_prefix is not None:
                return content.replace(match_prefix, "", 1).strip()
            if context["origin_ctype"] == ContextType.VOICE or not self.PRIVATE_NEEDS_PREFIX:
                return content
            return None

        if cmsg.to_user_id == cmsg.actual_user_id:
            return None
        triggered = False
        match_prefix = check_prefix(content, config.get("group_chat_prefix"))
        if match_prefix is not None or check_contain(content, config.get("group_chat_keyword")):
            triggered = True
            if match_prefix:
                content = content.replace(match_prefix, "", 1).strip()
        if cmsg.is_at:
            logger.info("[chat] received a group @")
            if not config.get("group_at_off", False):
                triggered = True
            content = self._strip_mentions(cmsg, content)
        if triggered and self._is_black_listed(cmsg.actual_user_nickname):
            # Fixes the original, which checked the black list only for @mentions.
            logger.warning(f"[chat] nickname '{cmsg.actual_user_nickname}' is in nick_name_black_list, ignored")
            return None
        if not triggered:
            if context["origin_ctype"] == ContextType.VOICE:
                logger.info("[chat] group voice did not match a trigger")
            return None
        return content

    def _strip_mentions(self, cmsg, content: str) -> str:
        stripped = content
        if self.name:
            stripped = re.sub(f"@{re.escape(self.name)}(\u2005|\u0020)", "", stripped)
        if isinstance(cmsg.at_list, list):
            for at in cmsg.at_list:
                stripped = re.sub(f"@{re.escape(at)}(\u2005|\u0020)", "", stripped)
        if stripped == content and cmsg.self_display_name:
            stripped = re.sub(f"@{re.escape(cmsg.self_display_name)}(\u2005|\u0020)", "", content)
        return stripped

    # ------------------------------------------------------------------ queueing
    def produce(self, context: Context | None) -> Produced:
        """Queue a composed context for its session. `#` commands jump the queue (in
        their own order, behind commands already waiting).

        With a state store, the context is written to the store's inbox before it is
        queued (and before the caller acknowledges it to the platform), and deleted once
        handled, so a crash or a stop with a backlog loses nothing. The answer is truthy
        only when the context was accepted; the user is told when it was refused.
        """
        if context is None:
            return Produced.IGNORED
        session_id = context.get("session_id") or context.get("receiver") or "default"
        urgent = _is_command(context)
        dedup = context.__dict__.pop("_pending_dedup", None)
        persist = self._persister(context, session_id, dedup)
        try:
            admission = self.dispatcher.submit(session_id, context, urgent=urgent, persist=persist,
                                               weight=_text_weight(context))
        except _Duplicate:
            logger.info(f"[chat] message {dedup.key if dedup else ''} was accepted before, ignored")
            return Produced.DUPLICATE
        except Exception as e:
            # Never acknowledge what was not stored: the platform or user can send it again.
            logger.error(f"[chat] message of session {session_id} refused: the state store could not save it: {e}")
            if not (self.REFUSAL_IN_RESPONSE or self.NOT_STORED_IN_RESPONSE):
                text = refusal_text(NOT_STORED_TEXT_ZH, NOT_STORED_TEXT_EN, context.content, context.type)
                self._send_refusal(context, Reply(ReplyType.ERROR, text))
            return Produced.NOT_STORED
        if admission:
            logger.debug(f"[chat] message queued for session {session_id}")
            return Produced.ACCEPTED
        if admission is Admission.STOPPING:
            if self.KEEP_WHILE_STOPPING and persist is not None:
                return self._keep_for_next_start(persist, session_id, dedup)
            logger.warning(f"[chat] shutting down, message of session {session_id} not taken")
            return Produced.STOPPING
        if admission is Admission.ALL_FULL:
            logger.warning(f"[chat] {self.dispatcher.pending()} messages of {self.dispatcher.pending_weight()} characters "
                           f"pending in all (max_pending_messages {conf().get('max_pending_messages')}, max_pending_chars "
                           f"{conf().get('max_pending_chars')}), telling the user of session {session_id}")
        else:
            logger.warning(f"[chat] queue of session {session_id} is full, telling the user")
        if not self.REFUSAL_IN_RESPONSE:
            text = refusal_text(BUSY_TEXT_ZH, BUSY_TEXT_EN, context.content, context.type)
            self._send_refusal(context, Reply(ReplyType.TEXT, text))
        return Produced.BUSY

    def _send_refusal(self, context: Context, reply: Reply) -> None:
        """Tell the user their message was not taken (busy, not saved). A channel whose intake
        must not wait for the send (and its retries) sends it elsewhere."""
        self._send_reply(context, self._decorate_reply(context, reply))

    def _persister(self, context: Context, session_id: str, dedup: DedupKey | None):
        """The store write submit() runs once the context fits in the queues, or None
        (no state store)."""
        store = conf().state_store
        if store is None:
            return None
        try:
            record = inbox_record.context_to_record(context, self.message_to_record)
        except Exception as e:
            # An adapter or plugin put something in the context that cannot be written down;
            # the message is still answered, but a crash before then loses it.
            logger.warning(f"[chat] message of session {session_id} kept in memory only (cannot be stored: {e})")
            record = None

        def persist() -> None:
            if record is None:
                if dedup is not None and store.seen(dedup.namespace, dedup.key, dedup.ttl):
                    raise _Duplicate()
                return
            item_id = store.inbox_add(self._state_name(), session_id, record, dedup)
            if item_id is None:
                raise _Duplicate()
            context._inbox_id = item_id

        return persist

    @staticmethod
    def _keep_for_next_start(persist, session_id: str, dedup: DedupKey | None) -> Produced:
        """While stopping: the message goes to the inbox only (resume_inbox queues it at the next
        start; the store closes after the channels have stopped)."""
        try:
            persist()
        except _Duplicate:
            logger.info(f"[chat] message {dedup.key if dedup else ''} was accepted before, ignored")
            return Produced.DUPLICATE
        except Exception as e:
            logger.error(f"[chat] shutting down, message of session {session_id} lost: the state store could not "
                         f"save it: {e}")
            return Produced.NOT_STORED
        logger.warning(f"[chat] shutting down: message of session {session_id} kept in the inbox, answered after "
                       f"the next start")
        return Produced.STOPPING

    # ------------------------------------------------------------------ the inbox
    def message_to_record(self, cmsg: ChatMessage) -> dict:
        """`cmsg` as JSON data from which record_to_message can rebuild it after a restart.
        A channel whose messages hold more (a raw platform event, a lazy download) overrides both."""
        return inbox_record.message_fields(cmsg)

    def record_to_message(self, record: dict) -> ChatMessage:
        return inbox_record.message_from_fields(record)

    def already_answered(self, context: Context) -> bool:
        """Whether a context accepted before a crash was answered already (the reply went out,
        the process died before it was marked done). A channel with a durable outbox can tell;
        the default cannot, and answers again rather than lose it."""
        return False

    def resume_inbox(self) -> int:
        """Queue, oldest first, the messages accepted before the last stop and not answered.
        Call in startup() before taking new messages. Returns how many were queued."""
        store = conf().state_store
        if store is None:
            return 0
        try:
            items = store.inbox_items(self._state_name())
        except Exception as e:
            logger.error(f"[chat] cannot read the messages kept from the last run: {e}")
            return 0
        kept: list[tuple[str, Context, bool, int]] = []
        answered = interrupted = 0
        for item in items:
            if item.replied == "final":
                # Answered; the crash came before the inbox item was deleted.
                answered += 1
                self._inbox_done(item.id)
                continue
            try:
                context = inbox_record.context_from_record(item.record, self.record_to_message)
            except Exception as e:
                # A record this version cannot read: say what is lost rather than drop it quietly.
                logger.error(f"[chat] a kept message of session {item.session} cannot be rebuilt and is dropped "
                             f"({type(e).__name__}: {e}): {mask_command(str(item.record))[:300]}")
                self._inbox_done(item.id)
                continue
            if self.already_answered(context):
                answered += 1
                self._inbox_done(item.id)
                continue
            context._inbox_id = item.id
            if item.replied:
                # Part of its answer went out before the crash: queued to tell the user, in order.
                context._interrupted = True
                context._replied = item.replied
                interrupted += 1
            dedup = self._dedup_key(context.get("msg"))
            if dedup is not None:
                # Its key may have expired while the daemon was down: a redelivery now must
                # still count as a duplicate.
                self._remember(dedup)
            kept.append((item.session, context, _is_command(context), _text_weight(context)))
        self.dispatcher.submit_kept(kept)
        resumed = len(kept)
        if resumed or answered:
            logger.info(f"[chat] {resumed} message(s) accepted before the last stop queued again"
                        + (f", {answered} found answered already" if answered else ""))
        if interrupted:
            logger.warning(f"[chat] {interrupted} of them had part of their answer sent before the stop: "
                           f"their users are told the answer was cut off instead of getting it twice")
        return resumed

    def _note_reply_sent(self, context: Context) -> None:
        """Mark the context's inbox item: a reply to it went out ("partial" for a part sent
        while the answer is made, "final" for the answer), so a crash before the item is
        deleted does not answer it twice (resume_inbox). Called when send() returned: a channel
        whose send() only hands the reply to something that delivers or stores it later must
        override this (and say in already_answered what was answered)."""
        item_id = getattr(context, "_inbox_id", None)
        store = conf().state_store
        if item_id is None or store is None:
            return
        replied = "final" if getattr(context, "_final_reply", False) else "partial"
        if getattr(context, "_replied", None) in (replied, "final"):
            return
        try:
            store.inbox_mark(item_id, replied)
            context._replied = replied
        except Exception as e:
            logger.warning(f"[chat] could not record that kept message {item_id} was answered "
                           f"(a crash now would answer it again): {e}")

    def _inbox_done(self, item_id: int | None) -> None:
        if item_id is None:
            return
        store = conf().state_store
        if store is None:
            return
        try:
            store.inbox_done(item_id)
        except Exception as e:
            # Answered but still in the inbox: the next start may answer it a second time.
            logger.error(f"[chat] could not mark kept message {item_id} as answered: {e}")

    def _handle_queued(self, context: Context) -> None:
        """The dispatcher's handler: handle, then delete the context's inbox item (the reply
        or a clear error went out, see _handle)."""
        book = conf().user_data_book
        book.track()
        try:
            self._handle(context)
        finally:
            # What handling changed in user data is saved before the message counts as done.
            try:
                book.flush_tracked()
            except Exception as e:
                logger.error(f"[chat] saving user data after a message failed (the flusher retries): {e}")
            self._inbox_done(getattr(context, "_inbox_id", None))

    def cancel_session(self, session_id: str) -> list[Context]:
        """Drop the session's messages that are still waiting; returns them, oldest first.

        Called while a message is being handled (a `#reset` on its worker), only the
        messages received before that one go: what the user sent after the command stays
        and is answered. Called from anywhere else, every waiting message goes.
        """
        dropped = self.dispatcher.cancel_session(session_id, before=self.dispatcher.current_seq())
        for context in dropped:
            self._inbox_done(getattr(context, "_inbox_id", None))
        if dropped:
            logger.info(f"[chat] cancelled {len(dropped)} queued message(s) of session {session_id}")
        return dropped

    def cancel_all_session(self) -> list[Context]:
        """cancel_session for every session (same rule about what was received after)."""
        dropped = self.dispatcher.cancel_all(before=self.dispatcher.current_seq())
        for context in dropped:
            self._inbox_done(getattr(context, "_inbox_id", None))
        if dropped:
            logger.info(f"[chat] cancelled {len(dropped)} queued message(s) of all sessions")
        return dropped

    def stop_accepting(self) -> None:
        self.dispatcher.stop_accepting()

    def wait_idle(self, timeout: float | None = None) -> bool:
        return self.dispatcher.wait_idle(timeout)

    def halt(self) -> int:
        """Start no more messages: those waiting stay in the state store's inbox for the next
        start. Returns how many are waiting or still running."""
        return self.dispatcher.halt()

    def stop(self) -> None:
        self.dispatcher.close()

    # ------------------------------------------------------------------ handling
    def _handle(self, context: Context) -> None:
        if context is None or not context.content:
            return
        logger.debug("[chat] handling context: %s", context)
        try:
            if getattr(context, "_interrupted", False):
                reply = self._interrupted_reply(context)
            else:
                reply = self._generate_reply(context)
            if not self._worth_sending(reply):
                return
            reply = self._decorate_reply(context, reply)
            context._final_reply = True
            self._send_reply(context, reply)
        except Exception as e:
            chinese = is_chinese(str(context.content))
            if is_tmp_write_error(e):  # an operating problem, not a bug: one line, and say what it is
                logger.error(f"[chat] a {context.type} message of session {context.get('session_id')} needs tmp/, "
                             f"which cannot be written: {e}")
                text = UNWRITABLE_TEXT[0] if chinese else UNWRITABLE_TEXT[1]
            else:
                logger.exception(f"[chat] handling a {context.type} message of session {context.get('session_id')} failed")
                logger.debug(f"[chat] the message that failed: {context}")
                text = "处理消息时出错了，请稍后再试" if chinese else "Something went wrong; please try again."
            context._final_reply = True
            self._send(Reply(ReplyType.ERROR, "[ERROR]\n" + text), context)

    @staticmethod
    def _interrupted_reply(context: Context) -> Reply:
        """What a message answered in part before a crash gets after the restart (resume_inbox)."""
        logger.info(f"[chat] a message of session {context.get('session_id')} was answered in part before "
                    f"the last stop: telling the user instead of answering again")
        return Reply(ReplyType.TEXT, refusal_text(INTERRUPTED_TEXT_ZH, INTERRUPTED_TEXT_EN, context.content, context.type))

    def _generate_reply(self, context: Context, reply: Reply | None = None) -> Reply | None:
        # A fresh Reply each call (the original shared one default object between calls).
        reply = Reply() if reply is None else reply
        e_context = PluginManager().emit_event(
            EventContext(Event.ON_HANDLE_CONTEXT, {"channel": self, "context": context, "reply": reply})
        )
        reply = e_context["reply"]
        if e_context.is_pass():
            return reply
        if context.type in (ContextType.TEXT, ContextType.IMAGE_CREATE):
            context["channel"] = e_context["channel"]
            return self.build_reply_content(context.content, context)
        if context.type == ContextType.VOICE:
            return self._reply_to_voice(context)
        if context.type == ContextType.IMAGE:
            # Kept for the next question (image recognition); no reply of its own.
            memory.USER_IMAGE_CACHE[context["session_id"]] = {"path": context.content, "msg": context.get("msg")}
            return reply
        if context.type == ContextType.ACCEPT_FRIEND:
            return self._build_friend_request_reply(context)
        if context.type in (ContextType.SHARING, ContextType.FUNCTION, ContextType.FILE, ContextType.VIDEO):
            # No default handling: only a plugin answers these (the original's rule; a shared
            # link in a group must not reach the bot when nobody addressed it).
            return reply
        logger.warning(f"[chat] unknown context type: {context.type}")
        return None

    def _reply_to_voice(self, context: Context) -> Reply | None:
        cmsg = context["msg"]
        cmsg.prepare()
        file_path = context.content
        wav_path = os.path.splitext(file_path)[0] + ".wav"
        try:
            from voice.audio_convert import any_to_wav

            any_to_wav(file_path, wav_path)
        except Exception as e:  # some engines read the raw format too
            logger.warning(f"[chat] voice conversion to wav failed, using the raw file: {e}")
            wav_path = file_path
        reply = self.build_voice_to_text(wav_path)
        for path in {file_path, wav_path}:
            try:
                os.remove(path)
            except OSError:
                pass
        if reply is not None and reply.type == ReplyType.TEXT:
            new_context = self._compose_context(ContextType.TEXT, reply.content, **context.kwargs)
            if new_context is None:
                return None
            return self._generate_reply(new_context)
        return reply

    def _build_friend_request_reply(self, context: Context) -> Reply:
        content = context.content.get("Content") if isinstance(context.content, dict) else context.content
        accepted = content in conf().get("accept_friend_commands", [])
        return Reply(type=ReplyType.ACCEPT_FRIEND, content=accepted)

    def _decorate_reply(self, context: Context, reply: Reply | None) -> Reply | None:
        if not reply or not reply.type:
            return reply
        e_context = PluginManager().emit_event(
            EventContext(Event.ON_DECORATE_REPLY, {"channel": self, "context": context, "reply": reply})
        )
        reply = e_context["reply"]
        desire_rtype = context.get("desire_rtype")
        if not e_context.is_pass() and reply and reply.type:
            if reply.type in self.NOT_SUPPORT_REPLYTYPE:
                logger.error(f"[chat] reply type not supported by this channel: {reply.type}")
                # Names the refused type (the original named "ERROR" after overwriting it).
                reply = Reply(ReplyType.ERROR, "这个平台不能发送这种消息：" + str(reply.type))
            if reply.type == ReplyType.TEXT:
                if desire_rtype == ReplyType.VOICE and ReplyType.VOICE not in self.NOT_SUPPORT_REPLYTYPE:
                    voice = self.build_text_to_voice(reply.content)
                    if voice is not None and voice.type == ReplyType.VOICE:
                        return self._decorate_reply(context, voice)
                    logger.warning("[chat] text to voice failed, sending text")
                reply.content = self._decorate_text(context, reply.content)
            elif reply.type in (ReplyType.ERROR, ReplyType.INFO):
                reply.content = "[" + str(reply.type) + "]\n" + str(reply.content)
            elif not isinstance(reply.type, ReplyType):  # every other ReplyType is sent as it is
                logger.error(f"[chat] unknown reply type: {reply.type}")
                return None
        if desire_rtype and reply and desire_rtype != reply.type and reply.type not in (ReplyType.ERROR, ReplyType.INFO):
            logger.warning(f"[chat] wanted a {desire_rtype} reply, got {reply.type}")
        return reply

    def _decorate_text(self, context: Context, text: str) -> str:
        config = conf()
        if context.get("isgroup", False):
            no_need_at = context.get("no_need_at", config.get("no_need_at", False))
            nickname = getattr(context.get("msg"), "actual_user_nickname", None)
            if not no_need_at and nickname:
                text = "@" + nickname + "\n" + text.strip()
            return config.get("group_chat_reply_prefix", "") + text + config.get("group_chat_reply_suffix", "")
        return config.get("single_chat_reply_prefix", "") + text + config.get("single_chat_reply_suffix", "")

    def deliver(self, context: Context, reply: Reply) -> None:
        """Send a reply now, while the final one is still being generated (the parts of a
        streamed answer, the images of an answer with pictures). It is decorated and goes
        through ON_DECORATE_REPLY / ON_SEND_REPLY like the final reply."""
        if self._worth_sending(reply):
            self._send_reply(context, self._decorate_reply(context, reply))

    @staticmethod
    def _worth_sending(reply: Reply | None) -> bool:
        # Checked before decoration, which would turn an empty group text into "@nick".
        if has_content(reply):
            return True
        if reply is not None and reply.type:
            logger.info(f"[chat] {reply.type} reply without content, nothing sent")
        return False

    def _send_reply(self, context: Context, reply: Reply | None) -> None:
        if not has_content(reply):
            return
        e_context = PluginManager().emit_event(
            EventContext(Event.ON_SEND_REPLY, {"channel": self, "context": context, "reply": reply})
        )
        reply = e_context["reply"]
        if not e_context.is_pass() and has_content(reply):
            bound_reply(reply, context)
            logger.debug("[chat] sending reply: %s", reply)
            self._send(reply, context)

    @staticmethod
    def send_pieces(reply: Reply, pieces: list, send_one) -> None:
        """Send the pieces of one reply in order, each confirmed before the next. When a piece
        fails, `_send` retries the whole reply: the pieces already delivered are skipped then
        (the count rides on the Reply, which the retry passes back), so none arrives twice."""
        for n in range(getattr(reply, "_pieces_sent", 0), len(pieces)):
            send_one(pieces[n])
            reply._pieces_sent = n + 1

    def _send(self, reply: Reply, context: Context) -> bool:
        """Send with retries. Returns whether the platform took it."""
        attempts = 1 + len(self.SEND_RETRY_DELAYS)
        for attempt in range(attempts):
            try:
                self.send(reply, context)
            except NotImplementedError as e:
                logger.error(f"[chat] this channel cannot send {reply.type}: {e}")
                return False
            except Exception as e:
                logger.error(f"[chat] send failed (attempt {attempt + 1} of {attempts}): {e}")
                if attempt < len(self.SEND_RETRY_DELAYS):
                    time.sleep(self.SEND_RETRY_DELAYS[attempt])
            else:
                self._note_reply_sent(context)
                return True
        logger.error(f"[chat] {reply.type} reply to {context.get('receiver')} given up after {attempts} attempts")
        logger.debug(f"[chat] the reply given up: {reply}")
        return False
