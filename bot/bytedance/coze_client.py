"""A small client of Coze's v3 chat API (api.coze.cn / api.coze.com), on requests and
sseclient-py.

Why not the ``cozepy`` SDK (which the original used): the bot needs three calls of it
(``POST /v3/chat``, ``GET /v3/chat/retrieve``, ``GET /v3/chat/message/list``), and with
our own the daemon's rules apply as for Dify and OpenAI: a total time limit on an answer
however slowly it streams (common.deadline), bounded SSE events (common.sse), a cut
stream told apart from a clean end, and every failure mapped to a kind the user can act
on. cozepy would add pydantic and httpx pins for that, and its blocking helper polls
without a time limit by default.

Protocol facts (Coze's v3 chat docs):

* ``POST {base}/v3/chat?conversation_id=ID`` (no id: a new conversation), bearer token,
  body ``{"bot_id", "user_id", "stream", "auto_save_history": true,
  "additional_messages": [{"role": "user", "content", "content_type": "text",
  "type": "question"}]}``.
* Streamed: SSE events ``conversation.chat.created`` (the chat: ``id``,
  ``conversation_id``), ``conversation.message.delta`` (a piece of a message; the answer
  is ``type: answer``), ``conversation.message.completed``, ``conversation.chat.completed``,
  ``conversation.chat.failed`` (``last_error: {code, msg}``), ``error`` (``{code, msg}``)
  and ``done``.
* Not streamed: the answer to the POST is ``{"code": 0, "data": <chat>}`` with status
  ``created`` / ``in_progress``; ``GET /v3/chat/retrieve`` is polled (at most once a
  second, as Coze asks) until ``completed`` / ``failed``, then
  ``GET /v3/chat/message/list`` gives the messages (``type: answer`` is the reply).
* Errors come as ``{"code": N, "msg": ...}``, usually with HTTP 200: 4100 / 4101 the
  token, 4015 a bot not published to the API, 4200 a resource that does not exist (the
  bot, or a conversation: told apart by the message), 4013 / 4029 too many requests.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Callable

import requests
from sseclient import SSEClient

from common.deadline import Deadline
from common.log import logger
from common.sse import EventTooLarge, capped_events, max_answer_bytes, read_size

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
MAX_JSON_BYTES = 8 * 1024 * 1024

AUTH = "auth"
BOT_NOT_FOUND = "bot_not_found"
CONVERSATION_GONE = "conversation_gone"
RATE_LIMITED = "rate_limited"
FAILED = "failed"  # the chat ran and failed (last_error)
BAD_REQUEST = "bad_request"
SERVER = "server"
CONNECTION = "connection"
TIMEOUT = "timeout"
BROKEN = "broken"
BAD_RESPONSE = "bad_response"
EMPTY = "empty"
BAD_URL = "bad_url"

_AUTH_CODES = {4100, 4101, 700012006}
_RATE_CODES = {4013, 4029}
_NOT_PUBLISHED = 4015
_NOT_FOUND = 4200


class CozeError(Exception):
    def __init__(self, kind: str, detail: str = "", code: int | None = None, after_answer: bool = False):
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind
        self.detail = detail
        self.code = code
        self.after_answer = after_answer


def error_of(code: Any, msg: Any, status: int = 200) -> CozeError:
    """The CozeError for Coze's ``{code, msg}`` (and the HTTP status it came with)."""
    try:
        number = int(code)
    except (TypeError, ValueError):
        number = None
    text = str(msg or "")[:500]
    detail = f"code {code}, HTTP {status}: {text}"
    lowered = text.lower()
    if number in _AUTH_CODES or status == 401:
        return CozeError(AUTH, detail, number)
    if number == _NOT_FOUND or status == 404:
        if "conversation" in lowered:
            return CozeError(CONVERSATION_GONE, detail, number)
        return CozeError(BOT_NOT_FOUND, detail, number)
    if number == _NOT_PUBLISHED:
        return CozeError(BOT_NOT_FOUND, detail, number)
    if number in _RATE_CODES or status == 429:
        return CozeError(RATE_LIMITED, detail, number)
    if status >= 500 or (number is not None and 5000 <= number < 6000):
        return CozeError(SERVER, detail, number)
    return CozeError(BAD_REQUEST, detail, number)


@dataclass
class CozeAnswer:
    text: str
    conversation_id: str
    chat_id: str
    tokens: int | None = None


class CozeClient:
    poll_interval: float = 1.0  # Coze asks for at most one retrieve a second
    first_poll: float = 0.3

    def __init__(self, api_base: str, api_key: str, http: requests.Session | None = None,
                 proxy: str = "", answer_timeout: float = 300.0, read_timeout: float = READ_TIMEOUT) -> None:
        self.api_base = (api_base or "").strip().rstrip("/")
        self.api_key = api_key
        self.http = http or requests.Session()
        self.proxies = {"http": proxy, "https": proxy} if proxy else None
        self.answer_timeout = answer_timeout
        self.read_timeout = read_timeout

    # -- one question -------------------------------------------------------------------

    def chat(self, bot_id: str, user_id: str, query: str, conversation_id: str = "", stream: bool = True,
             on_text: Callable[[str], None] | None = None) -> CozeAnswer:
        body = {
            "bot_id": bot_id,
            "user_id": user_id,
            "stream": stream,
            "auto_save_history": True,
            "additional_messages": [{"role": "user", "content": query, "content_type": "text", "type": "question"}],
        }
        params = {"conversation_id": conversation_id} if conversation_id else None
        deadline = Deadline(self.answer_timeout)
        try:
            resp = self._request("POST", "/v3/chat", deadline, params=params, json_body=body, stream=True)
            deadline.attach(resp)
            try:
                if stream and "text/event-stream" in resp.headers.get("Content-Type", ""):
                    return self._read_stream(resp, on_text)
                data = self._json_data(resp)  # a JSON answer: the chat, or an error
            finally:
                resp.close()
            if stream:
                # A server that ignored "stream" answered like a non-streamed chat.
                logger.debug("[COZE] a JSON answer to a streamed request; polling it")
            return self._poll(data, deadline)
        except CozeError as e:
            if deadline.expired and e.kind in (TIMEOUT, BROKEN, CONNECTION):
                raise CozeError(TIMEOUT, f"not answered within coze_answer_timeout ({self.answer_timeout:g} s)",
                                after_answer=e.after_answer) from None
            raise
        finally:
            deadline.cancel()

    # -- streamed -------------------------------------------------------------------------

    def _read_stream(self, resp: requests.Response, on_text: Callable[[str], None] | None) -> CozeAnswer:
        # The answer's pieces, a new message (a new message id) starting a new list: several
        # answer messages are joined with a blank line, as the polled answer's are.
        messages: list[list[str]] = []
        message_id: Any = None
        parts: list[str] = []  # every piece, to know whether anything was answered
        answer_from_completed: list[str] = []
        conversation_id = chat_id = ""
        tokens = None
        finished = False
        chunks = (c for c in resp.iter_content(chunk_size=read_size(resp)) if c)
        try:
            for event in SSEClient(capped_events(chunks, max_answer_bytes())).events():
                name = event.event or ""
                data = _json_or_none(event.data)
                if name in ("conversation.chat.created", "conversation.chat.in_progress", "conversation.chat.completed"):
                    if isinstance(data, dict):
                        conversation_id = str(data.get("conversation_id") or conversation_id)
                        chat_id = str(data.get("id") or chat_id)
                        usage = data.get("usage")
                        if isinstance(usage, dict) and isinstance(usage.get("token_count"), int):
                            tokens = usage["token_count"]
                    if name == "conversation.chat.completed":
                        finished = True
                elif name == "conversation.message.delta":
                    if isinstance(data, dict) and data.get("type") == "answer" and isinstance(data.get("content"), str):
                        new_id = data.get("id")
                        if not messages or (new_id and message_id and new_id != message_id):
                            messages.append([])
                        message_id = new_id or message_id
                        messages[-1].append(data["content"])
                        parts.append(data["content"])
                        if on_text is not None:
                            on_text(_joined(messages))
                elif name == "conversation.message.completed":
                    # The whole message again: kept for a server that sends no deltas.
                    if isinstance(data, dict) and data.get("type") == "answer" and isinstance(data.get("content"), str):
                        answer_from_completed.append(data["content"])
                elif name == "conversation.chat.failed":
                    last_error = (data or {}).get("last_error") if isinstance(data, dict) else None
                    last_error = last_error if isinstance(last_error, dict) else {}
                    raise _failed(last_error, after_answer=bool(parts))
                elif name == "conversation.chat.requires_action":
                    raise CozeError(FAILED, "the chat requires_action (client-side tool outputs), which this bot cannot give",
                                    after_answer=bool(parts))
                elif name == "error":
                    error = error_of((data or {}).get("code") if isinstance(data, dict) else None,
                                     (data or {}).get("msg") if isinstance(data, dict) else event.data)
                    error.after_answer = bool(parts)
                    raise error
                elif name == "done":
                    finished = True
                    break
        except EventTooLarge as e:
            raise CozeError(BAD_RESPONSE, str(e), after_answer=bool(parts)) from None
        except requests.exceptions.RequestException as e:
            raise CozeError(BROKEN if parts else CONNECTION, f"reading the answer: {e}", after_answer=bool(parts)) from None
        if not finished:
            raise CozeError(BROKEN if parts else BAD_RESPONSE, "the stream ended before conversation.chat.completed",
                            after_answer=bool(parts))
        text = _joined(messages) if parts else "\n\n".join(answer_from_completed)
        return CozeAnswer(text, conversation_id, chat_id, tokens)

    # -- created, then polled -----------------------------------------------------------------

    def _poll(self, chat: Any, deadline: Deadline) -> CozeAnswer:
        if not isinstance(chat, dict) or not chat.get("id") or not chat.get("conversation_id"):
            raise CozeError(BAD_RESPONSE, "the chat answer has no id / conversation_id")
        conversation_id, chat_id = str(chat["conversation_id"]), str(chat["id"])
        query = {"conversation_id": conversation_id, "chat_id": chat_id}
        wait = self.first_poll
        while chat.get("status") in ("created", "in_progress", None):
            left = deadline.remaining()
            if left is not None and left <= wait:
                raise CozeError(TIMEOUT, f"chat still {chat.get('status')} after coze_answer_timeout ({self.answer_timeout:g} s)")
            time.sleep(wait)
            wait = self.poll_interval
            chat = self._get_json("/v3/chat/retrieve", query, deadline)
            if not isinstance(chat, dict):
                raise CozeError(BAD_RESPONSE, "the retrieved chat is not an object")
        status = chat.get("status")
        if status == "failed":
            raise _failed(chat.get("last_error") if isinstance(chat.get("last_error"), dict) else {})
        if status == "requires_action":
            # The bot waits for the caller's tool results (submit_tool_outputs): not something a chat
            # user can give; the bot's tools must run on Coze's side.
            raise CozeError(FAILED, "the chat requires_action (client-side tool outputs), which this bot cannot give")
        if status != "completed":
            raise CozeError(BAD_RESPONSE, f"the chat ended with status {status!r}")
        messages = self._get_json("/v3/chat/message/list", query, deadline)
        if not isinstance(messages, list):
            raise CozeError(BAD_RESPONSE, "the message list is not a list")
        answers = [m["content"] for m in messages
                   if isinstance(m, dict) and m.get("type") == "answer" and isinstance(m.get("content"), str)]
        usage = chat.get("usage")
        tokens = usage.get("token_count") if isinstance(usage, dict) and isinstance(usage.get("token_count"), int) else None
        return CozeAnswer("\n\n".join(answers), conversation_id, chat_id, tokens)

    def _get_json(self, path: str, params: dict, deadline: Deadline) -> Any:
        resp = self._request("GET", path, deadline, params=params)
        try:
            return self._json_data(resp)
        finally:
            resp.close()

    # -- HTTP ------------------------------------------------------------------------------

    def _request(self, method: str, path: str, deadline: Deadline, params: dict | None = None,
                 json_body: Any = None, stream: bool = False) -> requests.Response:
        if not self.api_base.startswith(("http://", "https://")):
            raise CozeError(BAD_URL, f"coze_api_base {self.api_base!r} is not an http(s) URL")
        read_timeout = deadline.cap(self.read_timeout) or self.read_timeout
        try:
            return self.http.request(
                method, self.api_base + path, params=params, json=json_body, stream=stream,
                headers={"Authorization": f"Bearer {self.api_key}", "Accept": "text/event-stream, application/json"},
                timeout=(min(CONNECT_TIMEOUT, read_timeout), read_timeout), proxies=self.proxies,
            )
        except (requests.exceptions.MissingSchema, requests.exceptions.InvalidSchema, requests.exceptions.InvalidURL) as e:
            raise CozeError(BAD_URL, str(e)) from None
        except requests.exceptions.ConnectTimeout as e:
            raise CozeError(CONNECTION, f"connect timeout: {e}") from None
        except requests.exceptions.Timeout as e:
            raise CozeError(TIMEOUT, str(e)) from None
        except requests.exceptions.RequestException as e:
            raise CozeError(CONNECTION, str(e)) from None

    def _json_data(self, resp: requests.Response) -> Any:
        """``data`` of a ``{code, msg, data}`` answer; CozeError for any error."""
        try:
            body = bytearray()
            for chunk in resp.iter_content(chunk_size=None):
                body += chunk
                if len(body) > MAX_JSON_BYTES:
                    raise CozeError(BAD_RESPONSE, f"answer larger than {MAX_JSON_BYTES} bytes")
        except requests.exceptions.Timeout as e:
            raise CozeError(TIMEOUT, f"reading the answer: {e}") from None
        except requests.exceptions.RequestException as e:
            raise CozeError(CONNECTION, f"reading the answer: {e}") from None
        parsed = _json_or_none(bytes(body).decode("utf-8", "replace"))
        if not isinstance(parsed, dict):
            if resp.status_code >= 400:
                raise error_of(None, bytes(body[:300]).decode("utf-8", "replace"), resp.status_code)
            raise CozeError(BAD_RESPONSE, "not a Coze answer: " + bytes(body[:200]).decode("utf-8", "replace"))
        code = parsed.get("code", 0)
        if code not in (0, None) or resp.status_code >= 400:
            raise error_of(code, parsed.get("msg"), resp.status_code)
        return parsed.get("data")


def _joined(messages: list[list[str]]) -> str:
    """Several answer messages of one chat as one text, a blank line between them."""
    return "\n\n".join("".join(pieces) for pieces in messages if pieces)


def _failed(last_error: dict, after_answer: bool = False) -> CozeError:
    code, msg = last_error.get("code"), last_error.get("msg")
    error = error_of(code, msg) if code not in (None, 0) else CozeError(FAILED, str(msg or "the chat failed"))
    if error.kind == BAD_REQUEST:
        error = CozeError(FAILED, error.detail, error.code)
    error.after_answer = after_answer
    return error


def _json_or_none(text: Any) -> Any:
    if not isinstance(text, str) or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None
