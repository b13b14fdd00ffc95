"""The Stream WebSocket side of the DingTalk simulator (reference/channel-protocols.md §5.2, §5.7):
accepts `/connect?ticket=` with a valid single-use ticket, pushes frames, collects acks by
messageId, checks ping echoes, and drops or disconnects sockets on command."""
from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional
from urllib.parse import parse_qs, urlsplit

from websockets.sync.server import serve

from .payloads import system_frame

if TYPE_CHECKING:
    from .server import DingTalkSimulator


@dataclass
class Connection:
    number: int
    client_id: str
    ticket: str
    connection_id: str
    ws: object = None
    opened_at: float = field(default_factory=time.monotonic)
    closed_at: Optional[float] = None
    received: list = field(default_factory=list)  # every frame the client sent (parsed, or the raw text)

    @property
    def open(self) -> bool:
        return self.closed_at is None


class StreamServer:
    def __init__(self, sim: "DingTalkSimulator") -> None:
        self.sim = sim
        self.connections: list[Connection] = []
        self.refused_handshakes = 0
        self._server = None
        self._thread: Optional[threading.Thread] = None
        self.port = 0

    def start(self) -> None:
        self._server = serve(self._serve, "127.0.0.1", 0, process_request=self._handshake, ping_interval=None)
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="dingtalk-sim-ws", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        for conn in list(self.connections):
            self.close(conn, abrupt=True)
        if self._server is not None:
            self._server.shutdown()

    # ------------------------------------------------------------------ handshake and reading
    def _handshake(self, connection, request):
        sim = self.sim
        ticket = (parse_qs(urlsplit(request.path).query).get("ticket") or [""])[0]
        with sim.lock:
            grant = sim.tickets.get(ticket)
            ok = (grant is not None and not grant["used"] and grant["expires"] > time.monotonic()
                  and not sim.refuse_connections)
            if grant is not None:
                grant["used"] = True  # single use, even when refused for another reason
            if not ok:
                self.refused_handshakes += 1
        if not ok:
            return connection.respond(401 if not sim.refuse_connections else 503, "invalid or used ticket\n")
        return None

    def _serve(self, ws) -> None:
        sim = self.sim
        ticket = (parse_qs(urlsplit(ws.request.path).query).get("ticket") or [""])[0]
        with sim.lock:
            conn = Connection(len(self.connections) + 1, sim.tickets[ticket]["client_id"], ticket,
                              uuid.uuid4().hex, ws)
            self.connections.append(conn)
            sim.changed.notify_all()
            at_once = conn.client_id in sim.close_at_once
        if at_once:
            self.close(conn, abrupt=False)
        try:
            for raw in ws:
                self._on_frame(conn, raw)
        except Exception:
            pass
        finally:
            with sim.lock:
                conn.closed_at = time.monotonic()
                sim.changed.notify_all()

    def _on_frame(self, conn: Connection, raw) -> None:
        sim = self.sim
        try:
            frame = json.loads(raw)
        except ValueError:
            frame = raw
        with sim.lock:
            conn.received.append(frame)
            if isinstance(frame, dict) and "code" in frame:
                message_id = (frame.get("headers") or {}).get("messageId")
                sim.acks.setdefault(message_id, []).append({**frame, "connection": conn.number})
                ping = sim.pings.get(message_id)
                if ping is not None:
                    try:
                        ping["echo"] = json.loads(frame.get("data") or "{}").get("opaque")
                    except ValueError:
                        ping["echo"] = None
            sim.changed.notify_all()

    # ------------------------------------------------------------------ commands
    def live(self, client_id: str) -> Optional[Connection]:
        for conn in reversed(self.connections):
            if conn.client_id == client_id and conn.open:
                return conn
        return None

    def send(self, conn: Connection, frame) -> None:
        conn.ws.send(frame if isinstance(frame, str) else json.dumps(frame, ensure_ascii=False))

    def ping(self, conn: Connection) -> str:
        opaque = uuid.uuid4().hex
        frame = system_frame("ping", {"opaque": opaque}, conn.connection_id)
        with self.sim.lock:
            self.sim.pings[frame["headers"]["messageId"]] = {"opaque": opaque, "echo": None}
        self.send(conn, frame)
        return frame["headers"]["messageId"]

    def disconnect(self, conn: Connection, grace: float) -> None:
        """The server's `disconnect` notice, then the socket closed after `grace` seconds."""
        self.send(conn, system_frame("disconnect", {"reason": "server maintenance"}, conn.connection_id))
        threading.Timer(grace, lambda: self.close(conn, abrupt=False)).start()

    def close(self, conn: Connection, abrupt: bool = True) -> None:
        try:
            if abrupt:
                conn.ws.socket.shutdown(socket.SHUT_RDWR)
                conn.ws.socket.close()
            else:
                conn.ws.close()
        except OSError:
            pass
