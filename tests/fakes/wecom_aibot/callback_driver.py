"""Plays WeCom towards a bot in CALLBACK mode (reference/wecom-aibot.md §3, §4.1, §6 "HTTP side").

`CallbackDriver` signs and encrypts callbacks the way WeCom does, POSTs them to the daemon's
callback URL, then decrypts and checks what comes back (`CallbackReply.problems` lists every
deviation from §3.3), and polls stream refreshes (`follow` -> `StreamView`).

The crypto is written here from the reference on `cryptography` primitives, on purpose NOT with
wechatpy: the product uses wechatpy, and a test that shares the product's crypto would prove
nothing. The self-test cross-checks both directions against wechatpy instead.

`WecomHost` is WeCom's HTTP side in this mode: the media host that serves callback media
encrypted with the EncodingAESKey (§4.2; URLs live 5 minutes) and the `response_url` endpoint
(§3.5: plain JSON, usable once, valid 1 hour).

Not modelled: the "3 messages in progress per user" limit, WeCom's retries.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import string
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, quote, urlencode, urlparse

import httpx
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = ["CallbackCrypto", "CallbackDriver", "CallbackReply", "StreamView", "WecomHost", "MAX_CONTENT_BYTES"]

MAX_CONTENT_BYTES = 20480  # stream / markdown content limit, UTF-8 bytes (§5.2)
BLOCK = 32  # WeCom pads PKCS#7 to 32 bytes although AES blocks are 16 (§4.1)
_ALNUM = string.ascii_letters + string.digits


def _pad(data: bytes) -> bytes:
    n = BLOCK - len(data) % BLOCK  # a full block of 32 when already aligned
    return data + bytes([n]) * n


def _unpad(data: bytes) -> bytes:
    if not data or len(data) % 16:
        raise ValueError("ciphertext is not a whole number of AES blocks")
    n = data[-1]
    if not 1 <= n <= BLOCK or data[-n:] != bytes([n]) * n:
        raise ValueError(f"bad PKCS#7/32 padding (last byte {n})")
    return data[:-n]


def _random_token(length: int = 16) -> str:
    return "".join(secrets.choice(_ALNUM) for _ in range(length))


class CallbackCrypto:
    """WXBizJsonMsgCrypt for AI bots: AES-256-CBC, IV = key[:16], PKCS#7/32, receiveid ""."""

    def __init__(self, token: str, encoding_aes_key: str, receiveid: str = "") -> None:
        if len(encoding_aes_key) != 43:
            raise ValueError("EncodingAESKey must be 43 characters")
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except ValueError as exc:
            raise ValueError(f"EncodingAESKey is not base64: {exc}") from None
        if len(key) != 32:
            raise ValueError("EncodingAESKey must decode to 32 bytes")
        self.token = token
        self.key = key
        self.receiveid = receiveid

    @staticmethod
    def random_aes_key() -> str:
        return base64.b64encode(os.urandom(32)).decode().rstrip("=")

    def _cipher(self) -> Cipher:
        return Cipher(algorithms.AES(self.key), modes.CBC(self.key[:16]))

    def _aes_encrypt(self, data: bytes) -> bytes:
        enc = self._cipher().encryptor()
        return enc.update(_pad(data)) + enc.finalize()

    def _aes_decrypt(self, data: bytes) -> bytes:
        if not data or len(data) % 16:
            raise ValueError("ciphertext is not a whole number of AES blocks")
        dec = self._cipher().decryptor()
        return _unpad(dec.update(data) + dec.finalize())

    def signature(self, timestamp: str, nonce: str, encrypt: str) -> str:
        # Sorted as plain strings, then concatenated with no separator.
        parts = sorted([self.token, str(timestamp), nonce, encrypt])
        return hashlib.sha1("".join(parts).encode()).hexdigest()

    def encrypt_text(self, plaintext: str) -> str:
        """The base64 `encrypt` string: 16 random bytes | len (4, big-endian) | msg | receiveid."""
        msg = plaintext.encode("utf-8")
        framed = os.urandom(16) + struct.pack(">I", len(msg)) + msg + self.receiveid.encode()
        return base64.b64encode(self._aes_encrypt(framed)).decode()

    def encrypt(self, plaintext: str, nonce: str | None = None, timestamp: str | None = None) -> dict:
        encrypt = self.encrypt_text(plaintext)
        timestamp = str(timestamp if timestamp is not None else int(time.time()))
        nonce = nonce or _random_token()
        return {
            "encrypt": encrypt,
            "msgsignature": self.signature(timestamp, nonce, encrypt),
            "timestamp": timestamp,
            "nonce": nonce,
        }

    def decrypt(self, envelope_encrypt: str) -> str:
        """Plaintext of an `encrypt` string; ValueError on bad base64/padding/length/receiveid."""
        try:
            raw = base64.b64decode(envelope_encrypt, validate=True)
        except ValueError as exc:
            raise ValueError(f"encrypt is not base64: {exc}") from None
        framed = self._aes_decrypt(raw)
        if len(framed) < 20:
            raise ValueError("decrypted buffer shorter than random + length")
        (length,) = struct.unpack(">I", framed[16:20])
        if 20 + length > len(framed):
            raise ValueError(f"length field {length} exceeds the buffer")
        msg, receiveid = framed[20 : 20 + length], framed[20 + length :]
        if receiveid != self.receiveid.encode():
            raise ValueError(f"receiveid is {receiveid!r}, expected {self.receiveid!r}")
        return msg.decode("utf-8")

    def encrypt_media(self, data: bytes) -> bytes:
        """Callback-mode media (§4.2): same key and IV, PKCS#7/32, no random/length framing."""
        return self._aes_encrypt(data)

    def decrypt_media(self, data: bytes) -> bytes:
        return self._aes_decrypt(data)


@dataclass
class CallbackReply:
    status: int  # 0 when no HTTP answer came (timeout, refused)
    raw: str
    empty: bool
    envelope: dict | None
    plaintext: dict | None
    signature_ok: bool | None  # None when there was nothing to check
    elapsed: float
    problems: list[str] = field(default_factory=list)
    request: dict = field(default_factory=dict)  # the plaintext body that was sent
    nonce: str = ""
    timestamp: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def msgtype(self) -> str | None:
        return (self.plaintext or {}).get("msgtype")

    @property
    def stream(self) -> dict | None:
        s = (self.plaintext or {}).get("stream")
        return s if isinstance(s, dict) else None


@dataclass
class StreamView:
    stream_id: str | None
    snapshots: list[str] = field(default_factory=list)
    finished: bool = False
    refreshes: int = 0
    problems: list[str] = field(default_factory=list)
    replies: list[CallbackReply] = field(default_factory=list)  # first reply, then each refresh
    msg_item: list | None = None  # images of the final frame, if any

    @property
    def text(self) -> str:
        return self.snapshots[-1] if self.snapshots else ""


STREAM_TYPES = ("stream", "stream_with_template_card")


def _stream_problems(stream: Any, expect_id: str | None = None) -> list[str]:
    """§3.3/§3.4 rules for one stream object of a reply."""
    if not isinstance(stream, dict):
        return ["stream is missing or not an object"]
    out = []
    sid = stream.get("id")
    if not isinstance(sid, str) or not sid:
        out.append("stream.id missing or empty")
    elif expect_id is not None and sid != expect_id:
        out.append(f"stream id changed: refresh for {expect_id!r} answered with {sid!r}")
    finish = stream.get("finish", False)
    if not isinstance(finish, bool):
        out.append(f"stream.finish is {finish!r}, not a boolean")
    content = stream.get("content", "")
    if not isinstance(content, str):
        out.append("stream.content is not a string")
    elif len(content.encode("utf-8")) > MAX_CONTENT_BYTES:
        out.append(f"stream.content is {len(content.encode('utf-8'))} bytes > {MAX_CONTENT_BYTES}")
    items = stream.get("msg_item")
    if items is not None:
        if finish is not True:
            out.append("msg_item is only allowed with finish:true")
        if not isinstance(items, list) or len(items) > 10:
            out.append("msg_item must be a list of at most 10 images")
        else:
            for i, item in enumerate(items):
                image = item.get("image") if isinstance(item, dict) else None
                if not isinstance(item, dict) or item.get("msgtype") != "image" or not isinstance(image, dict):
                    out.append(f"msg_item[{i}] is not an image item")
                    continue
                try:
                    data = base64.b64decode(image.get("base64", ""), validate=True)
                except (ValueError, TypeError):
                    out.append(f"msg_item[{i}].image.base64 is not base64")
                    continue
                if image.get("md5") != hashlib.md5(data).hexdigest():
                    out.append(f"msg_item[{i}].image.md5 does not match the raw bytes")
    fb = stream.get("feedback")
    if isinstance(fb, dict) and len(str(fb.get("id", "")).encode()) > 256:
        out.append("feedback.id is longer than 256 bytes")
    return out


def _plaintext_problems(request: dict, plain: dict) -> list[str]:
    """Which reply types §3.3 allows depends on what was sent."""
    kind = request.get("msgtype")
    msgtype = plain.get("msgtype")
    if kind == "event":
        event = request.get("event") or {}
        etype = event.get("eventtype")
        if etype == "feedback_event":
            return ["feedback_event must get an empty reply"]
        if etype == "enter_chat":
            if msgtype == "text":
                content = (plain.get("text") or {}).get("content")
                return [] if isinstance(content, str) and content else ["welcome text.content missing or empty"]
            if msgtype == "template_card":
                return [] if isinstance(plain.get("template_card"), dict) else ["template_card missing"]
            return [f"enter_chat answered with msgtype {msgtype!r} (allowed: text, template_card)"]
        if etype == "template_card_event":
            out = []
            if plain.get("response_type") != "update_template_card":
                out.append(f"card event answered with response_type {plain.get('response_type')!r}")
            card = plain.get("template_card")
            if not isinstance(card, dict):
                out.append("template_card missing")
            else:
                task_id = (event.get("template_card_event") or {}).get("task_id")
                if task_id is not None and card.get("task_id") != task_id:
                    out.append(f"template_card.task_id {card.get('task_id')!r} != event task_id {task_id!r}")
            return out
        return []
    if kind == "stream":  # a refresh: only a stream reply for the same id
        if msgtype not in STREAM_TYPES:
            return [f"refresh answered with msgtype {msgtype!r}, not a stream"]
        sent = request.get("stream")  # a test may send a hostile one: not necessarily an object
        return _stream_problems(plain.get("stream"), expect_id=sent.get("id") if isinstance(sent, dict) else None)
    if msgtype in STREAM_TYPES:
        return _stream_problems(plain.get("stream"))  # the first reply must set stream.id
    if msgtype == "template_card":
        return [] if isinstance(plain.get("template_card"), dict) else ["template_card missing"]
    return [f"message answered with msgtype {msgtype!r} (allowed: stream, template_card, stream_with_template_card)"]


class CallbackDriver:
    """Plays WeCom against `url` (the daemon's callback URL)."""

    def __init__(
        self,
        url: str,
        token: str,
        encoding_aes_key: str,
        aibotid: str = "bot-1",
        timeout: float = 10.0,
        bot_name: str = "bot",
    ) -> None:
        self.url = url
        self.crypto = CallbackCrypto(token, encoding_aes_key)
        self.aibotid = aibotid
        self.bot_name = bot_name
        self.timeout = timeout
        self.client = httpx.Client(timeout=timeout)
        self.last_verify_ok: bool | None = None
        self.last_verify_elapsed: float | None = None

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> CallbackDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- transport -------------------------------------------------------------------------

    def _url(self, query: dict) -> str:
        # quote (not quote_plus) with safe="": base64's '+', '/', '=' must arrive percent-encoded.
        qs = urlencode(query, quote_via=quote, safe="")
        return f"{self.url}{'&' if '?' in self.url else '?'}{qs}"

    def raw(
        self, method: str, query: dict, body: bytes | str = b"", headers: dict | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Anything at all: forged signatures, malformed JSON, huge bodies."""
        content = body.encode() if isinstance(body, str) else body
        return self.client.request(
            method, self._url(query), content=content or None, headers=headers,
            timeout=timeout if timeout is not None else self.timeout,
        )

    def verify(self) -> tuple[int, str]:
        """The URL check (§3.1): must answer the bare plaintext within 1 s."""
        plaintext = str(secrets.randbelow(10**19))  # WeCom's echostr decrypts to a random number
        env = self.crypto.encrypt(plaintext)
        query = {"msg_signature": env["msgsignature"], "timestamp": env["timestamp"],
                 "nonce": env["nonce"], "echostr": env["encrypt"]}
        start = time.monotonic()
        try:
            resp = self.raw("GET", query)
        except httpx.HTTPError:
            self.last_verify_ok, self.last_verify_elapsed = False, time.monotonic() - start
            return 0, ""
        self.last_verify_elapsed = time.monotonic() - start
        body = resp.content.decode("utf-8", errors="replace")  # not resp.text: keep a BOM visible
        self.last_verify_ok = resp.status_code == 200 and body == plaintext and self.last_verify_elapsed <= 1.0
        return resp.status_code, body

    def send(self, body: dict, msgid: str | None = None, timeout: float | None = None) -> CallbackReply:
        """POST one callback; `body` is the plaintext JSON (msgid/aibotid filled in when absent)."""
        body = dict(body)
        body.setdefault("msgid", msgid or uuid.uuid4().hex)
        body.setdefault("aibotid", self.aibotid)
        env = self.crypto.encrypt(json.dumps(body, ensure_ascii=False))  # fresh nonce every time
        query = {"msg_signature": env["msgsignature"], "timestamp": env["timestamp"], "nonce": env["nonce"]}
        start = time.monotonic()
        try:
            resp = self.raw("POST", query, json.dumps({"encrypt": env["encrypt"]}),
                            headers={"Content-Type": "application/json"}, timeout=timeout)
        except httpx.HTTPError as exc:
            return CallbackReply(0, "", True, None, None, None, time.monotonic() - start,
                                 [f"no HTTP answer: {type(exc).__name__}: {exc}"], body, env["nonce"], env["timestamp"])
        reply = CallbackReply(resp.status_code, resp.content.decode("utf-8", errors="replace"), not resp.content,
                              None, None, None, time.monotonic() - start, [], body, env["nonce"], env["timestamp"])
        self._check(reply)
        return reply

    def _check(self, r: CallbackReply) -> None:
        """Fill envelope/plaintext/signature_ok and list every deviation from §3.3."""
        p = r.problems
        if r.status != 200:
            p.append(f"HTTP status {r.status}")
        if r.empty:
            if r.request.get("msgtype") == "stream":
                p.append("refresh answered with an empty body, not a stream")
            return  # "空包" is a valid answer to anything else
        try:
            env = json.loads(r.raw)
        except ValueError:
            p.append(f"reply is not JSON: {r.raw[:80]!r}")
            return
        if not isinstance(env, dict):
            p.append("reply is not a JSON object")
            return
        r.envelope = env
        for key in ("encrypt", "msgsignature", "timestamp", "nonce"):
            if key not in env:
                p.append(f"envelope lacks {key!r}")
        nonce, ts, enc = env.get("nonce"), env.get("timestamp"), env.get("encrypt")
        if "nonce" in env and nonce != r.nonce:
            p.append(f"envelope nonce {nonce!r} is not the request's {r.nonce!r}")
        # The doc example has a number, the official helper a quoted string: accept both, in seconds.
        if "timestamp" in env:
            if isinstance(ts, bool) or not (isinstance(ts, int) or (isinstance(ts, str) and ts.isdigit())):
                p.append(f"envelope timestamp {ts!r} is not seconds")
            elif abs(int(ts) - time.time()) > 300:
                p.append(f"envelope timestamp {ts!r} is not within 5 minutes of now (milliseconds?)")
        if not isinstance(enc, str):
            if "encrypt" in env:
                p.append("envelope encrypt is not a string")
            return
        if "msgsignature" in env:
            r.signature_ok = env["msgsignature"] == self.crypto.signature(
                str(ts), nonce if isinstance(nonce, str) else r.nonce, enc)
            if not r.signature_ok:
                p.append("envelope msgsignature does not verify")
        try:
            text = self.crypto.decrypt(enc)
        except ValueError as exc:
            p.append(f"cannot decrypt reply: {exc}")
            return
        try:
            plain = json.loads(text)
        except ValueError:
            p.append(f"decrypted reply is not JSON: {text[:80]!r}")
            return
        if not isinstance(plain, dict):
            p.append("decrypted reply is not a JSON object")
            return
        r.plaintext = plain
        p.extend(_plaintext_problems(r.request, plain))

    # --- callback bodies (§3.2, shapes of §2.4/§2.5 without aeskey) -------------------------

    def _base(self, userid: str, chatid: str | None, msgid: str | None, msgtype: str,
              response_url: str | None = None) -> dict:
        body: dict = {"msgid": msgid or uuid.uuid4().hex, "aibotid": self.aibotid}
        if chatid:  # single chats carry no chatid at all
            body["chatid"] = chatid
        body["chattype"] = "group" if chatid else "single"
        body["from"] = {"userid": userid}
        if response_url is not None:
            body["response_url"] = response_url
        body["msgtype"] = msgtype
        return body

    def _mention(self, content: str) -> str:
        # Group text keeps the leading "@BotName " (the bot only hears @-mentions in groups).
        tag = f"@{self.bot_name}"
        return content if content.startswith(tag) else f"{tag} {content}"

    def text(self, userid: str, content: str, chatid: str | None = None, msgid: str | None = None,
             response_url: str | None = None) -> CallbackReply:
        body = self._base(userid, chatid, msgid, "text", response_url)
        body["text"] = {"content": self._mention(content) if chatid else content}
        return self.send(body)

    def image(self, userid: str, url: str, chatid: str | None = None, msgid: str | None = None,
              response_url: str | None = None) -> CallbackReply:
        if chatid:  # an image in a group arrives as mixed: the @-mention plus the image
            return self.mixed(userid, [f"@{self.bot_name}", {"url": url}], chatid, msgid, response_url)
        body = self._base(userid, None, msgid, "image", response_url)
        body["image"] = {"url": url}  # callback mode: no aeskey, media uses the EncodingAESKey
        return self.send(body)

    def mixed(self, userid: str, parts: list, chatid: str | None = None, msgid: str | None = None,
              response_url: str | None = None) -> CallbackReply:
        """`parts`: str = a text item, dict = an image object such as {"url": ...}."""
        items = [{"msgtype": "text", "text": {"content": p}} if isinstance(p, str)
                 else {"msgtype": "image", "image": dict(p)} for p in parts]
        if chatid:
            if items and items[0]["msgtype"] == "text":
                items[0]["text"]["content"] = self._mention(items[0]["text"]["content"])
            else:
                items.insert(0, {"msgtype": "text", "text": {"content": f"@{self.bot_name}"}})
        body = self._base(userid, chatid, msgid, "mixed", response_url)
        body["mixed"] = {"msg_item": items}
        return self.send(body)

    def voice(self, userid: str, transcript: str, msgid: str | None = None,
              response_url: str | None = None) -> CallbackReply:
        body = self._base(userid, None, msgid, "voice", response_url)
        body["voice"] = {"content": transcript}  # WeCom sends only its transcription
        return self.send(body)

    def file(self, userid: str, url: str, msgid: str | None = None,
             response_url: str | None = None) -> CallbackReply:
        body = self._base(userid, None, msgid, "file", response_url)
        body["file"] = {"url": url}
        return self.send(body)

    def _event(self, userid: str, chatid: str | None, msgid: str | None, eventtype: str,
               payload: dict | None = None, response_url: str | None = None) -> dict:
        body = self._base(userid, chatid, msgid, "event", response_url)
        body["create_time"] = int(time.time())
        event: dict = {"eventtype": eventtype}
        if payload is not None:
            event[eventtype] = payload  # nested under a key equal to the event type (§2.5)
        body["event"] = event
        return body

    def enter_chat(self, userid: str, msgid: str | None = None) -> CallbackReply:
        return self.send(self._event(userid, None, msgid, "enter_chat"))

    def feedback(self, userid: str, feedback_id: str, type: int = 1, content: str | None = None,
                 reasons: list[int] | None = None, msgid: str | None = None) -> CallbackReply:
        payload: dict = {"id": feedback_id, "type": type}
        if content is not None:
            payload["content"] = content
        if reasons is not None:
            payload["inaccurate_reason_list"] = reasons
        return self.send(self._event(userid, None, msgid, "feedback_event", payload))

    def card_click(self, userid: str, event_key: str, task_id: str, card_type: str = "button_interaction",
                   chatid: str | None = None, selected_items: dict | None = None, msgid: str | None = None,
                   response_url: str | None = None) -> CallbackReply:
        """A template_card_event; WeCom sends it once and gives up after 5 s."""
        payload: dict = {"card_type": card_type, "event_key": event_key, "task_id": task_id}
        if selected_items is not None:
            payload["selected_items"] = selected_items
        body = self._event(userid, chatid, msgid, "template_card_event", payload, response_url)
        return self.send(body, timeout=5.0)

    def refresh(self, userid: str, stream_id: str, chatid: str | None = None) -> CallbackReply:
        """A stream refresh (§3.4): its own new msgid, no response_url."""
        body = self._base(userid, chatid, None, "stream")
        body["stream"] = {"id": stream_id}
        return self.send(body)

    def follow(self, reply: CallbackReply, userid: str, chatid: str | None = None, interval: float = 0.2,
               window: float = 360.0, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> StreamView:
        """Poll reply's stream until finish:true or `window` s after the user's message.

        The window starts when `follow` is called, less the first reply's elapsed time (the user's
        message went out that long ago). Pass a fake `clock` and `sleep` to test the window."""
        start = clock() - reply.elapsed
        first = reply.stream
        if reply.msgtype not in STREAM_TYPES or first is None or not first.get("id"):
            return StreamView(None, problems=[f"first reply is not a stream (msgtype {reply.msgtype!r})"]
                              + reply.problems, replies=[reply])
        view = StreamView(first["id"], replies=[reply], problems=[f"first reply: {p}" for p in reply.problems])
        last = first
        view.snapshots.append(str(first.get("content", "")))
        view.finished = first.get("finish") is True
        while not view.finished:
            if clock() - start >= window:
                view.problems.append(f"stream not finished within {window:g} s of the user's message")
                break
            sleep(interval)
            r = self.refresh(userid, view.stream_id, chatid)
            view.refreshes += 1
            view.replies.append(r)
            view.problems.extend(f"refresh {view.refreshes}: {p}" for p in r.problems)
            s = r.stream
            if r.msgtype not in STREAM_TYPES or s is None or s.get("id") != view.stream_id:
                continue  # WeCom would not show it; keep polling our stream
            last = s
            view.snapshots.append(str(s.get("content", "")))
            view.finished = s.get("finish") is True
        if view.finished:
            view.msg_item = last.get("msg_item")
            if not view.text and not view.msg_item:
                earlier = max((len(x) for x in view.snapshots[:-1]), default=0)
                view.problems.append("final frame has empty content" +
                                     (f" (content shrank to empty at the end, from {earlier} chars)" if earlier else ""))
        return view


MEDIA_URL_TTL = 300.0  # callback media URLs live 5 minutes (§5.1)
RESPONSE_URL_TTL = 3600.0  # a response_url is usable once within 1 hour (§3.5)
RESPONSE_PATH = "/cgi-bin/aibot/response"


class WecomHost:
    """WeCom's HTTP side for callback mode, on 127.0.0.1.

    * `add_media(data)` -> a URL whose GET returns `data` encrypted with the callback
      EncodingAESKey (AES-256-CBC, IV = key[:16], PKCS#7/32, no framing: §4.2); 404 when unknown,
      403 once older than 5 minutes (a signed COS URL past its time).
    * `new_response_url()` -> `.../cgi-bin/aibot/response?response_code=...`; POST plain JSON
      `{msgtype: markdown, markdown: {content <= 20480 bytes}}` or a template_card, once within
      1 hour. Answers `{errcode, errmsg}` (the shape the reference presumes): 0 ok; 846605 unknown
      or used code; 846604 expired; 40058 bad body; 45002 content too long. Accepted bodies are in
      `posts`, every attempt in `attempts`.
    """

    def __init__(self, crypto: CallbackCrypto, clock: Callable[[], float] = time.monotonic) -> None:
        self.crypto = crypto
        self.clock = clock
        self.url = ""
        self.media: dict[str, tuple[bytes, float]] = {}
        self.codes: dict[str, list] = {}  # code -> [created_at, used]
        self.fetches: list[tuple[str, int]] = []
        self.posts: list[dict] = []
        self.attempts: list[dict] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> "WecomHost":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> "WecomHost":
        host = self

        class Handler(_HostHandler):
            owner = host

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, args=(0.05,), name="wecom-host", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def add_media(self, data: bytes) -> str:
        token = secrets.token_urlsafe(18)
        with self._lock:
            self.media[token] = (self.crypto.encrypt_media(data), self.clock())
        return f"{self.url}/media/{token}"

    def new_response_url(self) -> str:
        code = secrets.token_urlsafe(24)
        with self._lock:
            self.codes[code] = [self.clock(), False]
        return f"{self.url}{RESPONSE_PATH}?response_code={code}"

    def _get(self, path: str) -> tuple[int, bytes]:
        token = path[len("/media/"):] if path.startswith("/media/") else ""
        with self._lock:
            item = self.media.get(token)
            if item is None:
                status, blob = 404, b"not found"
            elif self.clock() - item[1] > MEDIA_URL_TTL:
                status, blob = 403, b"<Error><Code>AccessDenied</Code></Error>"
            else:
                status, blob = 200, item[0]
            self.fetches.append((path, status))
        return status, blob

    def _post(self, code: str, raw: bytes) -> dict:
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            body = None
        with self._lock:
            errcode, errmsg = self._check(code, body)
            self.attempts.append({"response_code": code, "body": body if body is not None else raw,
                                  "errcode": errcode})
            if errcode == 0:
                self.codes[code][1] = True
                self.posts.append(body)
        return {"errcode": errcode, "errmsg": errmsg}

    def _check(self, code: str, body: Any) -> tuple[int, str]:
        entry = self.codes.get(code)
        if entry is None or entry[1]:
            return 846605, "response_code unknown or already used"
        if self.clock() - entry[0] > RESPONSE_URL_TTL:
            return 846604, "response_code expired"
        if not isinstance(body, dict):
            return 40058, "body is not a JSON object"
        if body.get("msgtype") == "markdown":
            content = (body.get("markdown") or {}).get("content") if isinstance(body.get("markdown"), dict) else None
            if not isinstance(content, str) or not content:
                return 40058, "markdown.content missing"
            if len(content.encode("utf-8")) > MAX_CONTENT_BYTES:
                return 45002, f"markdown.content over {MAX_CONTENT_BYTES} bytes"
            return 0, "ok"
        if body.get("msgtype") == "template_card" and isinstance(body.get("template_card"), dict):
            return 0, "ok"
        return 40058, f"msgtype {body.get('msgtype')!r} not allowed"


class _HostHandler(BaseHTTPRequestHandler):
    owner: WecomHost
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args) -> None:  # noqa: A002 - the base class's name
        pass

    def _reply(self, status: int, payload: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        status, blob = self.owner._get(urlparse(self.path).path)
        self._reply(status, blob, "application/octet-stream" if status == 200 else "text/plain")

    def do_POST(self) -> None:
        url = urlparse(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path != RESPONSE_PATH:
            self._reply(404, b"not found", "text/plain")
            return
        code = (parse_qs(url.query).get("response_code") or [""])[0]
        self._reply(200, json.dumps(self.owner._post(code, raw)).encode(), "application/json")
