"""A client for the Dify Service API (see reference/dify-service-api.md).

One :class:`DifyClient` per (api_base, api_key), obtained with
:func:`get_client`, holds one pooled ``requests.Session`` sized for the worker
threads, so concurrent questions reuse keep-alive connections instead of
opening one per call (the original built a new client, without a timeout, for
every message).

* Timeouts: ``dify_connect_timeout`` to connect, ``dify_read_timeout`` of
  silence (between streamed events, or for a whole blocking answer), and
  ``dify_answer_timeout`` for a whole answer: a stream that trickles forever
  defeats the read timeout, so a watchdog (:mod:`common.deadline`) closes the
  connection when the answer's time is up (:class:`DifyAnswerTimeout`).
* Errors: every non-2xx answer, SSE ``error`` event, timeout and network
  failure is raised as a :class:`~bot.dify.errors.DifyError` subclass.
* Retries (tenacity): 429, 5xx, connection failures and connect timeouts are
  retried up to ``dify_max_retries`` times with exponential backoff (a
  ``Retry-After`` header is honoured, capped), and only before any of the
  response body was consumed: a stream that broke midway is never sent again.
* Streams are read with sseclient-py: ``data:`` blocks are JSON-parsed, blocks
  without data (``event: ping``) are skipped. A block that is not a JSON object
  (or bytes that are not UTF-8) raises :class:`DifyBadStream`: part of the answer
  would otherwise be lost without a word.
* Files linked from answers are downloaded with :mod:`common.fetch` (internal
  addresses refused, total deadline, size cap, limited concurrency).

Voice engines use :meth:`DifyClient.audio_to_text` / :meth:`DifyClient.text_to_audio`.
"""
from __future__ import annotations

import email.utils
import json
import logging
import mimetypes
import os
import threading
import time
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit, urlunsplit

import requests
import sseclient
import tenacity
import urllib3
from requests.adapters import HTTPAdapter

from bot.dify.errors import (
    DifyAnswerTooLarge,
    DifyAnswerTimeout,
    DifyBadResponse,
    DifyBadStream,
    DifyConnectionError,
    DifyConversationNotFound,
    DifyError,
    DifyStreamCut,
    DifyTimeout,
    classify,
)
from common import fetch
from common.deadline import Deadline
from common.log import logger
from common.masking import mask_secret, mask_urls
from common.sse import EventTooLarge, capped_events, max_answer_bytes, read_size
from common.text import safe_data
from config import conf

__all__ = ["DifyClient", "DifyEventStream", "get_client", "close_clients", "file_base_url"]

DEFAULT_API_BASE = "https://api.dify.ai/v1"

# Audio types Dify's /audio-to-text accepts, by file extension (it checks the part's mimetype,
# and mimetypes.guess_type gives e.g. "audio/x-wav", which Dify refuses).
_AUDIO_TYPES = {
    "mp3": "audio/mp3", "mp4": "audio/mp4", "mpeg": "audio/mpeg", "mpga": "audio/mpga",
    "m4a": "audio/m4a", "wav": "audio/wav", "webm": "audio/webm", "amr": "audio/amr",
}


def file_base_url(api_base: str) -> str:
    """The Dify host that relative file URLs hang off: the api base without its
    trailing ``/v1`` path (the original removed every "/v1" in the string,
    breaking hosts such as ``https://v1.example.com/v1``)."""
    parts = urlsplit(api_base.strip())
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", "")).rstrip("/")


def _read_capped(response: requests.Response, limit: int, what: str) -> bytes:
    """The body of a streamed `response`, or DifyAnswerTooLarge past `limit` bytes."""
    length = _int(response.headers.get("Content-Length"), -1)
    if length > limit:
        response.close()
        raise DifyAnswerTooLarge(response.status_code, "", f"{what}: the answer is {length} bytes, more than {limit}")
    data = bytearray()
    try:
        for chunk in response.iter_content(chunk_size=64 * 1024):
            data += chunk
            if len(data) > limit:
                raise DifyAnswerTooLarge(response.status_code, "", f"{what}: the answer is more than {limit} bytes")
    except requests.exceptions.RequestException as e:
        raise DifyConnectionError(0, "", f"{what}: reading the answer failed: {e}") from e
    finally:
        response.close()
    return bytes(data)


def _retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())


class DifyEventStream:
    """The events of one streamed answer, as dicts, in order.

    Use it as a context manager (or call :meth:`close`). Iterating raises
    :class:`DifyError` for an ``error`` event and :class:`DifyStreamCut` when
    the connection breaks or goes silent for longer than the read timeout.
    A stream that simply ends is not an error here: the caller knows which
    final event it expected.
    """

    # After the caller's last event, the rest of the stream (usually just the terminating
    # chunk) is read for at most this long / this much, so the connection goes back to the
    # pool: the next question then skips a TCP and TLS handshake. Anything slower (e.g.
    # text-to-speech events after message_end) is cut off by closing the connection.
    DRAIN_SECONDS = 0.02
    DRAIN_BYTES = 64 * 1024

    def __init__(self, response: requests.Response, what: str, deadline: Deadline | None = None) -> None:
        self.response = response
        self.what = what
        self.deadline = deadline or Deadline(None)
        self._source: Iterator[bytes] | None = None

    def __enter__(self) -> "DifyEventStream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        try:
            if self._source is not None and not self.deadline.expired:
                self._drain(self._source)
            self.response.close()
        finally:
            self.deadline.cancel()

    def _drain(self, source: Iterator[bytes]) -> None:
        # requests hands a connection back to the pool only when the body was read to its
        # end (`_content_consumed`); closing it earlier closes the socket.
        if getattr(self.response, "_content_consumed", True):
            return
        sock = getattr(getattr(self.response.raw, "connection", None), "sock", None)
        if sock is None:
            return
        deadline = time.monotonic() + self.DRAIN_SECONDS
        read = 0
        try:
            sock.settimeout(self.DRAIN_SECONDS)
            for chunk in source:
                read += len(chunk)
                left = deadline - time.monotonic()
                if read > self.DRAIN_BYTES or left <= 0:
                    return  # not consumed: close() drops the connection
                sock.settimeout(left)
            # Read to its end: urllib3 has put the connection back in the pool, and sets the
            # socket's timeouts again when it is next used (urllib3 2), so it is left alone now.
        except (requests.exceptions.RequestException, OSError, ValueError):
            pass  # a timeout or a broken stream: close() drops the connection

    def __iter__(self) -> Iterator[dict[str, Any]]:
        source = self.response.iter_content(chunk_size=read_size(self.response))
        self._source = source
        try:
            for block in sseclient.SSEClient(capped_events(source, max_answer_bytes())).events():
                if block.event == "ping":
                    continue
                try:
                    event = json.loads(block.data)
                except ValueError:
                    raise DifyBadStream(0, "", f"{self.what}: an event that is not JSON: {block.data[:200]!r}") from None
                if not isinstance(event, dict):
                    raise DifyBadStream(0, "", f"{self.what}: an event that is not a JSON object: {block.data[:200]!r}")
                event = safe_data(event)  # a "\ud800" escape decodes to a lone surrogate
                if event.get("event") == "error":
                    raise classify(_int(event.get("status"), 500), event.get("code"), event.get("message"))
                yield event
            if self.deadline.expired:
                # A body without length or chunks just "ends" when the watchdog shuts it down.
                raise DifyStreamCut(0, "", f"{self.what}: {self._over()}", answer_timeout=True)
        except EventTooLarge as e:
            raise DifyAnswerTooLarge(0, "", f"{self.what}: {e}") from None
        except DifyError:
            raise
        except (requests.exceptions.RequestException, urllib3.exceptions.HTTPError, OSError) as e:
            if self.deadline.expired:
                raise DifyStreamCut(0, "", f"{self.what}: {self._over()}", answer_timeout=True) from None
            # iter_content turns a broken chunked body into ChunkedEncodingError and a read
            # timeout into ConnectionError; either way the rest of the answer is lost.
            timeout = any(isinstance(arg, urllib3.exceptions.ReadTimeoutError) for arg in e.args)
            raise DifyStreamCut(0, "", f"{self.what}: stream broke off: {e}", timeout=timeout) from e
        except (UnicodeDecodeError, ValueError) as e:
            # sseclient decodes the bytes as UTF-8 and parses the lines itself.
            raise DifyBadStream(0, "", f"{self.what}: not a readable event stream: {e}") from None

    def _over(self) -> str:
        return f"the answer took longer than dify_answer_timeout ({self.deadline.seconds:g} s); connection closed"


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


class DifyClient:
    """The Service API of one Dify app (one key)."""

    # Backoff before retry n (1-based): backoff_base * 2**(n-1), at most backoff_max seconds.
    # Tests shrink backoff_base; a Retry-After header replaces it, capped at retry_after_cap.
    backoff_base: float = 1.0
    backoff_max: float = 16.0
    retry_after_cap: float = 30.0
    # Downloads of images/files linked from answers.
    image_max_bytes: int = 10 * 1024 * 1024
    file_max_bytes: int = 50 * 1024 * 1024

    def __init__(
        self,
        api_base: str,
        api_key: str,
        *,
        pool_size: int | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_retries: int | None = None,
    ) -> None:
        self.api_base = (api_base or DEFAULT_API_BASE).strip().rstrip("/")
        self.api_key = api_key or ""
        # None: read the setting at each call, so a changed setting applies at once.
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.max_retries = max_retries
        self.sleep: Callable[[float], None] = time.sleep
        if pool_size is None:
            pool_size = max(16, 2 * int(conf().get("worker_threads") or 8))
        self.session = self._new_session(pool_size)
        self.session.headers["Authorization"] = f"Bearer {self.api_key}"
        # The API host is fixed, so the proxy variables (HTTPS_PROXY, NO_PROXY...) are read
        # once here: with trust_env on, requests re-read them and ~/.netrc on every call
        # (~0.5 ms of CPU per question, measured with cProfile).
        self.session.proxies = requests.utils.get_environ_proxies(self.api_base)
        self.session.trust_env = False

    @staticmethod
    def _new_session(pool_size: int) -> requests.Session:
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def close(self) -> None:
        self.session.close()

    # -- settings ---------------------------------------------------------------------------
    @property
    def host_url(self) -> str:
        return file_base_url(self.api_base)

    def timeouts(self) -> tuple[float, float]:
        connect = self.connect_timeout if self.connect_timeout is not None else conf().get("dify_connect_timeout")
        read = self.read_timeout if self.read_timeout is not None else conf().get("dify_read_timeout")
        # 0 would mean "fail at once" to requests; treat it as "no limit" instead.
        return (float(connect) or None, float(read) or None)  # type: ignore[return-value]

    def retries(self) -> int:
        value = self.max_retries if self.max_retries is not None else conf().get("dify_max_retries")
        return max(0, int(value or 0))

    def resolve_url(self, url: str) -> str:
        """An absolute URL for a file link in an answer (relative ones hang off the Dify host)."""
        url = (url or "").strip()
        if url.startswith(("http://", "https://")):
            return url
        if url.startswith("//"):
            return (urlsplit(self.api_base).scheme or "https") + ":" + url
        return self.host_url + ("" if url.startswith("/") else "/") + url

    # -- app endpoints ---------------------------------------------------------------------
    def chat_messages(self, payload: dict[str, Any], *, stream: bool) -> Any:
        """POST /chat-messages: the answer dict, or a DifyEventStream when ``stream``."""
        return self._app_call("/chat-messages", payload, stream)

    def completion_messages(self, payload: dict[str, Any], *, stream: bool) -> Any:
        """POST /completion-messages (completion apps)."""
        return self._app_call("/completion-messages", payload, stream)

    def workflow_run(self, payload: dict[str, Any], *, stream: bool) -> Any:
        """POST /workflows/run (workflow apps)."""
        return self._app_call("/workflows/run", payload, stream)

    def answer_timeout(self) -> float:
        return float(conf().get("dify_answer_timeout") or 0)

    def _app_call(self, path: str, payload: dict[str, Any], stream: bool) -> Any:
        body = dict(payload, response_mode="streaming" if stream else "blocking")
        # The answer's whole time, retries included. Read as a stream either way: the watchdog
        # covers a blocking answer that trickles too, and a huge one is refused before it is
        # all in memory.
        deadline = Deadline(self.answer_timeout())
        try:
            response = self.request("POST", path, json=body, stream=True, deadline=deadline)
            deadline.attach(response)
            if stream:
                if "text/event-stream" not in response.headers.get("Content-Type", ""):
                    # A blocking-style JSON answer to a streaming request: wrong server or proxy.
                    text = self._read_body(response, path, deadline)[:200].decode("utf-8", "replace")
                    raise DifyBadResponse(response.status_code, "", f"{path}: expected an event stream, got {text!r}")
                return DifyEventStream(response, path, deadline)
            try:
                raw = _read_capped(response, max_answer_bytes(), path)
            except DifyConnectionError:
                if deadline.expired:
                    raise DifyAnswerTimeout(0, "", f"{path}: the answer took longer than dify_answer_timeout "
                                                   f"({deadline.seconds:g} s); connection closed") from None
                raise
            deadline.cancel()
            return self._json(response, path, raw)
        except BaseException:
            deadline.cancel()
            raise

    def _whole(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """A call whose whole answer (body included) must come within dify_answer_timeout:
        uploads and speech, which a trickling server could otherwise hold for ever."""
        with Deadline(self.answer_timeout()) as deadline:
            response = self.request(method, path, stream=True, deadline=deadline, **kwargs)
            deadline.attach(response)
            self._read_body(response, path, deadline)  # response.content keeps it
            return response

    @staticmethod
    def _read_body(response: requests.Response, path: str, deadline: Deadline) -> bytes:
        """The whole body of a non-stream answer (the deadline still applies)."""
        try:
            return response.content
        except requests.exceptions.RequestException as e:
            if deadline.expired:
                raise DifyAnswerTimeout(0, "", f"{path}: the answer took longer than dify_answer_timeout "
                                              f"({deadline.seconds:g} s); connection closed") from None
            raise DifyStreamCut(0, "", f"{path}: the answer broke off: {e}") from None
        finally:
            response.close()

    # -- files and audio ---------------------------------------------------------------------
    def upload_file(self, path: str, user: str, *, mime_type: str | None = None) -> dict[str, Any]:
        """POST /files/upload (multipart ``file`` + ``user``); returns Dify's record, ``id`` included."""
        name = os.path.basename(path)
        with open(path, "rb") as f:
            content = f.read()  # in memory so a retry can send it again
        mime_type = mime_type or mimetypes.guess_type(name)[0] or "application/octet-stream"
        response = self._whole("POST", "/files/upload", data={"user": user}, files={"file": (name, content, mime_type)})
        record = self._json(response, "/files/upload")
        if not isinstance(record.get("id"), str) or not record["id"]:
            raise DifyBadResponse(response.status_code, "", f"/files/upload: no file id in {record!r}")
        return record

    def audio_to_text(self, path: str, user: str | None = None, *, mime_type: str | None = None,
                      filename: str | None = None) -> str:
        """POST /audio-to-text: the transcript of the audio file at ``path``.

        ``filename`` (default: the file's own name) and ``mime_type`` (default: from the
        extension: mp3, mp4, mpeg, mpga, m4a, wav, webm, amr) label the upload; raises
        DifyError on any non-2xx answer."""
        name = filename or os.path.basename(path)
        extension = os.path.splitext(name)[1].lstrip(".").lower()
        mime_type = mime_type or _AUDIO_TYPES.get(extension, "audio/mp3")
        with open(path, "rb") as f:
            content = f.read()
        data = {"user": user} if user else None
        response = self._whole("POST", "/audio-to-text", data=data, files={"file": (name, content, mime_type)})
        record = self._json(response, "/audio-to-text")
        text = record.get("text")
        if not isinstance(text, str):
            raise DifyBadResponse(response.status_code, "", f"/audio-to-text: no text in {record!r}")
        return text

    def text_to_audio(self, text: str, user: str | None = None, *, voice: str | None = None) -> tuple[bytes, str]:
        """POST /text-to-audio: (the audio bytes, usually MP3, and their content type) for
        ``text``; raises DifyError on non-2xx, or DifyBadResponse when the answer is not audio."""
        body: dict[str, Any] = {"text": text}
        if user:
            body["user"] = user
        if voice:
            body["voice"] = voice
        response = self._whole("POST", "/text-to-audio", json=body)
        content = response.content
        content_type = response.headers.get("Content-Type", "")
        if not content or content_type.startswith(("application/json", "text/")):
            raise DifyBadResponse(response.status_code, "", f"/text-to-audio: no audio ({content_type}, {len(content)} bytes)")
        return content, content_type

    # -- downloads -------------------------------------------------------------------------------
    def download(self, url: str, max_bytes: int) -> tuple[bytes, str]:
        """GET a file linked from an answer: (content, content type). Raises
        :class:`common.fetch.FetchError` (refused, busy, too large, timed out, failed).
        The host of this app's api base may be internal (a Dify on the LAN)."""
        return fetch.fetch_bytes(url, max_bytes, extra_hosts=[urlsplit(self.api_base).hostname or ""])

    # -- plumbing ----------------------------------------------------------------------------------
    def request(self, method: str, path: str, *, stream: bool = False, deadline: Deadline | None = None,
                **kwargs: Any) -> requests.Response:
        """Send a request, retrying retryable failures; a 2xx response or a DifyError.

        Retries happen only here, before the caller has read anything of the body, and
        not once ``deadline`` (if given) has passed."""
        stop = tenacity.stop_after_attempt(self.retries() + 1)
        if deadline is not None:
            stop = stop | (lambda state: deadline.expired)
        retrying = tenacity.Retrying(
            stop=stop,
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, DifyError) and e.retryable),
            wait=self._wait,
            sleep=lambda seconds: self.sleep(seconds),
            before_sleep=lambda state: logger.warning(
                f"[DIFY] {method} {path} failed ({state.outcome.exception()}); "
                f"retry {state.attempt_number} of {self.retries()} in {state.next_action.sleep:.2f}s"
            ),
            reraise=True,
        )
        return retrying(self._send, method, path, stream=stream, deadline=deadline, **kwargs)

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None) if error is not None else None
        if retry_after is not None:
            return min(float(retry_after), self.retry_after_cap)
        return min(self.backoff_base * (2 ** (state.attempt_number - 1)), self.backoff_max)

    def _send(self, method: str, path: str, *, stream: bool = False, deadline: Deadline | None = None,
              **kwargs: Any) -> requests.Response:
        url = self.api_base + path
        if logger.isEnabledFor(logging.DEBUG):  # the f-string and the mask cost time on every call
            logger.debug(f"[DIFY] {method} {mask_urls(url)} key={mask_secret(self.api_key) if self.api_key else '<empty>'} stream={stream}")
        if deadline is not None and deadline.expired:
            raise DifyAnswerTimeout(0, "", f"{method} {path}: dify_answer_timeout ({deadline.seconds:g} s) passed")
        connect, read = self.timeouts()
        if deadline is not None:
            connect, read = deadline.cap(connect), deadline.cap(read)
        started = time.monotonic()
        try:
            response = self.session.request(method, url, stream=stream, timeout=(connect, read), **kwargs)
        except requests.exceptions.ConnectTimeout as e:
            raise DifyTimeout(0, "", f"{method} {path}: no connection within the connect timeout: {e}", phase="connect") from e
        except requests.exceptions.ReadTimeout as e:
            if deadline is not None and deadline.expired:
                raise DifyAnswerTimeout(0, "", f"{method} {path}: no answer within dify_answer_timeout "
                                               f"({deadline.seconds:g} s)") from e
            raise DifyTimeout(0, "", f"{method} {path}: no answer within the read timeout: {e}", phase="read") from e
        except requests.exceptions.RequestException as e:  # refused, reset, invalid URL, ...
            raise DifyConnectionError(0, "", f"{method} {path}: {e}") from e
        logger.debug("[DIFY] %s %s -> %s in %.2fs", method, path, response.status_code, time.monotonic() - started)
        if 200 <= response.status_code < 300:
            return response
        try:
            # The error body is small and arrives before any stream: reading it is safe.
            raw = response.text
        except requests.exceptions.RequestException:
            raw = ""
        finally:
            response.close()
        code, message = "", raw[:500]
        try:
            body = json.loads(raw)
            if isinstance(body, dict):
                code = str(body.get("code") or "")
                message = str(body.get("message") or "")
        except ValueError:
            pass
        error = classify(
            response.status_code, code, message, retry_after=_retry_after_seconds(response.headers.get("Retry-After"))
        )
        # A stale conversation is recovered by the bot (a new conversation): no warning for it.
        level = logging.INFO if isinstance(error, DifyConversationNotFound) else logging.WARNING
        logger.log(level, f"[DIFY] {method} {path} answered {response.status_code}: code={code!r} message={message!r}")
        raise error

    @staticmethod
    def _json(response: requests.Response, path: str, raw: bytes | None = None) -> dict[str, Any]:
        """The JSON object of `response` (or of its body `raw`, already read)."""
        try:
            body = response.json() if raw is None else json.loads(raw)
        except ValueError:
            text = response.text if raw is None else raw.decode("utf-8", "replace")
            raise DifyBadResponse(response.status_code, "", f"{path}: not JSON: {text[:200]!r}") from None
        finally:
            response.close()
        if not isinstance(body, dict):
            raise DifyBadResponse(response.status_code, "", f"{path}: not a JSON object: {str(body)[:200]!r}")
        return safe_data(body)  # a "\ud800" escape decodes to a lone surrogate


# --- one client per (api_base, api_key) -------------------------------------------------------------

_clients: dict[tuple[str, str], DifyClient] = {}
_clients_lock = threading.Lock()


def get_client(api_base: str | None = None, api_key: str | None = None) -> DifyClient:
    """The shared client of an app; both default to the dify_api_base / dify_api_key settings."""
    base = (api_base or conf().get("dify_api_base") or DEFAULT_API_BASE).strip().rstrip("/")
    key = api_key if api_key is not None else (conf().get("dify_api_key") or "")
    with _clients_lock:
        client = _clients.get((base, key))
        if client is None:
            client = DifyClient(base, key)
            _clients[(base, key)] = client
        return client


def close_clients() -> None:
    """Close and forget every shared client (tests; a changed setting needs none of this)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        client.close()
