"""The iLink simulator: one ThreadingHTTPServer on 127.0.0.1 serving the bot API and the CDN.

API routes are matched by their ending, so one server can play two hosts: the host the daemon is
configured with (`<base>/entry`, where the QR login happens) and the host WeChat names at login
(`<base>/api`, which the daemon must use from then on). `calls` records the prefix of each call.

  GET|POST .../ilink/bot/get_bot_qrcode?bot_type=3     -> {qrcode, qrcode_img_content}
  GET      .../ilink/bot/get_qrcode_status?qrcode=&verify_code=
           held up to `hold` s until the QR's status is not `wait`; statuses are set by the test
  POST     .../ilink/bot/getupdates {get_updates_buf}  held up to `hold` s; msgs after the cursor
  POST     .../ilink/bot/sendmessage {msg}             checked (token, shape, context_token) and recorded
  POST     .../ilink/bot/getuploadurl                  -> {upload_param}
  POST     .../ilink/bot/getconfig|sendtyping|msg/notifystart|msg/notifystop -> {ret: 0}
  POST     /c2c/upload?encrypted_query_param=&filekey= -> header x-encrypted-param
  GET      /c2c/download?encrypted_query_param=        -> the stored ciphertext

Bot calls with a token that is not valid (never issued, or expired by `expire_token`) get
`{"ret": -14}`. An empty cursor reads the update log from its start (a fresh sync), so a client
that forgets its cursor is given old messages again; `deliveries` counts how often each message
went out. A cursor belongs to the bot it was given to (getupdates is a call of one bot): another
bot's cursor is refused (`ret -1`).

A QR asked for by POST with `local_token_list` (reference §1.3, the official client) remembers
those tokens; `set_status(qr, "binded_redirect")` then answers without a token (the reference
describes none) and makes the listed tokens that this server issued valid again: the client goes
on with its own.
"""
from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import crypto

API = "/ilink/bot/"
ENTRY, NAMED = "/entry", "/api"


@dataclass
class Sent:
    to: str
    items: list
    context_token: str
    client_id: str
    token: str

    @property
    def texts(self) -> list[str]:
        return [i["text_item"]["text"] for i in self.items if i.get("type") == 1]


@dataclass
class _Qr:
    qrcode: str
    status: str = "wait"
    extra: dict = field(default_factory=dict)
    verify_code: str = ""
    polls: int = 0
    local_tokens: list = field(default_factory=list)


class IlinkSimulator:
    def __init__(self, *, hold: float = 0.4, bot_id: str = "f00d@im.bot", owner: str = "owner@im.wechat") -> None:
        self.hold = hold
        self.bot_id = bot_id
        self.owner = owner
        self._cond = threading.Condition()
        self.qrs: list[_Qr] = []
        self.tokens: set[str] = set()
        self.token_bots: dict[str, str] = {}  # every token issued -> its bot
        self.log: list[dict] = []  # the update log; a cursor is a position in it
        self.deliveries: dict[str, int] = {}
        # user -> the newest context_token given out with a message: what a reply must carry
        self.context_tokens: dict[str, str] = {}
        self.sent: list[Sent] = []
        self.errors: list[str] = []  # requests the simulator refused as malformed
        self.calls: list[tuple[str, str]] = []  # (prefix, endpoint)
        self.polls: list[dict] = []  # getupdates bodies
        self.send_failures: list[dict] = []  # injected answers for the next sendmessage calls
        self.update_answers: list[bytes] = []  # injected raw answers for the next getupdates calls
        self.status_answers: list[bytes] = []  # injected raw answers for the next QR status polls
        self.download_failures: list[int] = []  # HTTP statuses for the next CDN downloads
        self.download_delays: list[float] = []  # seconds the next CDN downloads are held
        self.uploads: dict[str, dict] = {}  # upload_param -> getuploadurl body
        self.cdn: dict[str, bytes] = {}  # download param -> ciphertext
        self.cdn_keys: dict[str, bytes] = {}  # download param -> key (files uploaded by the bot)
        self._next_id = 1000
        self._server: ThreadingHTTPServer | None = None

    # ================================================================== lifecycle
    def start(self) -> "IlinkSimulator":
        sim = self

        class Handler(_Handler):
            simulator = sim

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def entry_url(self) -> str:
        """The API host to configure (the login happens here)."""
        return self.base_url + ENTRY

    @property
    def api_url(self) -> str:
        """The API host WeChat names at login."""
        return self.base_url + NAMED

    @property
    def cdn_url(self) -> str:
        return self.base_url + "/c2c"

    # ================================================================== login
    def wait_qr(self, timeout: float = 10.0, after: int = 0) -> str:
        """The id of the newest QR once more than `after` QR codes were issued."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.qrs) <= after:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no login QR was asked for within {timeout} s")
                self._cond.wait(left)
            return self.qrs[-1].qrcode

    def set_status(self, qrcode: str, status: str, **extra: Any) -> None:
        with self._cond:
            qr = self._qr(qrcode)
            qr.status, qr.extra = status, extra
            if status == "need_verifycode":
                qr.verify_code = str(extra.pop("code", "123456"))
            if status == "binded_redirect":
                self.tokens.update(t for t in qr.local_tokens if t in self.token_bots)
            self._cond.notify_all()

    def confirm(self, qrcode: str, bot_id: str | None = None) -> str:
        """The phone confirms the login: a new bot token, returned. `bot_id`: another WeChat
        scanned, which binds another bot."""
        token = "tok-" + secrets.token_hex(8)
        bot = bot_id or self.bot_id
        with self._cond:
            self.tokens.add(token)
            self.token_bots[token] = bot
        self.set_status(qrcode, "confirmed", bot_token=token, ilink_bot_id=bot, baseurl=self.api_url,
                        ilink_user_id=self.owner)
        return token

    def local_tokens(self, qrcode: str) -> list:
        with self._cond:
            return list(self._qr(qrcode).local_tokens)

    def inject_status_answer(self, body: bytes) -> None:
        """The next QR status poll is answered with `body` as it is (HTTP 200)."""
        with self._cond:
            self.status_answers.append(body)

    def delay_downloads(self, seconds: float, count: int = 1) -> None:
        """The next `count` CDN downloads are answered after `seconds` (a slow file)."""
        with self._cond:
            self.download_delays.extend([seconds] * count)

    def fail_downloads(self, count: int = 1, status: int = 503) -> None:
        """The next `count` CDN downloads fail with HTTP `status` (a passing CDN fault)."""
        with self._cond:
            self.download_failures.extend([status] * count)

    def expire_token(self) -> None:
        """Every token issued so far turns stale: bot calls get -14."""
        with self._cond:
            self.tokens.clear()
            self._cond.notify_all()

    def status_polls(self, qrcode: str) -> int:
        with self._cond:
            return self._qr(qrcode).polls

    def _qr(self, qrcode: str) -> _Qr:
        for qr in self.qrs:
            if qr.qrcode == qrcode:
                return qr
        raise KeyError(qrcode)

    # ================================================================== inbound messages
    def batch(self):
        """`with sim.batch(): ...`: the messages pushed inside go out in one getupdates answer
        (a poll waiting meanwhile sees them only at the end)."""
        return self._cond

    def push(self, msg: Any) -> Any:
        """Append any update (even a malformed one) to the log."""
        with self._cond:
            self.log.append(msg)
            self._cond.notify_all()
        return msg

    def _message(self, user: str, items: list, message_id: int | None = None) -> dict:
        """A user's message to the bot `bot_id` names now (a test may switch it)."""
        with self._cond:
            self._next_id += 1
            mid = message_id if message_id is not None else self._next_id
            token = "ctx-" + secrets.token_hex(6)
        return {"seq": mid, "message_id": mid, "from_user_id": user, "to_user_id": self.bot_id,
                "client_id": secrets.token_hex(8), "create_time_ms": int(time.time() * 1000), "session_id": "",
                "group_id": "", "message_type": 1, "message_state": 2, "item_list": items, "context_token": token}

    def push_text(self, user: str, text: str) -> dict:
        return self.push(self._message(user, [{"type": 1, "text_item": {"text": text}}]))

    def push_voice(self, user: str, transcript: str = "", audio: bytes = b"#!SILK_V3") -> dict:
        """A voice message: WeChat's transcript when given (it usually is), and the SILK audio."""
        media = self.store_media(audio)[0]
        voice = {"media": media, "encode_type": 6, "sample_rate": 24000, "playtime": 1200}
        if transcript:
            voice["text"] = transcript
        return self.push(self._message(user, [{"type": 3, "voice_item": voice}]))

    def push_image(self, user: str, data: bytes, key_style: str = "hex", *, broken: bool = False) -> dict:
        """An image; `key_style` picks where and how its key is spelled (crypto.spell_key);
        `broken`: the stored file does not decrypt with the key sent."""
        media, key = self.store_media(data, broken=broken, key_style="b64hex" if key_style == "hex" else key_style)
        item: dict = {"media": media, "mid_size": len(data)}
        if key_style == "hex":
            item["aeskey"] = key.hex()
            media.pop("aes_key")
        return self.push(self._message(user, [{"type": 2, "image_item": item}]))

    def push_file(self, user: str, name: str, data: bytes, *, broken: bool = False) -> dict:
        media = self.store_media(data, broken=broken)[0]
        return self.push(self._message(user, [{"type": 4, "file_item": {
            "media": media, "file_name": name, "len": str(len(data)), "md5": hashlib.md5(data).hexdigest()}}]))

    def push_video(self, user: str, data: bytes) -> dict:
        media = self.store_media(data)[0]
        return self.push(self._message(user, [{"type": 5, "video_item": {
            "media": media, "video_size": len(data), "play_length": 3, "video_md5": hashlib.md5(data).hexdigest()}}]))

    def store_media(self, data: bytes, *, broken: bool = False, key_style: str = "b64hex") -> tuple[dict, bytes]:
        key = crypto.new_key()
        blob = crypto.encrypt(data, key)
        while broken:  # a file under some other key (one whose padding cannot pass by chance)
            blob = crypto.encrypt(data, crypto.new_key())
            try:
                crypto.decrypt(blob, key)
            except ValueError:
                break
        param = "dl-" + secrets.token_urlsafe(12)
        with self._cond:
            self.cdn[param] = blob
        return {"encrypt_query_param": param, "aes_key": crypto.spell_key(key, key_style), "encrypt_type": 1}, key

    def inject_updates_answer(self, body: bytes) -> None:
        """The next getupdates call is answered with `body` as it is (HTTP 200)."""
        with self._cond:
            self.update_answers.append(body)

    # ================================================================== outbound
    def fail_next_send(self, ret: int = -1, errmsg: str = "system error", status: int = 200, *,
                       to: str | None = None, taken: bool = False) -> None:
        """The next sendmessage (to `to`, else any) fails. `taken`: the message is delivered
        (recorded in `sent`) but the answer is an HTTP 502 page, as when a gateway loses it."""
        with self._cond:
            self.send_failures.append({"ret": ret, "errmsg": errmsg, "status": status, "to": to, "taken": taken})

    def sent_to(self, user: str) -> list[Sent]:
        with self._cond:
            return [s for s in self.sent if s.to == user]

    def texts_to(self, user: str) -> list[str]:
        return [t for s in self.sent_to(user) for t in s.texts]

    def wait_sent(self, user: str, count: int = 1, timeout: float = 15.0) -> list[Sent]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.sent_to(user)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError(f"{user} got {len(self.sent_to(user))} message(s) within {timeout} s, not {count}; "
                             f"simulator errors: {self.errors}")

    def media_of(self, media: dict) -> bytes:
        """The plaintext of a file the bot uploaded, read with the key its message carries."""
        with self._cond:
            blob = self.cdn[media["encrypt_query_param"]]
        return crypto.decrypt(blob, crypto.read_key(media["aes_key"]))

    # ================================================================== request handling
    def _authorised(self, headers) -> str | None:
        auth = headers.get("Authorization") or ""
        token = auth[7:] if auth.startswith("Bearer ") else ""
        if headers.get("AuthorizationType") != "ilink_bot_token":
            return None
        with self._cond:
            return token if token in self.tokens else None

    def handle_api(self, prefix: str, endpoint: str, query: dict, body: Any, headers) -> tuple[int, dict, dict]:
        with self._cond:
            self.calls.append((prefix, endpoint))
        if endpoint == "get_bot_qrcode":
            listed = body.get("local_token_list") if isinstance(body, dict) else None
            qr = _Qr("qr-" + secrets.token_hex(6),
                     local_tokens=[t for t in listed if isinstance(t, str)] if isinstance(listed, list) else [])
            with self._cond:
                self.qrs.append(qr)
                self._cond.notify_all()
            return 200, {"qrcode": qr.qrcode, "qrcode_img_content": f"{self.base_url}/qr/{qr.qrcode}"}, {}
        if endpoint == "get_qrcode_status":
            with self._cond:
                if self.status_answers:
                    return 200, self.status_answers.pop(0), {}
            return 200, self._status(query), {}
        if not isinstance(body, dict) or not isinstance(body.get("base_info"), dict):
            self.errors.append(f"{endpoint}: body without base_info: {str(body)[:200]}")
            return 200, {"ret": -1, "errmsg": "bad request"}, {}
        token = self._authorised(headers)
        if token is None:
            return 200, {"ret": -14, "errcode": -14, "errmsg": "session timeout"}, {}
        if endpoint == "getupdates":
            return self._getupdates(body, self.token_bots.get(token, self.bot_id))
        if endpoint == "sendmessage":
            return self._sendmessage(body, token)
        if endpoint == "getuploadurl":
            param = "up-" + secrets.token_urlsafe(12)
            with self._cond:
                self.uploads[param] = body
            return 200, {"ret": 0, "upload_param": param}, {}
        if endpoint in ("getconfig", "sendtyping", "msg/notifystart", "msg/notifystop"):
            return 200, {"ret": 0, "typing_ticket": "tt"}, {}
        return 404, {"ret": -1, "errmsg": "no such endpoint"}, {}

    def _status(self, query: dict) -> dict:
        qrcode = (query.get("qrcode") or [""])[0]
        code = (query.get("verify_code") or [""])[0]
        deadline = time.monotonic() + self.hold
        with self._cond:
            try:
                qr = self._qr(qrcode)
            except KeyError:
                return {"ret": -1, "errmsg": "unknown qrcode"}
            qr.polls += 1
            if code and qr.status == "need_verifycode":
                if code == qr.verify_code:
                    qr.status, qr.extra = "scaned", {}
                else:
                    qr.status, qr.extra = "verify_code_blocked", {}
            while qr.status == "wait" and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            return {"ret": 0, "status": qr.status, **qr.extra}

    def _getupdates(self, body: dict, bot: str) -> tuple[int, Any, dict]:
        with self._cond:
            self.polls.append(body)
            if self.update_answers:
                return 200, self.update_answers.pop(0), {}
        cursor = body.get("get_updates_buf")
        position = 0
        if cursor:
            try:
                decoded = json.loads(base64.urlsafe_b64decode(cursor.encode()))
                position = int(decoded["p"])
            except Exception:
                self.errors.append(f"getupdates: a cursor never given out: {cursor!r}")
                return 200, {"ret": -1, "errmsg": "bad get_updates_buf"}, {}
            if decoded.get("b") != bot:
                self.errors.append(f"getupdates: bot {bot} sent the cursor of bot {decoded.get('b')}")
                return 200, {"ret": -1, "errmsg": "bad get_updates_buf"}, {}
        deadline = time.monotonic() + self.hold
        with self._cond:
            while len(self.log) <= position and time.monotonic() < deadline and self.tokens:
                self._cond.wait(deadline - time.monotonic())
            # Each bot gets the messages sent to it (an update that names no bot, e.g. a
            # malformed one, goes to every bot).
            msgs = copy.deepcopy([m for m in self.log[position:]
                                  if not isinstance(m, dict) or m.get("to_user_id") in (None, bot)])
            for msg in msgs:
                if isinstance(msg, dict) and "message_id" in msg:
                    key = str(msg["message_id"])
                    self.deliveries[key] = self.deliveries.get(key, 0) + 1
                if isinstance(msg, dict) and isinstance(msg.get("context_token"), str):
                    self.context_tokens[str(msg.get("from_user_id"))] = msg["context_token"]
            new = base64.urlsafe_b64encode(json.dumps({"p": len(self.log), "b": bot,
                                                       "n": secrets.token_hex(3)}).encode())
        return 200, {"ret": 0, "msgs": msgs, "get_updates_buf": new.decode(),
                     "longpolling_timeout_ms": int(self.hold * 1000)}, {}

    def _sendmessage(self, body: dict, token: str) -> tuple[int, dict, dict]:
        msg = body.get("msg")
        problem = self._check_send(msg)
        if problem:
            self.errors.append("sendmessage: " + problem)
            return 200, {"ret": -1, "errmsg": problem}, {}
        with self._cond:
            failure = next((f for f in self.send_failures if f["to"] in (None, msg["to_user_id"])), None)
            if failure is not None:
                self.send_failures.remove(failure)
            if failure is None or failure["taken"]:
                self.sent.append(Sent(msg["to_user_id"], msg["item_list"], msg["context_token"], msg["client_id"],
                                      token))
        if failure is not None and failure["taken"]:
            return 502, b"<html>502 Bad Gateway</html>", {}
        if failure is not None:
            return failure["status"], {"ret": failure["ret"], "errmsg": failure["errmsg"]}, {}
        return 200, {"ret": 0}, {}

    def _check_send(self, msg: Any) -> str:
        if not isinstance(msg, dict):
            return "no msg"
        if msg.get("message_type") != 2 or msg.get("message_state") != 2:
            return "message_type and message_state must be 2"
        if not msg.get("client_id"):
            return "no client_id"
        to = msg.get("to_user_id")
        with self._cond:
            expected = self.context_tokens.get(to)
        if expected is None:
            return f"{to!r} never wrote to the bot"
        if msg.get("context_token") != expected:
            return f"context_token {msg.get('context_token')!r} is not the newest one of {to} ({expected!r})"
        items = msg.get("item_list")
        if not isinstance(items, list) or len(items) != 1:
            return "item_list must hold one item"
        item = items[0]
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == 1:
            text = (item.get("text_item") or {}).get("text")
            return "" if isinstance(text, str) and text else "an empty text"
        names = {2: "image_item", 4: "file_item", 5: "video_item"}
        if kind not in names or not isinstance(item.get(names[kind]), dict):
            return f"item type {kind!r} not sendable"
        payload = item[names[kind]]
        media = payload.get("media") or {}
        with self._cond:
            blob = self.cdn.get(media.get("encrypt_query_param"))
        if blob is None:
            return "media not on the CDN"
        try:
            plain = crypto.decrypt(blob, crypto.read_key(str(media.get("aes_key"))))
        except Exception as e:
            return f"media does not decrypt with its aes_key: {e}"
        if media.get("encrypt_type") != 1:
            return "encrypt_type must be 1"
        if kind == 4 and (payload.get("len") != str(len(plain)) or not payload.get("file_name")):
            return "file_item needs file_name and len (the plaintext size, as a string)"
        if kind == 2 and payload.get("mid_size") != len(blob):
            return "image_item.mid_size must be the ciphertext size"
        return ""

    def handle_upload(self, query: dict, data: bytes) -> tuple[int, dict, dict]:
        param = (query.get("encrypted_query_param") or [""])[0]
        filekey = (query.get("filekey") or [""])[0]
        with self._cond:
            request = self.uploads.pop(param, None)
        if request is None or request.get("filekey") != filekey:
            return 400, {}, {"x-error-message": "unknown upload"}
        try:
            plain = crypto.decrypt(data, bytes.fromhex(request["aeskey"]))
        except Exception:
            return 400, {}, {"x-error-message": "does not decrypt"}
        if (len(data) != request.get("filesize") or len(plain) != request.get("rawsize")
                or hashlib.md5(plain).hexdigest() != request.get("rawfilemd5")):
            self.errors.append("upload: sizes or md5 do not match getuploadurl")
            return 400, {}, {"x-error-message": "size mismatch"}
        download = "dl-" + secrets.token_urlsafe(12)
        with self._cond:
            self.cdn[download] = data
        return 200, {}, {"x-encrypted-param": download}


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        # A daemon killed mid-poll leaves a held request nobody reads: not the simulator's fault.
        import sys

        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    simulator: IlinkSimulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002
        pass

    def _reply(self, status: int, body: Any, headers: dict) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(body, bytes) else "text/plain")
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _route(self, method: str) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        sim = self.simulator
        if url.path == "/c2c/upload" and method == "POST":
            return self._reply(*sim.handle_upload(query, raw))
        if url.path == "/c2c/download" and method == "GET":
            with sim._cond:
                blob = sim.cdn.get((query.get("encrypted_query_param") or [""])[0])
                failure = sim.download_failures.pop(0) if sim.download_failures else None
                delay = sim.download_delays.pop(0) if sim.download_delays else 0.0
            if delay:
                time.sleep(delay)
            if failure is not None:
                return self._reply(failure, b"", {})
            if blob is None:
                return self._reply(404, b"", {})
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(blob)))
            self.end_headers()
            self.wfile.write(blob)
            return None
        if API in url.path:
            prefix, endpoint = url.path.split(API, 1)
            body: Any = None
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
            return self._reply(*sim.handle_api(prefix, endpoint, query, body, self.headers))
        return self._reply(404, {"ret": -1, "errmsg": "not found"}, {})

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")
