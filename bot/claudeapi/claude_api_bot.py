# encoding:utf-8
"""Claude through Anthropic's Messages API (bot type ``claudeAPI``), with the official
``anthropic`` package.

Chosen by a ``model`` starting with ``claude-3`` (the original's routing) or by
``bot_type: claudeAPI`` with any model name, e.g. ``claude-sonnet-4-5``.

Same settings and behaviour as the original: ``claude_api_key``, ``model`` (its short
names ``claude-3-opus``, ``claude-3-sonnet``, ``claude-3-haiku``, ``claude-3.5-sonnet``
are mapped to full model ids), ``character_desc`` as the system prompt, ``max_tokens``
4096 (now the setting ``claude_max_tokens``), per-session history trimmed to
``conversation_max_tokens``, and the ``#清除记忆`` / ``#清除所有`` commands.
Differences, on purpose:

* ``claude_api_base`` points at a relay; the original reused ``open_ai_api_base`` for
  that, so that one is still read when ``claude_api_base`` is empty and it is not
  OpenAI's own address (sending Claude requests to api.openai.com never worked).
* The answer is streamed (``claude_stream``, default on) and shown growing on channels
  that can show partial answers; ``claude_stream: false`` asks for one JSON answer.
  ``request_timeout`` bounds the whole answer, streamed or not, from before the request;
  a question is never sent again once Anthropic may have received it (only a 429, a 529
  or a connection that was never made is retried, within the same deadline).
* A model name that is not Claude's (the default ``gpt-3.5-turbo``, a user's ``#model``
  choice for another bot) is replaced by the configured Claude model, else
  DEFAULT_MODEL: Anthropic would answer 404 to every message.
* The history sent keeps Claude's rules: the system prompt goes apart (``system``),
  roles alternate starting with the user (two questions in a row, left by a failed
  turn of the original, are merged), and a failed turn leaves no question behind.
* Errors say what to fix (key, model, quota, base URL, overloaded) in the language of
  the question; the original answered "我现在有点累了，等会再来吧" to all of them and
  slept 20 s twice on a rate limit. The key is masked wherever it is logged.
* Image creation (the original's hook into OpenAI's DALL-E) is not offered: Claude
  cannot draw, and the user is told so.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Iterable

from bot.bot import Bot
from bot.chatgpt.chat_gpt_session import trim_messages, estimate_message_tokens
from bot.partial_answer import PartialAnswer
from bot.session_manager import Session, SessionManager
from bridge.bridge import in_language, is_chinese
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from common import const
from common.log import logger
from common.masking import mask_secret, mask_urls
from config import conf

DEFAULT_API_BASE = "https://api.anthropic.com"
DEFAULT_MAX_TOKENS = 4096
DEFAULT_MODEL = const.CLAUDE_35_SONNET  # when neither the asked-for nor the configured model is Claude's
DEFAULT_REQUEST_TIMEOUT = 180.0
CONNECT_TIMEOUT = 10.0
RETRY_PAUSE = 0.5  # seconds before the first retry of a refused request, doubled each time
MAX_RETRY_PAUSE = 8.0

# The original's short names -> model ids Anthropic accepts.
MODEL_ALIASES = {
    "claude-3-opus": const.CLAUDE_3_OPUS,
    "claude-3-sonnet": const.CLAUDE_3_SONNET,
    "claude-3-haiku": const.CLAUDE_3_HAIKU,
    "claude-3.5-sonnet": const.CLAUDE_35_SONNET,
    "claude-3-5-sonnet": const.CLAUDE_35_SONNET,
}


def model_id(model: str) -> str:
    return MODEL_ALIASES.get(model, model)


def is_claude_model(name: str) -> bool:
    return name.strip().lower().startswith("claude")


def chosen_model(requested: str, configured: str) -> str:
    """The model id to ask Anthropic for. A name that is not Claude's (the default
    gpt-3.5-turbo, a per-user #model gpt-4o, any other vendor's) would be a 404 on every
    message: the configured `model` is used instead when it is a Claude name, else
    DEFAULT_MODEL (as the vendor presets fall back to their default model)."""
    for name in (requested, configured):
        if name and is_claude_model(name):
            return model_id(name.strip())
    return DEFAULT_MODEL


# --- errors ----------------------------------------------------------------------

AUTH, FORBIDDEN, NOT_FOUND, RATE_LIMITED, OVERLOADED = "auth", "forbidden", "not_found", "rate_limited", "overloaded"
BAD_REQUEST, SERVER, CONNECTION, TIMEOUT, BROKEN, EMPTY = "bad_request", "server", "connection", "timeout", "broken", "empty"


class ClaudeError(Exception):
    def __init__(self, kind: str, detail: str = "", status: int | None = None):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
        self.status = status


def _classify(error: BaseException, answered: bool) -> ClaudeError:
    """The ClaudeError for an exception of the anthropic package (or of its HTTP layer
    while a stream was read)."""
    import anthropic

    if isinstance(error, ClaudeError):
        return error
    if isinstance(error, anthropic.APIStatusError):
        status = error.status_code
        message = _error_message(error)
        detail = f"HTTP {status}: {message}"
        if status == 401:
            return ClaudeError(AUTH, detail, status)
        if status == 403:
            return ClaudeError(FORBIDDEN, detail, status)
        if status == 404:
            return ClaudeError(NOT_FOUND, detail, status)
        if status == 429:
            return ClaudeError(RATE_LIMITED, detail, status)
        if status == 529 or _error_type(error) == "overloaded_error":
            return ClaudeError(OVERLOADED, detail, status)
        if status >= 500:
            return ClaudeError(SERVER, detail, status)
        return ClaudeError(BAD_REQUEST, detail, status)
    if isinstance(error, anthropic.APITimeoutError):
        return ClaudeError(TIMEOUT, str(error))
    if isinstance(error, anthropic.APIConnectionError):
        return ClaudeError(BROKEN if answered else CONNECTION, f"{error} ({error.__cause__ or ''})")
    if isinstance(error, anthropic.APIError):
        # An "error" event inside a stream (the SDK raises it without a status).
        kind = OVERLOADED if _error_type(error) == "overloaded_error" else (BROKEN if answered else SERVER)
        return ClaudeError(kind, _error_message(error))
    # The HTTP layer's own errors surface as they are while a stream is read.
    name = type(error).__name__
    if "Timeout" in name:
        return ClaudeError(TIMEOUT, f"{name}: {error}")
    return ClaudeError(BROKEN if answered else CONNECTION, f"{name}: {error}")


def _error_body(error: Any) -> dict:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        return inner if isinstance(inner, dict) else {}
    return {}


def _error_type(error: Any) -> str:
    return str(_error_body(error).get("type") or "")


def _error_message(error: Any) -> str:
    return str(_error_body(error).get("message") or getattr(error, "message", "") or error)[:500]


def error_text(error: ClaudeError, model: str, base_setting: str, chinese: bool) -> str:
    kind = error.kind
    if kind == AUTH:
        zh, en = ("Claude 的 API Key 无效（401），请检查配置项 claude_api_key。",
                  "The Claude API key was rejected (401): check the claude_api_key setting.")
    elif kind == NOT_FOUND:
        zh = f"找不到 Claude 模型“{model}”或接口地址（404），请检查配置项 model 和 {base_setting}。"
        en = f"Claude model '{model}' or its API address not found (404): check the model and {base_setting} settings."
        if model.startswith("claude-3"):
            # Anthropic retires old models; the routing of the original only knows claude-3*.
            zh += "较早的 claude-3 模型可能已下线：可把 bot_type 设为 claudeAPI 并选用新模型（如 claude-sonnet-4-5）。"
            en += " Older claude-3 models may be retired: set bot_type to claudeAPI and choose a current model (e.g. claude-sonnet-4-5)."
    elif kind == FORBIDDEN:
        zh, en = ("Claude 拒绝访问（403），请检查 API Key 的权限或所在地区。",
                  "Claude denied access (403): check the key's permissions and the region.")
    elif kind == RATE_LIMITED:
        zh, en = ("Claude 限流了（429），请稍后再问我吧。",
                  "Claude is rate limiting requests (429); please try again later.")
    elif kind == OVERLOADED:
        zh, en = ("Claude 现在过载了（529），请稍后再试。",
                  "Claude is overloaded right now (529); please try again later.")
    elif kind == BAD_REQUEST:
        zh, en = (f"Claude 拒绝了这次请求（HTTP {error.status}），已清除本会话的记忆，请再试一次。",
                  f"Claude rejected the request (HTTP {error.status}); this conversation's memory was cleared, please try again.")
    elif kind == SERVER:
        zh, en = ("Claude 服务暂时不可用，请稍后再试。", "The Claude service is unavailable right now; please try again later.")
    elif kind == CONNECTION:
        zh, en = (f"连接不上 Claude 服务，请检查网络以及配置项 proxy 和 {base_setting}。",
                  f"Cannot reach the Claude service: check the network and the proxy and {base_setting} settings.")
    elif kind == TIMEOUT:
        zh, en = ("Claude 响应超时（request_timeout），请稍后再试。", "Claude did not answer in time (request_timeout); please try again later.")
    elif kind == BROKEN:
        zh, en = ("Claude 的回答中途断开了，请再问一次。", "Claude's answer was cut off; please ask again.")
    else:  # EMPTY
        zh, en = ("Claude 没有返回任何内容，请换个说法再试。", "Claude returned an empty answer; please rephrase and try again.")
    return in_language(zh, en, chinese)


# --- the session -------------------------------------------------------------------


class ClaudeSession(Session):
    """The history in the OpenAI shape sessions share (system message first); turned into
    Claude's shape by :func:`claude_messages` when sent."""

    def __init__(self, session_id: Any, system_prompt: str | None = None, model: str = ""):
        super().__init__(session_id, system_prompt)
        self.model = model

    def discard_exceeding(self, max_tokens: int | None = None, cur_tokens: int | None = None) -> int:
        return trim_messages(self.messages, max_tokens)

    def calc_tokens(self) -> int:
        return estimate_message_tokens(self.messages)


def claude_messages(messages: Iterable[dict]) -> tuple[str, list[dict]]:
    """(system prompt, messages) for the Messages API: system messages go apart, the list
    starts with the user, and two messages of one role in a row are merged."""
    system_parts: list[str] = []
    turns: list[dict] = []
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        text = content if isinstance(content, str) else ("" if content is None else str(content))
        if role == "system":
            if text.strip():
                system_parts.append(text)
            continue
        if role not in ("user", "assistant") or not text.strip():
            continue
        if not turns and role == "assistant":
            continue  # Claude wants the user first
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + text
        else:
            turns.append({"role": role, "content": text})
    return "\n\n".join(system_parts), turns


@dataclass
class Answer:
    text: str
    input_tokens: int = 0
    output_tokens: int = 0
    stop_reason: str | None = None


# --- the bot -----------------------------------------------------------------------


def _root(url: str) -> str:
    # The client adds /v1/messages itself; a base written the OpenAI way (".../v1") would
    # otherwise ask for /v1/v1/messages.
    url = url.strip().rstrip("/")
    return url[:-3] if url.endswith("/v1") else url


def _api_base() -> tuple[str, str]:
    """(base URL, the setting it came from)."""
    own = str(conf().get("claude_api_base") or "").strip()
    if own:
        return _root(own), "claude_api_base"
    shared = str(conf().get("open_ai_api_base") or "").strip()
    if shared and "api.openai.com" not in shared:
        # The original's way of pointing Claude at a relay.
        return _root(shared), "open_ai_api_base"
    return DEFAULT_API_BASE, "claude_api_base"


def _request_timeout() -> float:
    value = conf().get("request_timeout")
    return float(value) if isinstance(value, (int, float)) and value > 0 else DEFAULT_REQUEST_TIMEOUT


class ClaudeAPIBot(Bot):
    """``self.sessions`` is what godcmd's ``#reset`` / ``#resetall`` clear."""

    # Retries of a request Anthropic cannot have taken in: refused (429, 529) or never
    # connected. The anthropic client's own retries are off (max_retries=0): they also
    # resend after a timeout or a 5xx, when the question may have been received and
    # answered (a silent server got it three times). Tests lower it.
    max_retries: int = 2

    def __init__(self) -> None:
        super().__init__()
        self.sessions = SessionManager(ClaudeSession, model=conf().get("model") or "")
        self._client: Any = None
        self._client_key: tuple | None = None
        self._said_models: set[str] = set()

    @classmethod
    def settings_problem(cls, settings: Any) -> str | None:
        if str(settings.get("claude_api_key") or "").strip():
            return None
        return "setting 'claude_api_key' is empty: put your Anthropic API key in it (bot claudeAPI, chosen by model or bot_type)"

    def reply(self, query: str, context: Context = None) -> Reply:
        ctype = context.type if context is not None else ContextType.TEXT
        chinese = is_chinese(query)
        if ctype == ContextType.TEXT:
            return self._reply_chat(query, context)
        if ctype == ContextType.IMAGE_CREATE:
            return Reply(ReplyType.ERROR, in_language("Claude 不能画图。", "Claude cannot create images.", chinese))
        return Reply(ReplyType.ERROR, in_language(f"Bot不支持处理{ctype}类型的消息", f"This bot cannot handle {ctype} messages.", chinese))

    def _reply_chat(self, query: str, context: Context | None) -> Reply:
        session_id = context.get("session_id") if context is not None else None
        logger.info("[CLAUDE_API] question of {} characters from session {}".format(len(query), session_id))
        logger.debug("[CLAUDE_API] query={}".format(query))
        if query == "#清除记忆" or query in (conf().get("clear_memory_commands") or []):
            self.sessions.clear_session(session_id)
            return Reply(ReplyType.INFO, "记忆已清除")
        if query == "#清除所有":
            self.sessions.clear_all_session()
            return Reply(ReplyType.INFO, "所有人记忆已清除")
        chinese = is_chinese(query)
        session = self.sessions.session_query(query, session_id)
        with self.sessions.lock_for(session):
            system, messages = claude_messages(session.messages)
        requested = str((context.get("gpt_model") if context is not None else None) or conf().get("model") or "")
        model = chosen_model(requested, str(conf().get("model") or ""))
        if model != model_id(requested) and requested not in self._said_models:
            self._said_models.add(requested)  # once per name
            logger.info("[CLAUDE_API] model '{}' is not a Claude model; asking for '{}'".format(requested, model))
        base, base_setting = _api_base()
        partial = PartialAnswer.for_context(context)
        try:
            answer = self._ask(model, system, messages, partial)
        except Exception as e:
            error = _classify(e, answered=False)
            self._forget_question(session, query)
            if error.kind == BAD_REQUEST:
                # As the original: a history the API rejects is dropped so the next question works.
                self.sessions.clear_session(session_id)
            self._log_failure(error, model, base)
            return Reply(ReplyType.ERROR, error_text(error, model, base_setting, chinese))
        self.sessions.session_reply(answer.text, session_id, answer.input_tokens + answer.output_tokens or None)
        logger.info("[CLAUDE_API] answered session {} with {} characters (tokens in {}, out {})".format(
            session_id, len(answer.text), answer.input_tokens, answer.output_tokens))
        return Reply(ReplyType.TEXT, answer.text)

    def _forget_question(self, session: Session, query: str) -> None:
        with self.sessions.lock_for(session):
            if session.messages and session.messages[-1].get("role") == "user" and session.messages[-1].get("content") == query:
                session.messages.pop()

    def _log_failure(self, error: ClaudeError, model: str, base: str) -> None:
        key = str(conf().get("claude_api_key") or "")
        detail = str(error)
        if key:
            detail = detail.replace(key, mask_secret(key))
        logger.warning("[CLAUDE_API] request to {} failed: model={}, key={}, {}".format(
            mask_urls(base), model, mask_secret(key) if key else "(none)", mask_urls(detail)))

    # -- transport ---------------------------------------------------------------------

    def client(self) -> Any:
        """The anthropic client for the current settings (made again when they change)."""
        import anthropic

        key = str(conf().get("claude_api_key") or "")
        base, _ = _api_base()
        proxy = str(conf().get("proxy") or "")
        wanted = (key, base, proxy)
        if self._client is None or self._client_key != wanted:
            options: dict[str, Any] = {}
            if proxy:
                options["http_client"] = anthropic.DefaultHttpxClient(proxy=proxy)
            # Each request gets its own timeout (what is left of its deadline), see _ask.
            self._client = anthropic.Anthropic(api_key=key, base_url=base, max_retries=0, **options)
            self._client_key = wanted
        return self._client

    def _ask(self, model: str, system: str, messages: list[dict], partial: PartialAnswer | None) -> Answer:
        """One answer within request_timeout, counted from before the first request: the
        wait for the answer, a body read slowly and the retries of _safe_to_retry all share it."""
        self.client()  # made (and anthropic imported, slow the first time) before the clock starts
        total = _request_timeout()
        deadline = time.monotonic() + total
        max_tokens = int(conf().get("claude_max_tokens") or DEFAULT_MAX_TOKENS)
        request: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "messages": messages}
        if system:
            request["system"] = system
        attempt = 0
        while True:
            try:
                answer = self._ask_once(request, partial, deadline, total)
                break
            except Exception as e:
                error = _classify(e, answered=False)
                pause = min(RETRY_PAUSE * (2 ** attempt), MAX_RETRY_PAUSE)
                if attempt >= self.max_retries or not _safe_to_retry(e) or time.monotonic() + pause >= deadline:
                    raise error from None
                attempt += 1
                logger.info("[CLAUDE_API] {}, asking again in {:g} s ({}/{})".format(error, pause, attempt, self.max_retries))
                time.sleep(pause)
        if answer.stop_reason == "max_tokens":
            logger.warning("[CLAUDE_API] the answer was cut at claude_max_tokens ({})".format(max_tokens))
        answer.text = answer.text.strip()
        if not answer.text:
            raise ClaudeError(EMPTY, f"no text in the answer (stop_reason={answer.stop_reason})")
        return answer

    def _ask_once(self, request: dict, partial: PartialAnswer | None, deadline: float, total: float) -> Answer:
        import anthropic

        left = deadline - time.monotonic()
        if left <= 0:
            raise ClaudeError(TIMEOUT, f"not answered within request_timeout ({total:g} s)")
        # The wait for the answer's headers is bounded by what is left; the body by the watchdog.
        timeout = anthropic.Timeout(left, connect=min(CONNECT_TIMEOUT, left))
        client = self.client()
        if conf().get("claude_stream", True):
            return self._read_stream(client.messages.create(stream=True, timeout=timeout, **request), partial,
                                     deadline, total)
        with _Watchdog(deadline) as watchdog:
            with client.messages.with_streaming_response.create(timeout=timeout, **request) as raw:
                watchdog.closes(raw.http_response)
                try:
                    response = raw.parse()
                except Exception:
                    if watchdog.expired.is_set():
                        raise ClaudeError(TIMEOUT, f"not answered within request_timeout ({total:g} s)") from None
                    raise
        text = "".join(getattr(block, "text", "") or "" for block in (response.content or []) if getattr(block, "type", "") == "text")
        usage = response.usage
        return Answer(text, getattr(usage, "input_tokens", 0) or 0, getattr(usage, "output_tokens", 0) or 0, response.stop_reason)

    @staticmethod
    def _read_stream(stream: Any, partial: PartialAnswer | None, deadline: float, total_seconds: float) -> Answer:
        """The answer of a stream, read until ``deadline``: a server that trickles keeps
        every read within its timeout, so a timer closes the stream then (the read in
        progress fails) and the user is told."""
        parts: list[str] = []
        answer = Answer("")
        finished = False
        watchdog = _Watchdog(deadline)
        watchdog.closes(stream)
        expired = watchdog.expired
        watchdog.start()
        try:
            with stream:
                for event in stream:
                    kind = getattr(event, "type", "")
                    if kind == "message_start":
                        usage = getattr(event.message, "usage", None)
                        answer.input_tokens = getattr(usage, "input_tokens", 0) or 0
                    elif kind == "content_block_delta":
                        piece = getattr(event.delta, "text", None)
                        if piece:
                            parts.append(piece)
                            if partial is not None:
                                partial.show("".join(parts))
                    elif kind == "message_delta":
                        answer.stop_reason = getattr(event.delta, "stop_reason", None) or answer.stop_reason
                        answer.output_tokens = getattr(getattr(event, "usage", None), "output_tokens", 0) or answer.output_tokens
                    elif kind == "message_stop":
                        finished = True
        except Exception as e:
            if expired.is_set():
                raise ClaudeError(TIMEOUT, f"not answered within request_timeout ({total_seconds:g} s)") from None
            raise _classify(e, answered=bool(parts)) from None
        finally:
            watchdog.cancel()
        if not finished:
            # The body ended cleanly but without message_stop: the answer may be incomplete.
            raise ClaudeError(BROKEN if parts else EMPTY, "the stream ended without message_stop")
        answer.text = "".join(parts)
        return answer


def _safe_to_retry(error: BaseException) -> bool:
    """True when Anthropic cannot have taken the question in: it refused it (429 rate
    limit, 529 overloaded) or no connection was made. A timeout, a 5xx or a connection
    lost after sending may come after the question was received: never resent."""
    import anthropic
    import httpx

    if isinstance(error, anthropic.APIStatusError):
        return error.status_code in (429, 529)
    if isinstance(error, anthropic.APITimeoutError):
        return False
    if isinstance(error, anthropic.APIConnectionError):
        return isinstance(error.__cause__, httpx.ConnectError)
    return False


class _Watchdog:
    """Closes what it was given at ``deadline`` (a stream or an HTTP response whose body
    is being read), so a read that keeps getting a byte now and then ends there."""

    def __init__(self, deadline: float) -> None:
        self.expired = threading.Event()
        self._deadline = deadline
        self._target: Any = None
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None

    def closes(self, target: Any) -> None:
        with self._lock:
            self._target = target
            if self.expired.is_set():
                target.close()

    def _expire(self) -> None:
        with self._lock:
            self.expired.set()
            target = self._target
        if target is not None:
            try:
                target.close()
            except Exception:  # closing from this thread may race the reader; it fails either way
                pass

    def start(self) -> None:
        self._timer = threading.Timer(max(0.0, self._deadline - time.monotonic()), self._expire)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def __enter__(self) -> "_Watchdog":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cancel()
