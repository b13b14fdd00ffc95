"""A fake wechaty puppet service on 127.0.0.1 (reference/personal-wechat.md §3.4).

It serves the gRPC service `wechaty.Puppet` over plaintext HTTP/2 with grpclib's own server and
the message classes of the `wechaty-grpc` package (no code generation), as a real puppet service
run with WECHATY_PUPPET_SERVICE_NO_TLS_INSECURE_SERVER does:

* every call must carry the token as the HTTP/2 :authority, else UNAUTHENTICATED;
* Start shows a login QR (a SCAN event) until a test logs the account in (`login()`);
* each Event stream that opens gets the current state first (LOGIN, or the last SCAN), as the
  real service does for a client that reconnects; with `redeliver` it also gets the last
  MESSAGE events again (what some puppets do after a reconnect);
* Ding answers with a DONG event; MessagePayload / ContactPayload / RoomPayload /
  RoomMemberPayload / MessageImage / MessageFile answer from what the test pushed;
  MessageSendText / MessageSendFile are recorded.

Tests push messages and raw events, fail the next sends, drop or freeze the event streams.
A discovery service (`hosties_url`) answers `GET /<token>` with this server's address.
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from grpclib.const import Cardinality, Handler, Status
from grpclib.exceptions import GRPCError
from grpclib.server import Handler as StreamHandler, Server
from grpclib.protocol import H2Protocol
import wechaty_grpc.wechaty.puppet as pb

EVENT_HEARTBEAT, EVENT_MESSAGE, EVENT_DONG, EVENT_SCAN, EVENT_LOGIN, EVENT_LOGOUT = 1, 2, 3, 22, 25, 26
TEXT, AUDIO, IMAGE, URL = 6, 2, 5, 14
_END = object()


@dataclass
class Sent:
    kind: str  # "text" or "file"
    conversation_id: str
    text: str = ""
    mentions: list = field(default_factory=list)
    box: dict = field(default_factory=dict)

    @property
    def data(self) -> bytes:
        return base64.b64decode(self.box.get("base64", ""))


class _AuthHandler(StreamHandler):
    """Refuses a call whose :authority is not the token (as the puppet service does)."""

    fake: "FakePuppet"

    def accept(self, stream, headers, release_stream) -> None:
        authority = dict(headers).get(":authority", "")
        self.fake.authorities.append(authority)
        if authority != self.fake.token:
            async def refuse() -> None:
                try:
                    # A trailers-only gRPC answer (grpclib's own _abort leaves out the content-type).
                    await stream.send_headers([(":status", "200"), ("content-type", "application/grpc+proto"),
                                               ("grpc-status", str(Status.UNAUTHENTICATED.value)),
                                               ("grpc-message", "invalid token")], end_stream=True)
                finally:
                    release_stream()

            self._tasks[stream] = self.loop.create_task(refuse())
            return
        super().accept(stream, headers, release_stream)


class _Server(Server):
    def __init__(self, fake: "FakePuppet", handlers) -> None:
        super().__init__(handlers)
        self._fake = fake

    def _protocol_factory(self):
        self.__gc_step__()
        handler = _AuthHandler(self._mapping, self._codec, self._status_details_codec, self.__dispatch__)
        handler.fake = self._fake
        self._handlers.add(handler)
        return H2Protocol(handler, self._config, self._h2_config)


class FakePuppet:
    def __init__(self, token: str = "puppet_test_token", *, self_id: str = "wxid_bot", self_name: str = "Bot",
                 redeliver: int = 0, echo_sends: bool = True, send_ids: bool = True,
                 echo_first: bool = False) -> None:
        self.token = token
        self.self_id, self.self_name = self_id, self_name
        self.redeliver = redeliver
        # A real service reports what the account sent as MESSAGE events too (with the id it
        # answered the send with).
        self.echo_sends = echo_sends
        # wechaty-puppet lets a send resolve to no id (send_ids=False); some services report the
        # echo before they answer the send (echo_first).
        self.send_ids = send_ids
        self.echo_first = echo_first
        self.logged_in = False
        self.qrcode = "https://login.weixin.qq.com/l/fake-qr-1"
        self.contacts: dict[str, str] = {self_id: self_name}
        self.rooms: dict[str, str] = {}
        self.payloads: dict[str, dict] = {}
        self.media: dict[str, str] = {}
        self.sent: list[Sent] = []
        self.calls: list[str] = []
        self.authorities: list[str] = []
        self.streams_opened = 0
        self.fail_sends: list[str] = []  # grpc messages of the next sends that fail
        self.frozen = False
        self._history: list[str] = []
        self._queues: list[asyncio.Queue] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-puppet", daemon=True)
        self._server: _Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> "FakePuppet":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        self._start_hosties()
        return self

    async def _start(self) -> None:
        self._server = _Server(self, [self])
        await self._server.start("127.0.0.1", 0)
        self.port = self._server._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        async def close() -> None:
            self.drop_streams()
            self._server.close()
            await self._server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            if self._http is not None:
                self._http.shutdown()
                self._http.server_close()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start_hosties(self) -> None:
        fake = self

        class Hosties(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                token = self.path.rstrip("/").rsplit("/", 1)[-1]
                fake.calls.append(f"hosties:{token}")
                found = {"ip": "127.0.0.1", "port": fake.port} if token == fake.token else {"ip": "0.0.0.0", "port": 0}
                body = json.dumps(found).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Hosties)
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    @property
    def hosties_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/v0/hosties"

    # ------------------------------------------------------------------ gRPC
    def __mapping__(self) -> dict:
        def unary(name, request, reply):
            return Handler(getattr(self, "_" + name), Cardinality.UNARY_UNARY, request, reply)

        mapping = {f"/wechaty.Puppet/{name}": unary(name, getattr(pb, name + "Request"), getattr(pb, name + "Response"))
                   for name in ("Start", "Stop", "Ding", "MessagePayload", "ContactPayload", "RoomPayload",
                                "RoomMemberPayload", "MessageImage", "MessageFile", "MessageSendText",
                                "MessageSendFile", "ContactSelfName")}
        mapping["/wechaty.Puppet/ContactSelfQRCode"] = unary("ContactSelfQRCode", pb.ContactSelfQrCodeRequest,
                                                             pb.ContactSelfQrCodeResponse)
        mapping["/wechaty.Puppet/Event"] = Handler(self._Event, Cardinality.UNARY_STREAM, pb.EventRequest,
                                                   pb.EventResponse)
        return mapping

    async def _Start(self, stream) -> None:
        await stream.recv_message()
        self.calls.append("Start")
        await stream.send_message(pb.StartResponse())
        if not self.logged_in:
            self.emit(EVENT_SCAN, {"status": 2, "qrcode": self.qrcode})

    async def _Stop(self, stream) -> None:
        await stream.recv_message()
        self.calls.append("Stop")
        await stream.send_message(pb.StopResponse())

    async def _Ding(self, stream) -> None:
        request = await stream.recv_message()
        self.calls.append("Ding")
        await stream.send_message(pb.DingResponse())
        if not self.frozen:
            self.emit(EVENT_DONG, {"data": request.data})

    async def _ContactSelfName(self, stream) -> None:
        await stream.recv_message()
        await stream.send_message(pb.ContactSelfNameResponse())

    async def _ContactSelfQRCode(self, stream) -> None:
        await stream.recv_message()
        await stream.send_message(pb.ContactSelfQrCodeResponse(qrcode=self.qrcode))

    async def _Event(self, stream) -> None:
        await stream.recv_message()
        self.calls.append("Event")
        self.frozen = False
        queue: asyncio.Queue = asyncio.Queue()
        self._queues.append(queue)
        self.streams_opened += 1
        if self.logged_in:
            queue.put_nowait((EVENT_LOGIN, json.dumps({"contactId": self.self_id})))
        elif self.qrcode:
            queue.put_nowait((EVENT_SCAN, json.dumps({"status": 2, "qrcode": self.qrcode})))
        if self.redeliver and self.streams_opened > 1:
            for message_id in self._history[-self.redeliver:]:
                queue.put_nowait((EVENT_MESSAGE, json.dumps({"messageId": message_id})))
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if self.frozen:
                    continue
                kind, payload = item
                await stream.send_message(pb.EventResponse(type=kind, payload=payload))
        finally:
            if queue in self._queues:
                self._queues.remove(queue)

    async def _MessagePayload(self, stream) -> None:
        request = await stream.recv_message()
        self.calls.append(f"MessagePayload:{request.id}")
        payload = self.payloads.get(request.id)
        if payload is None:
            raise GRPCError(Status.NOT_FOUND, f"no message {request.id}")
        await stream.send_message(pb.MessagePayloadResponse(**payload))

    async def _ContactPayload(self, stream) -> None:
        request = await stream.recv_message()
        if request.id not in self.contacts:
            raise GRPCError(Status.NOT_FOUND, f"no contact {request.id}")
        await stream.send_message(pb.ContactPayloadResponse(id=request.id, name=self.contacts[request.id]))

    async def _RoomPayload(self, stream) -> None:
        request = await stream.recv_message()
        if request.id not in self.rooms:
            raise GRPCError(Status.NOT_FOUND, f"no room {request.id}")
        await stream.send_message(pb.RoomPayloadResponse(id=request.id, topic=self.rooms[request.id]))

    async def _RoomMemberPayload(self, stream) -> None:
        request = await stream.recv_message()
        await stream.send_message(pb.RoomMemberPayloadResponse(
            id=request.member_id, name=self.contacts.get(request.member_id, "")))

    async def _media(self, stream, name: str) -> None:
        request = await stream.recv_message()
        self.calls.append(f"{name}:{request.id}")
        box = self.media.get(request.id)
        if box is None:
            raise GRPCError(Status.NOT_FOUND, f"no file for message {request.id}")
        reply = pb.MessageImageResponse(filebox=box) if name == "MessageImage" else pb.MessageFileResponse(filebox=box)
        await stream.send_message(reply)

    async def _MessageImage(self, stream) -> None:
        await self._media(stream, "MessageImage")

    async def _MessageFile(self, stream) -> None:
        await self._media(stream, "MessageFile")

    def _failing(self) -> str | None:
        with self._lock:
            return self.fail_sends.pop(0) if self.fail_sends else None

    async def _MessageSendText(self, stream) -> None:
        request = await stream.recv_message()
        failure = self._failing()
        if failure:
            raise GRPCError(Status.UNAVAILABLE, failure)
        self.sent.append(Sent("text", request.conversation_id, request.text, list(request.mentonal_ids)))
        message_id = f"sent-{next(self._ids)}"
        await self._answer_send(stream, pb.MessageSendTextResponse, message_id, TEXT, request.conversation_id,
                                request.text)

    async def _MessageSendFile(self, stream) -> None:
        request = await stream.recv_message()
        failure = self._failing()
        if failure:
            raise GRPCError(Status.UNAVAILABLE, failure)
        self.sent.append(Sent("file", request.conversation_id, box=json.loads(request.filebox)))
        message_id = f"sent-{next(self._ids)}"
        await self._answer_send(stream, pb.MessageSendFileResponse, message_id, IMAGE, request.conversation_id, "")

    async def _answer_send(self, stream, response, message_id: str, kind: int, conversation_id: str,
                           text: str) -> None:
        if self.echo_first:
            self._echo(message_id, kind, conversation_id, text)
            await asyncio.sleep(0.3)  # the echo reaches the client before the answer does
        await stream.send_message(response(id=message_id if self.send_ids else ""))
        if not self.echo_first:
            self._echo(message_id, kind, conversation_id, text)

    def _echo(self, message_id: str, kind: int, conversation_id: str, text: str) -> None:
        if not self.echo_sends:
            return
        room = conversation_id if conversation_id in self.rooms else ""
        self.payloads[message_id] = {"id": message_id, "type": kind, "text": text, "timestamp": int(time.time()),
                                     "from_id": self.self_id, "room_id": room, "to_id": "" if room else conversation_id,
                                     "mention_ids": []}
        self.emit(EVENT_MESSAGE, {"messageId": message_id})

    # ------------------------------------------------------------------ what tests do
    def emit(self, kind: int, payload) -> None:
        """Send an event on every open stream (payload: an object, or the raw string)."""
        text = payload if isinstance(payload, str) else json.dumps(payload)

        def put() -> None:
            for queue in list(self._queues):
                queue.put_nowait((kind, text))

        self._loop.call_soon_threadsafe(put)

    def wait_streams(self, count: int = 1, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.streams_opened >= count and self._queues:
                return
            time.sleep(0.02)
        raise AssertionError(f"no event stream #{count} opened within {timeout} s (calls: {self.calls[-20:]})")

    def scan(self) -> None:
        self.emit(EVENT_SCAN, {"status": 3, "qrcode": ""})

    def login(self) -> None:
        self.logged_in = True
        self.qrcode = ""
        self.emit(EVENT_LOGIN, {"contactId": self.self_id})

    def logout(self) -> None:
        self.logged_in = False
        self.emit(EVENT_LOGOUT, {"contactId": self.self_id})

    def push_payload(self, payload: dict, message_id: str | None = None) -> str:
        """Store a MessagePayload as given and send its MESSAGE event."""
        message_id = message_id or payload.get("id") or f"msg-{next(self._ids)}"
        self.payloads[message_id] = payload
        return self.deliver(message_id)

    def deliver(self, message_id: str) -> str:
        """The MESSAGE event of `message_id` (sent again when called again)."""
        if message_id not in self._history:
            self._history.append(message_id)
        self.emit(EVENT_MESSAGE, {"messageId": message_id})
        return message_id

    def _message(self, kind: int, talker: str, text: str = "", room: str = "", mentions=(), name: str = "") -> str:
        self.contacts.setdefault(talker, name or talker.replace("wxid_", "").title())
        message_id = f"msg-{next(self._ids)}"
        payload = {"id": message_id, "type": kind, "text": text, "timestamp": int(time.time()), "from_id": talker,
                   "room_id": room, "to_id": "" if room else self.self_id, "mention_ids": list(mentions)}
        return self.push_payload(payload, message_id)

    def push_text(self, talker: str, text: str, **kwargs) -> str:
        return self._message(TEXT, talker, text, **kwargs)

    def add_room(self, room_id: str, topic: str) -> None:
        self.rooms[room_id] = topic

    def push_image(self, talker: str, data: bytes, **kwargs) -> str:
        message_id = f"msg-{next(self._ids)}"
        self.media[message_id] = json.dumps({"boxType": 1, "name": "photo.jpg", "metadata": {},
                                             "base64": base64.b64encode(data).decode()})
        self.contacts.setdefault(talker, talker)
        payload = {"id": message_id, "type": IMAGE, "text": "", "timestamp": int(time.time()), "from_id": talker,
                   "room_id": kwargs.get("room", ""), "to_id": self.self_id, "mention_ids": []}
        return self.push_payload(payload, message_id)

    def push_voice(self, talker: str, data: bytes) -> str:
        message_id = f"msg-{next(self._ids)}"
        self.media[message_id] = json.dumps({"boxType": 1, "name": "voice.sil", "metadata": {"voiceLength": 2000},
                                             "base64": base64.b64encode(data).decode()})
        self.contacts.setdefault(talker, talker)
        payload = {"id": message_id, "type": AUDIO, "text": "", "timestamp": int(time.time()), "from_id": talker,
                   "room_id": "", "to_id": self.self_id, "mention_ids": []}
        return self.push_payload(payload, message_id)

    def fail_next_sends(self, *messages: str) -> None:
        with self._lock:
            self.fail_sends.extend(messages)

    def drop_streams(self) -> None:
        """End every open event stream (the connection stays; the client must open a new stream)."""
        def end() -> None:
            for queue in list(self._queues):
                queue.put_nowait(_END)

        self._loop.call_soon_threadsafe(end)

    def freeze(self) -> None:
        """Open streams stop sending anything, and Ding gets no DONG, until a new stream opens."""
        self.frozen = True

    # ------------------------------------------------------------------ reading what was sent
    def sent_to(self, conversation_id: str) -> list[Sent]:
        return [s for s in self.sent if s.conversation_id == conversation_id]

    def texts_to(self, conversation_id: str) -> list[str]:
        return [s.text for s in self.sent_to(conversation_id) if s.kind == "text"]

    def wait_sent(self, conversation_id: str, count: int = 1, timeout: float = 20.0) -> list[Sent]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sent = self.sent_to(conversation_id)
            if len(sent) >= count:
                return sent
            time.sleep(0.03)
        raise AssertionError(f"{count} send(s) to {conversation_id} never came; sent: {self.sent_to(conversation_id)}")
