# encoding:utf-8
"""The OpenAI-style chat bot: OpenAI, Azure OpenAI, and any server speaking the
same ``/chat/completions`` API (DeepSeek, Moonshot, Qwen's compatible mode,
one-api, Ollama, vLLM ...), selected with ``bot_type: chatGPT`` and pointed at
with ``open_ai_api_base``.

Same behaviour as the original (settings, per-user key and model, the
``#清除记忆`` / ``#清除所有`` / ``#更新配置`` commands, history trimmed to
``conversation_max_tokens``, image generation, the two rate limits).
Differences, on purpose:

* Plain HTTP through ``requests`` instead of the retired ``openai<1.0`` SDK
  and its process-wide globals, so two bots (or a plugin's extra bot) never
  overwrite each other's key, base URL or proxy.
* Answers are streamed (``"stream": true``, read as server-sent events), so a
  slow model does not hit a proxy's idle cut-off; a server that ignores the
  flag and sends one JSON answer works too.
* Settings are read at each request, so ``#更新配置`` and ``#model`` take
  effect at once (the original fixed model and sampling at start-up).
* Errors are short, say what to check (the key, the model, the base URL, the
  quota), and are in Chinese when the question is; the details go to the log
  with the key masked. The original's texts ("我现在有点累了，等会再来吧",
  "请再问我一次" ...) never said what to fix.
* Retries are bounded and quick: 5xx answers and connection failures are
  retried twice with exponential back-off (1 s, 2 s), and only before any
  part of the answer arrived. A 429 is reported at once instead of sleeping
  20 s twice while the user waits; a timeout is not retried (it already took
  ``request_timeout`` seconds).
* ``request_timeout`` is the total time of a request, retries included: a
  watchdog (:mod:`common.deadline`) closes a stream that still trickles when
  it passes (the original's value only bounded the wait between two reads,
  so a server sending a token every few seconds held a worker forever).
* The session keeps a question only when it got an answer: a failed request
  leaves no unanswered question in the history. As in the original, a
  request the server rejects as invalid (HTTP 400, e.g. context too long)
  clears the session.
* When the ``rate_limit_chatgpt`` bucket is empty the user is told the bot
  is busy right away (the original slept 20 s, twice, then said so).
* Image answers given as base64 (``b64_json``, e.g. gpt-image-1) become an
  IMAGE reply; the original only understood URLs.
* Azure image generation uses the deployments endpoint for every model; the
  old asynchronous DALL-E 2 preview API (``:submit`` + polling) is retired
  by Azure and not supported.
* Not ported: the OpenAI vision hook (``image_recognition`` with this bot)
  and the fork's ``failover_model``.
"""
from __future__ import annotations

import base64
import io
import itertools
import json
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TypeVar

import requests
import tenacity
from sseclient import SSEClient
from urllib3.exceptions import ReadTimeoutError

from bot.bot import Bot
from bot.partial_answer import PartialAnswer
from bot.chatgpt.chat_gpt_session import ChatGPTSession
from bot.session_manager import Session, SessionManager
from bridge.bridge import in_language, is_chinese
from bridge.context import Context, ContextType
from bridge.reply import Reply, ReplyType
from common import const
from common.deadline import Deadline
from common.log import logger
from common.masking import mask_secret, mask_urls, mask_value
from common.sse import EventTooLarge, capped_events, max_answer_bytes, read_size
from common.text import safe_text
from common.token_bucket import TokenBucket
from config import conf, load_config

T = TypeVar("T")

DEFAULT_API_BASE = "https://api.openai.com/v1"
DEFAULT_AZURE_API_VERSION = "2024-02-15-preview"
DEFAULT_REQUEST_TIMEOUT = 180.0
# A server that does not even accept the connection in this time is down;
# waiting the whole request_timeout (180 s) for that only delays the retry.
CONNECT_TIMEOUT = 10.0
MAX_ANSWER_BYTES = 8 * 1024 * 1024  # a JSON answer larger than this is not a chat answer
MAX_ERROR_BYTES = 64 * 1024

# Reasoning models (o1, o3-mini, o4-mini ...) reject the sampling parameters;
# the first ones also reject a system message (the original sent them a
# history without one).
_FIXED_SAMPLING = re.compile(r"^o\d+(-|$)")
_NO_SYSTEM_PROMPT = ("o1-mini", "o1-preview")


# --- errors -------------------------------------------------------------------

AUTH = "auth"  # 401
FORBIDDEN = "forbidden"  # 403
NOT_FOUND = "not_found"  # 404: model, deployment or endpoint
RATE_LIMITED = "rate_limited"  # 429
QUOTA = "quota"  # 429 insufficient_quota
BAD_REQUEST = "bad_request"  # other 4xx
CONTENT_POLICY = "content_policy"
SERVER = "server"  # 5xx
CONNECTION = "connection"
TIMEOUT = "timeout"
BROKEN = "broken"  # the stream stopped after part of the answer
BAD_RESPONSE = "bad_response"  # not an OpenAI-style answer
UPSTREAM = "upstream"  # an error object inside a 200 answer or a stream
EMPTY = "empty"
TOO_LARGE = "too_large"  # one streamed event larger than answer_max_chars allows
BAD_URL = "bad_url"  # open_ai_api_base is not a URL
BAD_PROXY = "bad_proxy"  # the proxy setting cannot be used

_RETRYABLE = (SERVER, CONNECTION)


class ChatAPIError(Exception):
    """A request to the model service failed; ``kind`` says how (one of the names above)."""

    def __init__(self, kind: str, detail: str = "", status: int | None = None, code: str | None = None, after_answer: bool = False):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
        self.status = status
        self.code = code
        self.after_answer = after_answer

    @property
    def retryable(self) -> bool:
        return self.kind in _RETRYABLE and not self.after_answer


@dataclass
class Answer:
    content: str
    usage: dict | None = None
    finish_reason: str | None = None


@dataclass
class _Call:
    """One request and what the user must be told about it if it fails."""

    purpose: str  # "chat" or "image"
    url: str
    headers: dict[str, str]
    payload: dict[str, Any]
    api_key: str = ""
    own_key: bool = False  # the user's key (#set_openai_api_key), not the configured one
    target: str = ""  # the model or deployment, named in "not found"
    target_words: tuple[str, str] = ("模型", "Model")
    settings: str = "model, open_ai_api_base"  # what to check when it is not found
    # The settings named in the key and address errors (a vendor preset names its own).
    key_setting: str = "open_ai_api_key"
    base_setting: str = "open_ai_api_base"
    progress: dict[str, bool] = field(default_factory=dict)
    partial: Any = None  # a PartialAnswer when the channel shows the answer growing


def _error_fields(body: bytes) -> tuple[str, str | None, str | None]:
    """(message, type, code) of an error body: OpenAI's shape, Azure's, or plain text."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500], None, None
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        message = error.get("message") or error.get("msg") or json.dumps(error, ensure_ascii=False)
        code = error.get("code")
        etype = error.get("type")
        return str(message)[:500], (str(etype) if etype is not None else None), (str(code) if code is not None else None)
    return str(error)[:500], None, None


def _status_error(status: int, body: bytes) -> ChatAPIError:
    message, etype, code = _error_fields(body)
    detail = f"HTTP {status}: {message}"
    if status == 401:
        kind = AUTH
    elif status == 403:
        kind = FORBIDDEN
    elif status == 404:
        kind = NOT_FOUND
    elif status == 429:
        kind = QUOTA if "insufficient_quota" in (code, etype) else RATE_LIMITED
    elif status >= 500 or status == 408:
        kind = SERVER
    elif code == "content_policy_violation" or "safety system" in message:
        kind = CONTENT_POLICY
    else:
        kind = BAD_REQUEST
    return ChatAPIError(kind, detail, status=status, code=code or etype)


def _read_limited(resp: requests.Response, limit: int) -> bytes:
    data = bytearray()
    for chunk in resp.iter_content(chunk_size=None):
        data += chunk
        if len(data) > limit:
            break
    return bytes(data)


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or a list of parts (OpenAI's
    multi-part form, or FastGPT's tool-call form where text is {"content": ...})."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if isinstance(part, dict) and part.get("type", "text") == "text":
                text = part.get("text")
                if isinstance(text, dict):
                    text = text.get("content")
                if isinstance(text, str):
                    texts.append(text)
        return "".join(texts)
    return ""


def _is_read_timeout(error: BaseException) -> bool:
    if isinstance(error, requests.exceptions.Timeout):
        return True
    # requests reports a read timeout inside iter_content as a ConnectionError
    # wrapping urllib3's ReadTimeoutError.
    return any(isinstance(arg, ReadTimeoutError) for arg in getattr(error, "args", ()))


# --- user-facing texts ----------------------------------------------------------


def error_text(error: ChatAPIError, call: _Call, chinese: bool) -> str:
    """The short message the user gets for ``error``."""
    kind = error.kind
    status = error.status or ""
    # What the service said: the HTTP status, or (an error inside a 200 answer) its own code.
    said = error.status or error.code
    image = call.purpose == "image"
    if kind == AUTH:
        if call.own_key:
            zh, en = ("你设置的 API Key 无效（401），请用 #set_openai_api_key 重新设置。",
                      "Your own API key was rejected (401): set it again with #set_openai_api_key.")
        else:
            zh, en = (f"API Key 无效（{said or 401}），请检查配置项 {call.key_setting}。",
                      f"The API key was rejected ({said or 401}): check the {call.key_setting} setting.")
    elif kind == NOT_FOUND:
        word_zh, word_en = call.target_words
        zh = f"找不到{word_zh}“{call.target}”或接口地址（{said or 404}），请检查配置项 {call.settings}。"
        en = f"{word_en} '{call.target}' or its API address not found ({said or 404}): check {call.settings}."
    elif kind == FORBIDDEN:
        zh, en = ("模型服务拒绝访问（403），请检查账号权限或所在地区是否可用。",
                  "The model service denied access (403): check the account's permissions and region.")
    elif kind == QUOTA:
        zh, en = (f"API 额度已用完（{said or 429}），请检查账户余额。",
                  f"The API quota is used up ({said or 429}): check the account's billing.")
    elif kind == RATE_LIMITED:
        zh, en = ("模型服务限流了（429），请稍后再问我吧。",
                  "The model service is rate limiting requests (429); please try again later.")
    elif kind == CONTENT_POLICY:
        zh, en = ("画图出现问题，关键字没有通过安全审核。" if image else "内容没有通过安全审核，请换个说法。",
                  "The request was rejected by the content filter; please rephrase it.")
    elif kind == BAD_REQUEST:
        if image:
            zh, en = (f"画图请求被拒绝（HTTP {status}），请换个描述或检查配置项 image_create_size。",
                      f"The image request was rejected (HTTP {status}): try another description or check the image_create_size setting.")
        else:
            zh, en = (f"模型服务拒绝了这次请求（HTTP {status}），已清除本会话的记忆，请再试一次。",
                      f"The model service rejected the request (HTTP {status}); this conversation's memory was cleared, please try again.")
    elif kind == SERVER:
        zh, en = (f"模型服务暂时不可用（HTTP {status}），请稍后再试。",
                  f"The model service is unavailable right now (HTTP {status}); please try again later.")
    elif kind == CONNECTION:
        zh, en = (f"连接不上模型服务，请检查网络以及配置项 proxy 和 {call.base_setting}。",
                  f"Cannot reach the model service: check the network and the proxy and {call.base_setting} settings.")
    elif kind == TIMEOUT:
        zh, en = ("模型服务响应超时，请稍后再试。",
                  "The model service did not answer in time (request_timeout); please try again later.")
    elif kind == BROKEN:
        zh, en = ("回答中途断开了，请再问一次。", "The answer was cut off; please ask again.")
    elif kind == BAD_URL:
        zh, en = (f"配置项 {call.base_setting} 不是有效的地址（应以 http:// 或 https:// 开头）。",
                  f"The {call.base_setting} setting is not a valid URL (it must start with http:// or https://).")
    elif kind == BAD_PROXY:
        zh, en = ("配置项 proxy 无法使用（应为 http://主机:端口；socks5 代理需要安装 PySocks）。",
                  "The proxy setting cannot be used (expected http://host:port; a socks5 proxy needs PySocks installed).")
    elif kind == EMPTY:
        zh, en = ("模型没有返回任何内容，请换个说法再试。", "The model returned an empty answer; please rephrase and try again.")
    elif kind == TOO_LARGE:
        zh, en = ("模型的回答太大，无法显示，请让回答短一些。", "The model's answer was too large to show; please ask for a shorter one.")
    elif kind == BAD_RESPONSE:
        zh, en = (f"模型服务返回了无法识别的内容，请检查配置项 {call.base_setting} 是否指向 OpenAI 兼容接口。",
                  f"The model service answered something that is not an OpenAI-style response: check that {call.base_setting} points to an OpenAI-compatible API.")
    else:  # UPSTREAM and anything new
        zh, en = ("模型服务返回了错误，请稍后再试。", "The model service returned an error; please try again later.")
    return in_language(zh, en, chinese)


_BUSY = ("问得太快了，请稍等片刻再问。", "Too many questions at once; please wait a moment and ask again.")
_IMAGE_BUSY = ("画图请求太多了，请稍等片刻再试。", "Too many image requests at once; please wait a moment and try again.")


# --- the bot --------------------------------------------------------------------


_PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")


def _usable_proxy(proxy: str) -> bool:
    """A proxy URL with a known scheme and a host (the port may be left to the scheme)."""
    from urllib3.util import parse_url
    from urllib3.exceptions import LocationParseError

    try:
        parsed = parse_url(proxy)
    except (LocationParseError, ValueError):
        return False
    return parsed.scheme in _PROXY_SCHEMES and bool(parsed.host)


class ChatGPTBot(Bot):
    """OpenAI-compatible chat completions, with per-session history."""

    # Retries of a 5xx answer or a failed connection, and the pause before the
    # first one (it doubles each time). Tests make the pause tiny.
    max_retries: int = 2
    retry_wait: float = 1.0

    def __init__(self) -> None:
        super().__init__()
        self.sessions = SessionManager(ChatGPTSession, model=conf().get("model") or const.GPT35)
        self.http = requests.Session()
        self._buckets: dict[str, tuple[int, TokenBucket]] = {}
        self._buckets_lock = threading.Lock()

    @classmethod
    def settings_problem(cls, settings: Any) -> str | None:
        if str(settings.get("open_ai_api_key") or "").strip():
            return None
        base = str(settings.get("open_ai_api_base") or DEFAULT_API_BASE).strip().rstrip("/")
        if base != DEFAULT_API_BASE:
            return None  # a local or self-hosted server may want no key
        return ("setting 'open_ai_api_key' is empty: put your OpenAI API key in it "
                "(or point open_ai_api_base at a server that needs no key)")

    # -- the original's attribute, now computed from the live settings
    @property
    def args(self) -> dict[str, Any]:
        timeout = conf().get("request_timeout")
        return {
            "model": conf().get("model") or const.GPT35,
            "temperature": conf().get("temperature"),
            "top_p": conf().get("top_p"),
            "frequency_penalty": conf().get("frequency_penalty"),
            "presence_penalty": conf().get("presence_penalty"),
            "request_timeout": timeout,
            "timeout": timeout,
        }

    def reply(self, query: str, context: Context = None) -> Reply:
        ctype = context.type if context is not None else ContextType.TEXT
        if ctype == ContextType.TEXT:
            return self._reply_chat(query, context)
        if ctype == ContextType.IMAGE_CREATE:
            return self._reply_image(query, context)
        if is_chinese(query):
            return Reply(ReplyType.ERROR, "Bot不支持处理{}类型的消息".format(ctype))
        return Reply(ReplyType.ERROR, "This bot cannot handle {} messages.".format(ctype))

    # -- chat ------------------------------------------------------------------

    def _reply_chat(self, query: str, context: Context | None) -> Reply:
        session_id = context.get("session_id") if context is not None else None
        # Who and how much at INFO; what was asked only at DEBUG.
        logger.info("[CHATGPT] question of {} characters from session {}".format(len(query), session_id))
        logger.debug("[CHATGPT] query={}".format(query))
        command = self._command(query, session_id)
        if command is not None:
            return command
        chinese = is_chinese(query)
        if not self._take_token("chat", "rate_limit_chatgpt"):
            logger.warning("[CHATGPT] rate_limit_chatgpt reached, session={}".format(session_id))
            return Reply(ReplyType.ERROR, in_language(*_BUSY, chinese))

        session = self.sessions.session_query(query, session_id)
        with self.sessions.lock_for(session):
            question = _find_question(session, query)
            messages = [dict(m) for m in session.messages]
        api_key, own_key = self._chat_key(context)
        model = (context.get("gpt_model") if context is not None else None) or conf().get("model") or const.GPT35
        call = self._chat_call(messages, model, api_key, own_key)
        call.partial = PartialAnswer.for_context(context)
        try:
            answer = self._send(call, self._read_chat)
        except ChatAPIError as e:
            _forget(self.sessions, session, question)
            if e.kind == BAD_REQUEST:
                # As the original: a request the API calls invalid usually means
                # a history it cannot take (too long, a bad message); start afresh.
                self.sessions.clear_session(session_id)
            return Reply(ReplyType.ERROR, error_text(e, call, chinese))
        except Exception:
            _forget(self.sessions, session, question)
            raise
        total = (answer.usage or {}).get("total_tokens")
        self.sessions.session_reply(answer.content, session_id, total if isinstance(total, int) else None)
        logger.debug("[CHATGPT] session_id={}, answer={}".format(session_id, answer.content))
        return Reply(ReplyType.TEXT, answer.content)

    def _command(self, query: str, session_id: Any) -> Reply | None:
        if query in (conf().get("clear_memory_commands") or ["#清除记忆"]) or query == "#清除记忆":
            self.sessions.clear_session(session_id)
            return Reply(ReplyType.INFO, "记忆已清除")
        if query == "#清除所有":
            self.sessions.clear_all_session()
            return Reply(ReplyType.INFO, "所有人记忆已清除")
        if query == "#更新配置":
            try:
                load_config()
            except Exception as e:
                # The message may quote a value from the file: log it, do not send it.
                logger.error("[CHATGPT] reloading the config failed: {}".format(e))
                return Reply(ReplyType.ERROR, "配置文件有误，配置未更新，详情见日志")
            return Reply(ReplyType.INFO, "配置已更新")
        return None

    def reply_text(self, session_id: Any, session: ChatGPTSession, api_key: str | None = None, args: dict | None = None, retry_count: int = 0) -> dict:
        """The original's helper, kept for plugins: answer ``session.messages`` as they are.

        Returns ``{"total_tokens", "completion_tokens", "content"}``; on failure
        ``completion_tokens`` is 0 and ``content`` is the user-facing error
        text. Never raises. ``retry_count`` is accepted and ignored (retries are
        internal now); the session is not changed.
        """
        args = dict(args or {})
        model = args.pop("model", None) or conf().get("model") or const.GPT35
        messages = [dict(m) for m in session.messages]
        last_user = next((m for m in reversed(messages) if m.get("role") == "user"), {})
        chinese = is_chinese(_text_of(last_user.get("content")))
        if not self._take_token("chat", "rate_limit_chatgpt"):
            return {"completion_tokens": 0, "content": in_language(*_BUSY, chinese)}
        configured, _ = self._chat_key(None)
        call = self._chat_call(messages, model, api_key or configured, bool(api_key), args)
        try:
            answer = self._send(call, self._read_chat)
        except ChatAPIError as e:
            return {"completion_tokens": 0, "content": error_text(e, call, chinese)}
        usage = answer.usage or {}
        completion = usage.get("completion_tokens") or max(1, len(answer.content) // 4)
        return {"total_tokens": usage.get("total_tokens") or completion, "completion_tokens": completion, "content": answer.content}

    def _chat_call(self, messages: list[dict], model: str, api_key: str, own_key: bool, overrides: dict | None = None) -> _Call:
        if model.startswith(_NO_SYSTEM_PROMPT):
            messages = [m for m in messages if m.get("role") != "system"]
        payload: dict[str, Any] = {"model": model, "messages": messages, "stream": True}
        if not _FIXED_SAMPLING.match(model):
            for key in ("temperature", "top_p", "frequency_penalty", "presence_penalty"):
                payload[key] = conf().get(key)
        for key in ("temperature", "top_p", "frequency_penalty", "presence_penalty", "max_tokens"):
            if overrides and overrides.get(key) is not None:
                payload[key] = overrides[key]
        call = _Call("chat", "", {}, payload, api_key=api_key, own_key=own_key, target=model)
        self._chat_endpoint(call)
        return call

    def _chat_key(self, context: Context | None) -> tuple[str, bool]:
        """(the key of a chat request, whether it is the user's own one from #set_openai_api_key)."""
        own_key = context.get("openai_api_key") if context is not None else None
        return (own_key or conf().get("open_ai_api_key") or "", bool(own_key))

    def _answer_error(self, data: dict, raw: bytes, after_answer: bool = False) -> ChatAPIError | None:
        """The error an answer (a JSON answer or one stream event) reports with HTTP 200, or None."""
        if data.get("error"):
            message, _, code = _error_fields(raw)
            return ChatAPIError(UPSTREAM, message, code=code, after_answer=after_answer)
        return None

    def _status_error(self, status: int, body: bytes) -> ChatAPIError:
        """The error of an HTTP error answer (a vendor preset reads its own codes)."""
        return _status_error(status, body)

    def _chat_endpoint(self, call: _Call) -> None:
        """Fill in the URL, the auth header and the not-found hints of a chat call."""
        call.url = _api_base() + "/chat/completions"
        call.headers = _bearer(call.api_key)

    def _read_chat(self, resp: requests.Response, call: _Call) -> Answer:
        chunks = (c for c in resp.iter_content(chunk_size=read_size(resp)) if c)
        try:
            first = next(chunks, b"")
            if first.lstrip().startswith(b"{"):
                answer = self._chat_from_json(first, chunks)
            elif first.strip():
                answer = self._chat_from_stream(itertools.chain([first], chunks), call)
            else:
                raise ChatAPIError(EMPTY, "empty response body")
        except EventTooLarge as e:
            raise ChatAPIError(TOO_LARGE, str(e), after_answer=call.progress.get("answered", False)) from None
        except requests.exceptions.RequestException as e:
            answered = call.progress.get("answered", False)
            if _is_read_timeout(e):
                raise ChatAPIError(TIMEOUT, f"reading the answer: {e}", after_answer=answered) from None
            raise ChatAPIError(BROKEN if answered else CONNECTION, f"reading the answer: {e}", after_answer=answered) from None
        answer.content = safe_text(answer.content)  # a "\ud800" escape decodes to a lone surrogate
        if answer.finish_reason == "length":
            logger.warning("[CHATGPT] the answer was cut at the model's max_tokens")
        if not answer.content.strip():
            kind = CONTENT_POLICY if answer.finish_reason == "content_filter" else EMPTY
            raise ChatAPIError(kind, f"no answer text (finish_reason={answer.finish_reason})")
        return answer

    def _chat_from_json(self, first: bytes, rest: Iterable[bytes]) -> Answer:
        body = bytearray(first)
        for chunk in rest:
            body += chunk
            if len(body) > MAX_ANSWER_BYTES:
                raise ChatAPIError(BAD_RESPONSE, "answer larger than {} bytes".format(MAX_ANSWER_BYTES))
        data = _parse_json(bytes(body))
        error = self._answer_error(data, bytes(body))
        if error is not None:
            raise error
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise ChatAPIError(BAD_RESPONSE, "no choices in " + bytes(body[:300]).decode("utf-8", "replace"))
        choice = choices[0]
        message = choice.get("message") or {}
        content = _text_of(message.get("content")) if isinstance(message, dict) else ""
        if not content and isinstance(choice.get("text"), str):  # completions-style servers
            content = choice["text"]
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
        return Answer(content, usage, choice.get("finish_reason"))

    def _chat_from_stream(self, source: Iterator[bytes], call: _Call) -> Answer:
        parts: list[str] = []
        usage = None
        finish_reason = None
        done = False
        recognised = 0  # events that look like chat chunks
        limit = int(conf().get("answer_max_chars"))
        length = 0
        for event in SSEClient(capped_events(source, max_answer_bytes())).events():
            data = event.data.strip()
            if not data:
                continue
            if data == "[DONE]":
                done = True
                break
            try:
                chunk = json.loads(data)
            except ValueError:
                logger.debug("[CHATGPT] skipping a stream event that is not JSON: {}".format(data[:200]))
                continue
            if not isinstance(chunk, dict):
                continue
            recognised += 1
            error = self._answer_error(chunk, data.encode("utf-8"), after_answer=bool(parts))
            if error is not None:
                raise error
            for choice in chunk.get("choices") or []:
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta") or choice.get("message") or {}
                piece = _text_of(delta.get("content")) if isinstance(delta, dict) else ""
                if piece:
                    parts.append(piece)
                    length += len(piece)
                    call.progress["answered"] = True
                    if call.partial is not None:
                        call.partial.show("".join(parts))
                if choice.get("finish_reason"):
                    finish_reason = choice["finish_reason"]
            if isinstance(chunk.get("usage"), dict):
                usage = chunk["usage"]
            if length > limit:
                # The pipeline cuts it at answer_max_chars and says so: the rest is not read.
                logger.warning(f"[CHATGPT] answer longer than answer_max_chars ({limit}), not read further")
                done = True
                break
        if not done and not recognised:
            raise ChatAPIError(BAD_RESPONSE, "the answer holds no chat completion events")
        if not done and finish_reason is None:
            # Some compatible servers end the stream without [DONE]; a clean end
            # of the body is accepted, a broken one raised above.
            logger.warning("[CHATGPT] the answer stream ended without [DONE]")
        return Answer("".join(parts), usage, finish_reason)

    # -- images ----------------------------------------------------------------

    def _reply_image(self, query: str, context: Context | None) -> Reply:
        chinese = is_chinese(query)
        if not self._take_token("dalle", "rate_limit_dalle"):
            return Reply(ReplyType.ERROR, _IMAGE_BUSY[0] if chinese else _IMAGE_BUSY[1])
        logger.info("[OPEN_AI] image request of {} characters from session {}".format(
            len(query), context.get("session_id") if context is not None else None))
        logger.debug("[OPEN_AI] image_query={}".format(query))
        own_key = context.get("openai_api_key") if context is not None else None
        model = conf().get("text_to_image") or "dall-e-2"
        payload: dict[str, Any] = {"model": model, "prompt": query, "n": 1, "size": conf().get("image_create_size")}
        if model == "dall-e-3":
            payload["quality"] = conf().get("dalle3_image_quality")
        call = _Call("image", "", {}, payload, api_key=own_key or conf().get("open_ai_api_key") or "", own_key=bool(own_key),
                     target=model, settings="text_to_image, open_ai_api_base")
        self._image_endpoint(call)
        try:
            data = self._send(call, self._read_json)
            items = data.get("data")
            if not isinstance(items, list) or not items or not isinstance(items[0], dict):
                raise ChatAPIError(BAD_RESPONSE, "no data in the image answer")
        except ChatAPIError as e:
            return Reply(ReplyType.ERROR, error_text(e, call, chinese))
        item = items[0]
        self._send_revised_prompt(context, item.get("revised_prompt"), query)
        if isinstance(item.get("url"), str) and item["url"]:
            logger.debug("[OPEN_AI] image_url={}".format(item["url"]))
            return Reply(ReplyType.IMAGE_URL, item["url"])
        if isinstance(item.get("b64_json"), str):
            try:
                return Reply(ReplyType.IMAGE, io.BytesIO(base64.b64decode(item["b64_json"])))
            except ValueError:
                logger.warning("[OPEN_AI] the image answer holds invalid base64")
        return Reply(ReplyType.ERROR, error_text(ChatAPIError(BAD_RESPONSE), call, chinese))

    def _image_endpoint(self, call: _Call) -> None:
        call.url = _api_base() + "/images/generations"
        call.headers = _bearer(call.api_key)
        call.target_words = ("画图模型", "Image model")

    def _read_json(self, resp: requests.Response, call: _Call) -> dict:
        try:
            body = _read_limited(resp, MAX_ANSWER_BYTES)
        except requests.exceptions.RequestException as e:
            kind = TIMEOUT if _is_read_timeout(e) else CONNECTION
            raise ChatAPIError(kind, f"reading the answer: {e}") from None
        data = _parse_json(body)
        if data.get("error"):
            message, _, code = _error_fields(body)
            raise ChatAPIError(UPSTREAM, message, code=code)
        return data

    @staticmethod
    def _send_revised_prompt(context: Context | None, revised_prompt: Any, query: str) -> None:
        # DALL-E 3 rewrites the prompt; the original shows the user what was drawn.
        if context is None or not revised_prompt:
            return
        channel = context.get("channel")
        if channel is None:
            return
        try:
            text = f"revised_prompt:\n{revised_prompt}\n\n- - - - - - - - - - - -\n🎨 Dall-E画图：{query}"
            channel.send(Reply(ReplyType.TEXT, text), context)
        except Exception as e:
            logger.error("[OPEN_AI] sending the revised prompt failed: {}".format(e))

    # -- transport -------------------------------------------------------------

    def _send(self, call: _Call, read: Callable[[requests.Response, _Call], T]) -> T:
        """POST ``call`` and read the answer with ``read``, retrying what is worth retrying."""

        deadline = Deadline(_request_timeout())

        def attempt() -> T:
            call.progress.clear()
            if deadline.expired:
                raise ChatAPIError(TIMEOUT, "request_timeout passed before the request could be sent again")
            try:
                resp = self._post(call, deadline)
                deadline.attach(resp)
                try:
                    return read(resp, call)
                finally:
                    resp.close()
            except ChatAPIError as e:
                if deadline.expired and e.kind in (TIMEOUT, BROKEN, CONNECTION):
                    # The watchdog closed the connection: the answer took too long in total.
                    raise ChatAPIError(TIMEOUT, f"not answered within request_timeout ({deadline.seconds:g} s)",
                                       after_answer=e.after_answer) from None
                raise

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(0, int(self.max_retries)) + 1) | (lambda state: deadline.expired),
            wait=tenacity.wait_exponential(multiplier=self.retry_wait, min=0),
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, ChatAPIError) and e.retryable),
            before_sleep=lambda state: logger.warning(
                "[CHATGPT] {} {} failed ({}), retry {} of {}".format(
                    call.purpose, mask_urls(call.url), self._masked(call, state.outcome.exception()), state.attempt_number, self.max_retries
                )
            ),
            reraise=True,
        )
        try:
            return retrying(attempt)
        except ChatAPIError as e:
            key = mask_secret(call.api_key) if call.api_key else "(none)"
            logger.warning(
                "[CHATGPT] {} request to {} failed: model={}, key={}, {}".format(call.purpose, mask_urls(call.url), call.target, key, self._masked(call, e))
            )
            raise
        finally:
            deadline.cancel()

    @staticmethod
    def _masked(call: _Call, error: BaseException | None) -> str:
        text = str(error)
        if call.api_key:
            text = text.replace(call.api_key, mask_secret(call.api_key))
        proxy = conf().get("proxy") or ""
        if proxy:
            text = text.replace(proxy, mask_value("proxy", proxy))
        return mask_urls(text)

    def _post(self, call: _Call, deadline: Deadline | None = None) -> requests.Response:
        read_timeout = _request_timeout()
        if deadline is not None:
            read_timeout = deadline.cap(read_timeout)
        proxy = conf().get("proxy")
        if proxy and not _usable_proxy(proxy):
            # Checked here because requests/urllib3 versions word a bad proxy URL differently.
            raise ChatAPIError(BAD_PROXY, "proxy setting is not a usable URL")
        try:
            resp = self.http.post(
                call.url,
                json=call.payload,
                headers=call.headers,
                timeout=(min(CONNECT_TIMEOUT, read_timeout), read_timeout),
                proxies={"http": proxy, "https": proxy} if proxy else None,
                stream=True,
            )
        except (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL) as e:
            about_proxy = bool(proxy) and (proxy in str(e) or any(word in str(e).lower() for word in ("proxy", "socks")))
            raise ChatAPIError(BAD_PROXY if about_proxy else BAD_URL, str(e)) from None
        except requests.exceptions.ConnectTimeout as e:
            raise ChatAPIError(CONNECTION, f"connect timeout: {e}") from None
        except requests.exceptions.Timeout as e:
            raise ChatAPIError(TIMEOUT, str(e)) from None
        except requests.exceptions.RequestException as e:
            raise ChatAPIError(CONNECTION, str(e)) from None
        if resp.status_code >= 400:
            try:
                body = _read_limited(resp, MAX_ERROR_BYTES)
            except requests.exceptions.RequestException:
                body = b""
            finally:
                resp.close()
            raise self._status_error(resp.status_code, body)
        return resp

    def _take_token(self, name: str, setting: str) -> bool:
        """A token from the per-minute bucket of ``setting``; True when it has no limit."""
        rate = conf().get(setting)
        if not rate or rate <= 0:
            return True
        rate = int(rate) or 1
        with self._buckets_lock:
            held = self._buckets.get(name)
            if held is None or held[0] != rate:
                # timeout 0: an empty bucket answers "busy" at once instead of
                # holding a worker thread.
                held = (rate, TokenBucket(rate, timeout=0))
                self._buckets[name] = held
        return held[1].get_token()


class AzureChatGPTBot(ChatGPTBot):
    """Azure OpenAI: ``{open_ai_api_base}/openai/deployments/{azure_deployment_id}/...``
    with the ``api-key`` header. ``open_ai_api_base`` is the resource endpoint
    (``https://NAME.openai.azure.com/``)."""

    @classmethod
    def settings_problem(cls, settings: Any) -> str | None:
        for key, what in (("open_ai_api_key", "your Azure OpenAI key"), ("azure_deployment_id", "your model deployment's name")):
            if not str(settings.get(key) or "").strip():
                return f"setting '{key}' is empty: put {what} in it (Azure OpenAI, use_azure_chatgpt)"
        return None

    def _chat_endpoint(self, call: _Call) -> None:
        deployment = conf().get("azure_deployment_id") or ""
        call.url = _azure_url(conf().get("open_ai_api_base"), deployment, "chat/completions")
        call.headers = {"api-key": call.api_key}
        call.target = deployment
        call.target_words = ("Azure 部署", "Azure deployment")
        call.settings = "azure_deployment_id, azure_api_version, open_ai_api_base"

    def _image_endpoint(self, call: _Call) -> None:
        # A separate Azure resource may serve DALL-E; each of its settings falls
        # back to the chat one (the original passed the setting's *name* as the
        # fallback value, so an unset one produced a broken URL).
        base = conf().get("azure_openai_dalle_api_base") or conf().get("open_ai_api_base")
        deployment = conf().get("azure_openai_dalle_deployment_id") or conf().get("text_to_image") or ""
        dalle_key = conf().get("azure_openai_dalle_api_key")
        if dalle_key and not call.own_key:
            call.api_key = dalle_key
        call.url = _azure_url(base, deployment, "images/generations")
        call.headers = {"api-key": call.api_key}
        call.payload.pop("model", None)
        call.target = deployment
        call.target_words = ("Azure 画图部署", "Azure image deployment")
        call.settings = "azure_openai_dalle_deployment_id, azure_openai_dalle_api_base, azure_api_version"


# --- helpers --------------------------------------------------------------------


def _request_timeout() -> float:
    timeout = conf().get("request_timeout")
    return float(timeout) if isinstance(timeout, (int, float)) and timeout > 0 else DEFAULT_REQUEST_TIMEOUT


def _api_base() -> str:
    return (conf().get("open_ai_api_base") or DEFAULT_API_BASE).rstrip("/")


def _azure_url(base: str, deployment: str, operation: str) -> str:
    version = conf().get("azure_api_version") or DEFAULT_AZURE_API_VERSION
    root = (base or "").rstrip("/")
    return f"{root}/openai/deployments/{deployment}/{operation}?api-version={version}"


def _bearer(api_key: str) -> dict[str, str]:
    # No key, no header: local servers (Ollama, vLLM) need none.
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def _parse_json(body: bytes) -> dict:
    try:
        data = json.loads(body.decode("utf-8", "replace"))
    except ValueError:
        raise ChatAPIError(BAD_RESPONSE, "not JSON: " + body[:300].decode("utf-8", "replace")) from None
    if not isinstance(data, dict):
        raise ChatAPIError(BAD_RESPONSE, "not a JSON object: " + body[:300].decode("utf-8", "replace"))
    return data


def _find_question(session: Session, query: str) -> dict | None:
    """The message ``session_query`` just added for ``query`` (the same object)."""
    for message in reversed(session.messages):
        if message.get("role") == "user" and message.get("content") is query:
            return message
    return None


def _forget(sessions: SessionManager, session: Session, question: dict | None) -> None:
    """Take an unanswered question out of the history again."""
    if question is None:
        return
    with sessions.lock_for(session):
        for index in range(len(session.messages) - 1, -1, -1):
            if session.messages[index] is question:
                del session.messages[index]
                break
