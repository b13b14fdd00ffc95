# encoding:utf-8
"""The Dify bot: answers with a Dify app (chatbot, chatflow, agent, workflow or completion).

Same selection (``model`` or ``bot_type`` = ``dify``), settings and behaviour as
the original, with these differences on purpose:

* Every channel works. The Dify ``user`` is a stable id of the person: the
  sender in a private chat, the member who wrote in a group, the group itself
  when the group shares one session. The original used nicknames on WeChat
  (a renamed friend lost the conversation, two friends with one name shared
  it) and refused terminal, Feishu and DingTalk.
* Conversations survive restarts (the state store), a stale conversation
  (404 "Conversation Not Exists.") is replaced by a new one at once instead of
  failing until the message limit rolls over, and ``#reset`` really resets.
* Chat apps stream by default (``dify_response_mode``), so long answers are
  not cut off by the cloud's 100 s limit; ``dify_stream_reply`` sends each
  finished paragraph as soon as it is complete.
* ``message_replace`` (output moderation) replaces the answer (the original
  ignored it); a stream that breaks off keeps the text that arrived.
* Workflow input/output variable names are settings; completion apps work.
* Answers of every app type are split into text, images and files; plain web
  links stay in the text; relative links resolve against the Dify host of the
  app that answered (per-app overrides included).
* A failed image upload sends the question without the image and says so
  (the original sent a broken ``files`` list).
* Errors get a short message saying what to do (wrong key, app type, quota,
  rate limit, timeout...), in the user's language; ``dify_error_reply``, when
  set, still replaces them all. 429/5xx/connection failures are retried.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from bot.bot import Bot
from bot.partial_answer import PartialAnswer
from bot.dify.answer import AnswerFold, Part, PartSender
from bot.dify.dify_client import DifyClient, get_client
from bot.dify.dify_session import DifySession, DifySessionManager
from bot.dify.errors import (
    CUT_NOTE,
    UPLOAD_FAILED_NOTE,
    DifyAnswerTimeout,
    DifyBadResponse,
    DifyConfigError,
    DifyConversationNotFound,
    DifyError,
    DifyStreamCut,
    DifyTimeout,
    DifyWorkflowFailed,
    DifyWorkflowOutputMissing,
    pick,
    user_message,
)
from bridge.bridge import is_chinese
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from common import memory
from common.log import logger
from common.store import StateStore
from common.text import TOO_LONG_NOTE
from config import conf

CHAT_APP_TYPES = ("chatbot", "chatflow", "agent")


def _unanswered(cut: DifyStreamCut) -> DifyError:
    """The error for a stream that broke off before any of the answer arrived."""
    if cut.details.get("answer_timeout"):
        return DifyAnswerTimeout(0, "", str(cut))
    if cut.details.get("timeout"):
        return DifyTimeout(0, "", str(cut), phase="read")
    return cut
APP_TYPES = CHAT_APP_TYPES + ("workflow", "completion")

# Statuses of a workflow run that produced outputs.
_WORKFLOW_DONE = ("succeeded", "partial-succeeded")
# "app-xxx", the key config-template.json ships with: never a real key.
_PLACEHOLDER_KEY = re.compile(r"^app-x+$", re.IGNORECASE)


@dataclass(frozen=True)
class AppSettings:
    """The Dify app a context talks to: the global settings, overridden per context
    (the CustomDifyApp plugin writes dify_api_key / dify_api_base / dify_app_type /
    image_recognition into the context)."""

    api_base: str
    api_key: str
    app_type: str
    image_recognition: bool
    streaming: bool
    stream_reply: bool

    @classmethod
    def of(cls, context: Context | None) -> "AppSettings":
        def pick_setting(key: str) -> Any:
            if context is not None and key in context and context.get(key) not in (None, ""):
                return context.get(key)
            return conf().get(key)

        app_type = str(pick_setting("dify_app_type") or "chatbot").strip().lower()
        return cls(
            api_base=str(pick_setting("dify_api_base") or ""),
            api_key=str(pick_setting("dify_api_key") or ""),
            app_type=app_type,
            image_recognition=bool(pick_setting("image_recognition")),
            # Agent apps refuse blocking mode.
            streaming=app_type == "agent" or conf().get("dify_response_mode") != "blocking",
            stream_reply=bool(conf().get("dify_stream_reply")),
        )


@dataclass(frozen=True)
class Identity:
    """Who asks: the Dify ``user`` and the four identity inputs of the original."""

    user: str
    inputs: dict[str, str]


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def resolve_identity(context: Context) -> Identity:
    """The Dify user and inputs for a context (see the module docstring).

    inputs are the original's: private chat -> the peer as user, no room; group ->
    the member as user, the group as room; shared group -> no user, the group as room.
    """
    msg = context.get("msg")
    session_id = _text(context.get("session_id"))
    is_group = bool(context.get("isgroup", getattr(msg, "is_group", False)))
    shared = bool(context.get("is_shared_session_group", False))
    if msg is None:
        # Nothing but the session id is known (a plugin building its own context).
        if is_group and not shared:
            user = session_id.split("@@", 1)[0]
        else:
            user = session_id
        return Identity(user or "default", {"user_id": "", "user_name": "", "room_id": "", "room_name": ""})
    if is_group:
        room_id, room_name = _text(msg.other_user_id), _text(msg.other_user_nickname)
        if shared:
            return Identity(room_id or session_id or "default",
                            {"user_id": "", "user_name": "", "room_id": room_id, "room_name": room_name})
        user_id = _text(msg.actual_user_id)
        return Identity(user_id or session_id.split("@@", 1)[0] or "default",
                        {"user_id": user_id, "user_name": _text(msg.actual_user_nickname),
                         "room_id": room_id, "room_name": room_name})
    user_id = _text(msg.other_user_id)
    return Identity(user_id or session_id or "default",
                    {"user_id": user_id, "user_name": _text(msg.other_user_nickname), "room_id": "", "room_name": ""})


class DifyBot(Bot):
    """``self.sessions`` is the DifySessionManager godcmd's ``#reset`` / ``#resetall`` use."""

    def __init__(self, store: StateStore | None = None) -> None:
        super().__init__()
        self.sessions = DifySessionManager(store)

    @classmethod
    def settings_problem(cls, settings: Any) -> str | None:
        key = str(settings.get("dify_api_key") or "").strip()
        if not key:
            return ("setting 'dify_api_key' is empty: put the API key of your Dify app (app-...) in it, "
                    "or try the offline demo with --sandbox")
        if _PLACEHOLDER_KEY.match(key):
            return (f"setting 'dify_api_key' is still the template's placeholder '{key}': "
                    "fill in the API key of your Dify app (app-...)")
        if not str(settings.get("dify_api_base") or "").strip():
            return "setting 'dify_api_base' is empty: put your Dify API address in it (e.g. https://api.dify.ai/v1)"
        return None

    # -- entry point -----------------------------------------------------------------------
    def reply(self, query: str, context: Context = None) -> Reply | None:
        if context is None:
            context = Context(ContextType.TEXT, query)
        if context.type not in (ContextType.TEXT, ContextType.IMAGE_CREATE, ContextType.SHARING):
            return Reply(ReplyType.ERROR, "Bot不支持处理{}类型的消息".format(context.type))
        if context.type == ContextType.IMAGE_CREATE:
            # Absent: the original's call-site default ["画"] (the pipeline's own default [""] never
            # makes IMAGE_CREATE, but a plugin can).
            prefixes = conf().get("image_create_prefix", ["画"]) or ["画"]
            query = prefixes[0] + query
        chinese = is_chinese(query)
        # Who and how much at INFO; what was asked only at DEBUG.
        logger.info(f"[DIFY] question of {len(query)} characters from session {context.get('session_id')}")
        logger.debug(f"[DIFY] query={query}")
        try:
            app = AppSettings.of(context)
            return self._reply(query, context, app, chinese)
        except DifyError as e:
            logger.warning(f"[DIFY] session {context.get('session_id')}: {e}")
            return self._error_reply(e, chinese)
        except Exception as e:
            logger.exception(f"[DIFY] session {context.get('session_id')}: unexpected failure")
            return self._error_reply(e, chinese)

    @staticmethod
    def _error_reply(error: BaseException, chinese: bool) -> Reply:
        custom = conf().get("dify_error_reply")
        # TEXT, as the original, so a custom dify_error_reply is shown as written.
        return Reply(ReplyType.TEXT, custom if custom else user_message(error, chinese))

    def _reply(self, query: str, context: Context, app: AppSettings, chinese: bool) -> Reply | None:
        if app.app_type not in APP_TYPES:
            raise DifyConfigError(0, "", f"unknown dify_app_type {app.app_type!r}", value=app.app_type)
        identity = resolve_identity(context)
        client = get_client(app.api_base, app.api_key)
        sender = PartSender(client, context)
        if app.app_type in CHAT_APP_TYPES:
            return self._chat(query, context, app, identity, client, sender, chinese)
        if app.app_type == "workflow":
            return self._workflow(query, app, identity, client, sender, chinese)
        return self._completion(query, app, identity, client, sender, chinese)

    # -- chat apps (chatbot, chatflow, agent) ---------------------------------------------------
    def _chat(self, query: str, context: Context, app: AppSettings, identity: Identity,
              client: DifyClient, sender: PartSender, chinese: bool) -> Reply | None:
        session_id = _text(context.get("session_id")) or identity.user
        session = self.sessions.begin_turn(session_id, identity.user)
        inputs = dict(identity.inputs)
        if session.system_prompt:
            inputs["system_prompt"] = session.system_prompt
        payload: dict[str, Any] = {"inputs": inputs, "query": query, "user": session.user}
        if app.image_recognition:
            files = self._upload_image(session, client, sender, chinese)
            if files:
                payload["files"] = files
        logger.debug("[DIFY] session=%s app_type=%s streaming=%s", session, app.app_type, app.streaming)
        try:
            return self._chat_once(payload, session, app, client, sender, chinese)
        except DifyConversationNotFound:
            if not session.conversation_id:
                raise
            # Deleted on Dify's side (or the key now points at another app): start afresh, once.
            # Expected after a conversation was deleted in Dify or the key moved to another app,
            # and handled here: a fact for the log, not a warning for the console.
            logger.info(f"[DIFY] conversation {session.conversation_id} of session {session_id} is gone; starting a new one")
            self.sessions.restart_conversation(session)
            return self._chat_once(payload, session, app, client, sender, chinese)

    def _chat_once(self, payload: dict[str, Any], session: DifySession, app: AppSettings,
                   client: DifyClient, sender: PartSender, chinese: bool) -> Reply | None:
        body = dict(payload)
        if session.conversation_id:
            body["conversation_id"] = session.conversation_id
        if not app.streaming:
            data = client.chat_messages(body, stream=False)
            answer = data.get("answer")
            if not isinstance(answer, str):
                raise DifyBadResponse(200, "", f"/chat-messages: no answer in {str(data)[:200]}")
            logger.debug("[DIFY] usage %s", (data.get("metadata") or {}).get("usage"))
            self.sessions.remember_conversation(session, data.get("conversation_id"))
            return sender.send_and_return_last([("text", answer)])
        parts, note = self._read_stream(
            lambda: client.chat_messages(body, stream=True), "message_end", app, sender, session=session
        )
        return sender.send_and_return_last(parts, note=pick(note, chinese) if note else None)

    def _upload_image(self, session: DifySession, client: DifyClient, sender: PartSender,
                      chinese: bool) -> list[dict[str, Any]] | None:
        """The user's last image (sent within 3 minutes) uploaded for this question."""
        cached = memory.USER_IMAGE_CACHE.pop(session.session_id, None)
        if not cached:
            return None
        try:
            msg = cached.get("msg")
            if msg is not None:
                msg.prepare()  # platforms download the image lazily
            record = client.upload_file(cached["path"], session.user)
            logger.debug(f"[DIFY] uploaded image {record}")
            return [{"type": "image", "transfer_method": "local_file", "upload_file_id": record["id"]}]
        except Exception as e:
            logger.warning(f"[DIFY] image upload of session {session.session_id} failed, asking without it: {e}")
            sender.deliver(Reply(ReplyType.TEXT, pick(UPLOAD_FAILED_NOTE, chinese)))
            return None

    # -- streams ---------------------------------------------------------------------------------
    def _read_stream(self, open_stream, terminal: str, app: AppSettings, sender: PartSender,
                     session: DifySession | None = None) -> tuple[list[Part], tuple[str, str] | None]:
        """Read a streamed answer: (parts not sent yet, the note to add: CUT_NOTE when it
        broke off, TOO_LONG_NOTE when it passed answer_max_chars and was not read further).

        On a channel that shows answers growing (Channel.show_partial), the text is
        shown as it arrives and each finished part is sent at once. Elsewhere, with
        dify_stream_reply, finished paragraphs are sent while the stream runs.
        A stream that breaks off is never sent again: its text is kept when some
        arrived, else DifyStreamCut is raised."""
        partial = PartialAnswer.for_context(sender.context)
        split = app.stream_reply and sender.can_deliver() and partial is None

        def send_part(part: Part) -> None:
            sender.send_all([part])
            if partial is not None:
                partial.next_answer()  # the text after this part grows in a new bubble

        fold = AnswerFold(
            terminal=terminal,
            on_part=send_part if partial is not None or split else None,
            split_paragraphs=split,
            on_text=partial.show if partial is not None else None,
        )
        cut: DifyStreamCut | None = None
        limit = int(conf().get("answer_max_chars"))
        too_long = False
        try:
            with open_stream() as events:
                try:
                    for event in events:
                        fold.feed(event)
                        if fold.ended:
                            break  # tts events may follow; nothing more of the answer
                        if fold.text_chars > limit:
                            # The rest would only be cut off by the pipeline: not read, not kept.
                            logger.warning(f"[DIFY] answer longer than answer_max_chars ({limit}), not read further")
                            too_long = True
                            break
                except DifyStreamCut as e:
                    cut = e
        finally:
            if session is not None:
                self.sessions.remember_conversation(session, fold.conversation_id)
        if too_long:
            return fold.finish(), TOO_LONG_NOTE
        if not fold.ended and cut is None:
            cut = DifyStreamCut(0, "", f"the stream ended without {terminal}")
        parts = fold.finish()
        if cut is not None:
            if not fold.received:
                raise _unanswered(cut)
            logger.warning(f"[DIFY] answer cut off, sending what arrived: {cut}")
        return parts, CUT_NOTE if cut is not None else None

    # -- workflow apps -----------------------------------------------------------------------------
    def _workflow(self, query: str, app: AppSettings, identity: Identity, client: DifyClient,
                  sender: PartSender, chinese: bool) -> Reply | None:
        variable = conf().get("dify_workflow_input_variable") or "query"
        payload = {"inputs": {**identity.inputs, variable: query}, "user": identity.user}
        if app.streaming:
            fold = AnswerFold(terminal="workflow_finished")
            cut: DifyStreamCut | None = None
            with client.workflow_run(payload, stream=True) as events:
                try:
                    for event in events:
                        fold.feed(event)
                        if fold.ended:
                            break
                except DifyStreamCut as e:
                    cut = e
            if fold.workflow is None:
                raise _unanswered(cut or DifyStreamCut(0, "", "the workflow stream ended without workflow_finished"))
            data = fold.workflow
        else:
            data = client.workflow_run(payload, stream=False).get("data")
        answer = self._workflow_answer(data)
        return sender.send_and_return_last([("text", answer)])

    @staticmethod
    def _workflow_answer(data: Any) -> str:
        if not isinstance(data, dict):
            raise DifyBadResponse(200, "", f"/workflows/run: no data in the answer: {str(data)[:200]}")
        status = data.get("status")
        if status is not None and status not in _WORKFLOW_DONE:
            raise DifyWorkflowFailed(0, "", f"workflow run {status}: {data.get('error') or 'no error text'}")
        outputs = data.get("outputs") or {}
        if not isinstance(outputs, dict):
            outputs = {}
        variable = conf().get("dify_workflow_output_variable") or "text"
        if variable not in outputs:
            raise DifyWorkflowOutputMissing(
                0, "", f"workflow outputs have no {variable!r}; present: {sorted(outputs)}",
                variable=variable, present=sorted(outputs),
            )
        value = outputs[variable]
        if value is None:
            return ""
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    # -- completion apps ---------------------------------------------------------------------------
    def _completion(self, query: str, app: AppSettings, identity: Identity, client: DifyClient,
                    sender: PartSender, chinese: bool) -> Reply | None:
        payload = {"inputs": {"query": query}, "user": identity.user}
        if not app.streaming:
            data = client.completion_messages(payload, stream=False)
            answer = data.get("answer")
            if not isinstance(answer, str):
                raise DifyBadResponse(200, "", f"/completion-messages: no answer in {str(data)[:200]}")
            return sender.send_and_return_last([("text", answer)])
        parts, note = self._read_stream(lambda: client.completion_messages(payload, stream=True), "message_end", app, sender)
        return sender.send_and_return_last(parts, note=pick(note, chinese) if note else None)
