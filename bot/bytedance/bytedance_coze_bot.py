# encoding:utf-8
"""The Coze bot (``model: coze`` or ``bot_type: coze``): a published Coze bot answers
through Coze's v3 chat API (bot/bytedance/coze_client.py).

Settings are the original's: ``coze_api_base`` (``https://api.coze.cn``, or
``https://api.coze.com`` outside China), ``coze_api_key``, ``coze_bot_id``,
``coze_conversation_max_messages``; new: ``coze_stream`` and ``coze_answer_timeout``.
Differences, on purpose:

* Conversations live in the state store (bot/bytedance/coze_session.py), so a restart
  continues them; a conversation Coze no longer knows is replaced by a new one and the
  question is asked again there, once, without bothering the user.
* The answer is streamed (``coze_stream``) and shown growing on channels that can; with
  ``coze_stream: false`` the chat is created and polled, as the original did through
  cozepy's create_and_poll (now with a time limit, ``coze_answer_timeout``).
* Every channel works: the Coze ``user_id`` is the one the Dify bot would use (the peer in
  a private chat, the member in a group, the group in a shared group session). The
  original refused channels other than wx / wework / gewechat and the WeChat ones.
* The original re-sent its local copy of the history with every question on top of the
  conversation Coze already keeps (and the question twice); here the question is sent
  once and Coze's conversation is the history.
* Errors say what to fix (coze_api_key, coze_bot_id, coze_api_base ...) in the language
  of the question, instead of one generic ``error_reply`` text; the key never reaches the
  log.
* ``coze_return_show_img``: images and file links of an answer are sent as images and files
  by the Dify bot's answer sender (bounded downloads, a failed one sends the link).
  Not ported: image recognition through Coze's file upload.
"""
from __future__ import annotations

from typing import Any

from bot.bot import Bot
from bot.bytedance import coze_client as cc
from bot.bytedance.coze_client import CozeClient, CozeError
from bot.bytedance.coze_session import CozeSessionManager
from bot.dify.dify_bot import resolve_identity
from bot.partial_answer import PartialAnswer
from bridge.bridge import in_language, is_chinese
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from common.log import logger
from common.masking import mask_secret, mask_urls
from common.store import StateStore
from config import conf

DEFAULT_API_BASE = "https://api.coze.cn"
# config-template values of the original: as good as empty.
_PLACEHOLDERS = ("", "xxx")


def error_text(error: CozeError, chinese: bool) -> str:
    kind = error.kind
    if kind == cc.AUTH:
        zh, en = ("Coze 拒绝了访问令牌，请检查配置项 coze_api_key（个人访问令牌 pat_...）以及 coze_api_base（coze.cn 与 coze.com 的令牌不通用）。",
                  "Coze rejected the access token: check coze_api_key (a personal access token, pat_...) and coze_api_base (coze.cn and coze.com tokens differ).")
    elif kind == cc.BOT_NOT_FOUND:
        zh, en = ("找不到这个 Coze 智能体，或它没有发布为 API 服务，请检查配置项 coze_bot_id。",
                  "Coze does not know this bot, or it is not published as an API: check the coze_bot_id setting.")
    elif kind == cc.RATE_LIMITED:
        zh, en = ("Coze 限流了，请稍后再问我吧。", "Coze is rate limiting requests; please try again later.")
    elif kind == cc.FAILED:
        zh, en = ("Coze 智能体这次没能回答，请稍后再试。", "The Coze bot failed to answer this time; please try again later.")
    elif kind == cc.SERVER:
        zh, en = ("Coze 服务暂时不可用，请稍后再试。", "The Coze service is unavailable right now; please try again later.")
    elif kind == cc.CONNECTION:
        zh, en = ("连接不上 Coze 服务，请检查网络以及配置项 proxy 和 coze_api_base。",
                  "Cannot reach the Coze service: check the network and the proxy and coze_api_base settings.")
    elif kind == cc.BAD_URL:
        zh, en = ("配置项 coze_api_base 不是有效的地址（例如 https://api.coze.cn）。",
                  "The coze_api_base setting is not a valid URL (e.g. https://api.coze.cn).")
    elif kind == cc.TIMEOUT:
        zh, en = ("Coze 响应超时（coze_answer_timeout），请稍后再试。",
                  "Coze did not answer in time (coze_answer_timeout); please try again later.")
    elif kind == cc.BROKEN:
        zh, en = ("Coze 的回答中途断开了，请再问一次。", "Coze's answer was cut off; please ask again.")
    elif kind == cc.EMPTY:
        zh, en = ("Coze 智能体没有返回任何内容，请换个说法再试。", "The Coze bot returned an empty answer; please rephrase and try again.")
    elif kind == cc.BAD_RESPONSE:
        zh, en = ("Coze 返回了无法识别的内容，请检查配置项 coze_api_base。",
                  "Coze answered something that is not a v3 chat response: check the coze_api_base setting.")
    else:  # BAD_REQUEST, CONVERSATION_GONE twice
        zh, en = ("Coze 拒绝了这次请求，请稍后再试。", "Coze rejected the request; please try again later.")
    return in_language(zh, en, chinese)


def _show_media() -> bool:
    value = conf().get("coze_return_show_img")
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


class _CozeMedia:
    """What bot.dify.answer.PartSender needs to fetch the images and files of an answer:
    links are absolute (Coze's CDN) or relative to coze_api_base."""

    image_max_bytes = 10 * 1024 * 1024
    file_max_bytes = 50 * 1024 * 1024

    def __init__(self) -> None:
        self.api_base = str(conf().get("coze_api_base") or DEFAULT_API_BASE).rstrip("/")

    def resolve_url(self, url: str) -> str:
        url = (url or "").strip()
        if url.startswith(("http://", "https://")):
            return url
        return self.api_base + ("" if url.startswith("/") else "/") + url

    def download(self, url: str, max_bytes: int) -> tuple[bytes, str]:
        from urllib.parse import urlsplit

        from common import fetch

        return fetch.fetch_bytes(url, max_bytes, extra_hosts=[urlsplit(self.api_base).hostname or ""])


class ByteDanceCozeBot(Bot):
    """``self.sessions`` is what godcmd's ``#reset`` / ``#resetall`` clear."""

    def __init__(self, store: StateStore | None = None) -> None:
        super().__init__()
        self.sessions = CozeSessionManager(store)

    @classmethod
    def settings_problem(cls, settings: Any) -> str | None:
        for key, what in (("coze_api_key", "your Coze personal access token (pat_...)"),
                          ("coze_bot_id", "the id of your published Coze bot")):
            if str(settings.get(key) or "").strip() in _PLACEHOLDERS:
                return f"setting '{key}' is empty: put {what} in it (bot coze)"
        return None

    def reply(self, query: str, context: Context = None) -> Reply:
        ctype = context.type if context is not None else ContextType.TEXT
        chinese = is_chinese(query)
        if ctype == ContextType.IMAGE_CREATE:
            # As the original: the drawing request goes to the bot with its prefix in front.
            query = (conf().get("image_create_prefix") or ["画"])[0] + query
        elif ctype != ContextType.TEXT:
            return Reply(ReplyType.ERROR, in_language(f"Bot不支持处理{ctype}类型的消息", f"This bot cannot handle {ctype} messages.", chinese))
        session_id = str((context.get("session_id") if context is not None else None) or "default")
        user = resolve_identity(context).user if context is not None else session_id
        logger.info("[COZE] question of {} characters from session {}".format(len(query), session_id))
        logger.debug("[COZE] query={}".format(query))
        session = self.sessions.begin_turn(session_id, user)
        partial = PartialAnswer.for_context(context)
        try:
            answer = self._ask(query, session, partial)
        except CozeError as e:
            self._log_failure(e)
            return Reply(ReplyType.ERROR, error_text(e, chinese))
        self.sessions.remember_conversation(session, answer.conversation_id)
        text = answer.text.strip()
        if not text:
            return Reply(ReplyType.ERROR, error_text(CozeError(cc.EMPTY), chinese))
        logger.info("[COZE] answered session {} with {} characters in conversation {}".format(
            session_id, len(text), answer.conversation_id))
        if _show_media() and context is not None:
            # Markdown images and file links become IMAGE / FILE replies, as Dify's answers do.
            from bot.dify.answer import PartSender

            reply = PartSender(_CozeMedia(), context).send_and_return_last([("text", text)])
            return reply or Reply(ReplyType.TEXT, text)
        return Reply(ReplyType.TEXT, text)

    def _ask(self, query: str, session: Any, partial: PartialAnswer | None) -> cc.CozeAnswer:
        client = self._client()
        bot_id = str(conf().get("coze_bot_id") or "")
        stream = bool(conf().get("coze_stream", True))
        on_text = partial.show if partial is not None else None
        try:
            return client.chat(bot_id, session.user, query, session.conversation_id, stream, on_text)
        except CozeError as e:
            if e.kind != cc.CONVERSATION_GONE or not session.conversation_id or e.after_answer:
                raise
            logger.info("[COZE] session {}: Coze no longer knows conversation {}, starting a new one".format(
                session.session_id, session.conversation_id))
            self.sessions.restart_conversation(session)
            return client.chat(bot_id, session.user, query, "", stream, on_text)

    def _client(self) -> CozeClient:
        timeout = conf().get("coze_answer_timeout")
        return CozeClient(
            str(conf().get("coze_api_base") or DEFAULT_API_BASE),
            str(conf().get("coze_api_key") or ""),
            http=self._http(),
            proxy=str(conf().get("proxy") or ""),
            answer_timeout=float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else 300.0,
        )

    def _http(self):
        http = getattr(self, "_session_http", None)
        if http is None:
            import requests

            http = self._session_http = requests.Session()
        return http

    @staticmethod
    def _log_failure(error: CozeError) -> None:
        key = str(conf().get("coze_api_key") or "")
        detail = str(error).replace(key, mask_secret(key)) if key else str(error)
        logger.warning("[COZE] request to {} failed: bot={}, key={}, {}".format(
            mask_urls(str(conf().get("coze_api_base") or DEFAULT_API_BASE)), conf().get("coze_bot_id"),
            mask_secret(key) if key else "(none)", mask_urls(detail)))
