"""The long connection's WebSocket side (reference/channel-protocols.md §4.6): frames are lark's
protobuf `pbbp2.Frame` (its generated definitions are used here; the protocol around them is
written from the reference). Data frames carry an event envelope as JSON with the headers
`type=event`, `message_id`, `trace_id`, `sum=1`, `seq=0`; the client answers each with the same
frame whose payload is `{"code": 200, ...}`. Control frames: ping -> pong.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import threading
from concurrent.futures import Future
from typing import Any

from lark_oapi.ws.pb.pbbp2_pb2 import Frame
from websockets.asyncio.server import serve

CONTROL, DATA = 0, 1


def _header(frame: Frame, key: str) -> str:
    for header in frame.headers:
        if header.key == key:
            return header.value
    return ""


class LongConnectionServer:
    def __init__(self, simulator: Any) -> None:
        self.simulator = simulator
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.connections: list[Any] = []
        self.accepted = 0  # connections taken so far
        self.connected = threading.Event()
        self.pings = 0
        self._answers: dict[str, Future] = {}
        self._server = None

    def start(self) -> "LongConnectionServer":
        ready = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)

            async def main() -> None:
                self._server = await serve(self._serve, "127.0.0.1", 0)
                self.port = self._server.sockets[0].getsockname()[1]
                ready.set()
                await self._server.serve_forever()

            try:
                self.loop.run_until_complete(main())
            except (asyncio.CancelledError, RuntimeError):
                pass

        threading.Thread(target=run, name="feishu-sim-ws", daemon=True).start()
        ready.wait(5)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self.loop.call_soon_threadsafe(self._server.close)

    async def _serve(self, websocket) -> None:
        self.connections.append(websocket)
        self.accepted += 1
        self.connected.set()
        try:
            async for raw in websocket:
                frame = Frame()
                frame.ParseFromString(raw)
                if frame.method == CONTROL and _header(frame, "type") == "ping":
                    self.pings += 1
                    frame.headers[0].value = "pong"
                    await websocket.send(frame.SerializeToString())
                elif frame.method == DATA:
                    future = self._answers.pop(_header(frame, "message_id"), None)
                    if future is not None and not future.done():
                        future.set_result(json.loads(frame.payload or b"{}"))
        except Exception:
            pass
        finally:
            self.connections.remove(websocket)
            if not self.connections:
                self.connected.clear()

    def drop(self) -> None:
        """Close every connection, as a Feishu gateway restart would: the client must come back."""
        for websocket in list(self.connections):
            asyncio.run_coroutine_threadsafe(websocket.close(), self.loop).result(5)
        self.connected.clear()

    def push(self, payload: dict, timeout: float = 5.0) -> dict:
        if not self.connected.wait(timeout):
            raise TimeoutError("no client on the long connection")
        frame = Frame()
        frame.SeqID, frame.LogID, frame.service, frame.method = 1, 1, 7, DATA
        message_id = secrets.token_hex(8)
        for key, value in (("type", "event"), ("message_id", message_id), ("trace_id", secrets.token_hex(8)),
                           ("sum", "1"), ("seq", "0")):
            header = frame.headers.add()
            header.key, header.value = key, value
        frame.payload = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        answer: Future = Future()
        self._answers[message_id] = answer
        websocket = self.connections[-1]
        asyncio.run_coroutine_threadsafe(websocket.send(frame.SerializeToString()), self.loop).result(timeout)
        return answer.result(timeout)
