"""The DingTalk Stream connection (reference/channel-protocols.md §5.2): ask the gateway for an
endpoint and a single-use ticket, open the WebSocket, answer each frame with an ack.

Built on dingtalk-stream's DingTalkStreamClient: its frame classes (parsing, acks), its handler
registry and handlers (`raw_process` builds the ack; the ping echo) are used as they are.
Its connection loop (`start` / `start_forever`) is replaced, because the daemon must own it:
* it never ends (no way to stop it short of killing the process), so a daemon could not shut down;
* it retries without a bound on a fixed 3 or 10 s beat, also when the gateway refuses the
  credentials, where retrying cannot help;
* one frame that is not JSON ends the whole connection (json.loads in the reading loop);
* `open_connection` has no timeout and reads its URL from a class attribute fixed at import.
Here: the gateway URL comes from `dingtalk_api_base`; every attempt takes a fresh ticket; the
wait between attempts starts at 1 s and doubles up to `reconnect_max`, with jitter, and starts
again after a connection that worked (stayed up STABLE_AFTER s or brought a frame: one closed at
once does not count); a refused client id / secret ends the attempts at start-up and says why,
while after a start that worked it is retried at `reconnect_max` with an ERROR each time; at most
`max_in_flight` callbacks are taken at once (then the reading waits); a frame that is not JSON is logged and skipped; SYSTEM frames (ping, disconnect) are
answered here (the SDK logs every ping as an unknown topic); a callback's ack goes back on the
socket the callback came in on; websockets' own pings find a dead socket (the SDK's keepalive only
sends them).
"""
from __future__ import annotations

import asyncio
import json
import logging
import platform
import random
import threading
import time
from typing import Callable
from urllib.parse import quote_plus

import requests
from dingtalk_stream import AckMessage, CallbackHandler, CallbackMessage, ChatbotMessage, Credential, DingTalkStreamClient
from dingtalk_stream.frames import Headers, SystemMessage
from dingtalk_stream.version import VERSION_STRING

from common.log import logger

GATEWAY_PATH = "/v1.0/gateway/connections/open"
OPEN_TIMEOUT = 10.0
MAX_FRAME = 4 * 1024 * 1024
BACKOFF_FIRST = 1.0
# A connection counts as working (the waits start again from the first) once it stayed up this
# long or brought a message; one that DingTalk closes at once does not.
STABLE_AFTER = 30.0

# States, as /healthz and the log show them.
CONNECTING, CONNECTED, AUTH_REFUSED, STOPPED = "connecting", "connected", "login refused", "stopped"


class StreamConnection(DingTalkStreamClient):
    def __init__(self, credential: Credential, handler: CallbackHandler, api_base: str, *,
                 reconnect_max: float = 60.0, ping_interval: float = 20.0, max_in_flight: int = 100,
                 on_state: Callable[[str, str], None] | None = None) -> None:
        quiet = logging.getLogger("dingtalk_stream.client")
        super().__init__(credential, logger=quiet)
        self.gateway_url = str(api_base).rstrip("/") + GATEWAY_PATH
        self.register_callback_handler(ChatbotMessage.TOPIC, handler)
        self.reconnect_max = max(0.05, float(reconnect_max))
        self.ping_interval = ping_interval
        self.max_in_flight = max(1, int(max_in_flight))
        self._got_frame = False  # the current connection brought a frame
        self.on_state = on_state
        self.state = CONNECTING
        self.reason = "not connected yet"
        self.connections = 0  # sockets opened so far
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._http = requests.Session()
        self._http.trust_env = False

    # ------------------------------------------------------------------ lifecycle
    def begin(self, wait: float = OPEN_TIMEOUT + 5) -> str:
        """Start connecting in the background; wait up to `wait` s for the first connection.
        Returns the state then: CONNECTED, AUTH_REFUSED, or CONNECTING (still trying)."""
        self.pre_start()
        self._thread = threading.Thread(target=self._run_loop, name="dingtalk-stream", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + wait
        with self._changed:
            while self.state == CONNECTING and self.connections == 0:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self.state

    def stop(self) -> None:
        self._stop.set()
        self._set_state(STOPPED, "stopped")
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._wake)
            except RuntimeError:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _wake(self) -> None:
        stopped = getattr(self, "_stopped_async", None)
        if stopped is not None:
            stopped.set()
        ws = self.websocket
        if ws is not None:
            asyncio.ensure_future(ws.close())

    # ------------------------------------------------------------------ the gateway
    def open_connection(self) -> dict | None:
        """A fresh endpoint and ticket, or None (try again later). Raises PermissionError when
        the gateway refuses the client id / secret."""
        body = {
            "clientId": self.credential.client_id,
            "clientSecret": self.credential.client_secret,
            "subscriptions": [{"type": "CALLBACK", "topic": topic} for topic in self.callback_handler_map],
            "ua": f"dify-on-wechat dingtalk-stream/{VERSION_STRING}",
            "localIp": "",
        }
        headers = {"Accept": "application/json",
                   "User-Agent": f"DingTalkStream/1.0 SDK/{VERSION_STRING} Python/{platform.python_version()}"}
        try:
            r = self._http.post(self.gateway_url, json=body, headers=headers, timeout=(5.0, OPEN_TIMEOUT))
        except requests.RequestException as e:
            self.reason = f"the gateway {self.gateway_url} is not reachable: {type(e).__name__}"
            logger.warning(f"[dingtalk] {self.reason}: {e}")
            return None
        try:
            data = r.json()
        except ValueError:
            data = {}
        if r.status_code in (400, 401, 403) and isinstance(data, dict):
            raise PermissionError(f"the DingTalk gateway refused the connection (HTTP {r.status_code} "
                                  f"{data.get('code', '')} {str(data.get('message', ''))[:200]}): check "
                                  f"dingtalk_client_id and dingtalk_client_secret")
        if r.status_code != 200 or not isinstance(data, dict) or not data.get("endpoint") or not data.get("ticket"):
            self.reason = f"the gateway answered HTTP {r.status_code} without an endpoint and ticket"
            logger.warning(f"[dingtalk] {self.reason}: {r.text[:200]!r}")
            return None
        return data

    # ------------------------------------------------------------------ the loop
    def _run_loop(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except Exception:
            logger.exception("[dingtalk] the Stream connection loop ended by an error")
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def _delays(self):
        wait = min(BACKOFF_FIRST, self.reconnect_max)
        while True:
            yield wait * random.uniform(0.5, 1.0)  # jitter: many daemons do not retry in step
            wait = min(self.reconnect_max, wait * 2)

    async def _main(self) -> None:
        import websockets

        self._stopped_async = asyncio.Event()
        if self._stop.is_set():
            return
        delays = self._delays()
        while not self._stop.is_set():
            refused = False
            try:
                connection = await asyncio.to_thread(self.open_connection)
            except PermissionError as e:
                if self.connections == 0:
                    # At start-up a refusal means wrong settings: start-up stops and says why.
                    logger.error(f"[dingtalk] {e}; not retrying")
                    self._set_state(AUTH_REFUSED, str(e))
                    return
                # After a start that worked (a secret rotated, a passing refusal): a daemon that
                # gave up would run on deaf. Keep trying, slowly, and say so each time.
                self.reason = str(e)
                logger.error(f"[dingtalk] {e}; the daemon receives no messages until DingTalk takes the "
                             f"credentials again, retrying every {self.reconnect_max:g} s")
                connection, refused = None, True
            if connection is not None and not self._stop.is_set():
                uri = f'{connection["endpoint"]}?ticket={quote_plus(str(connection["ticket"]))}'
                worked = False
                opened = 0.0
                self._got_frame = False
                try:
                    async with websockets.connect(uri, open_timeout=OPEN_TIMEOUT, close_timeout=2, max_size=MAX_FRAME,
                                                  ping_interval=self.ping_interval, ping_timeout=self.ping_interval,
                                                  user_agent_header="dify-on-wechat") as ws:
                        self.websocket = ws
                        worked = True
                        opened = time.monotonic()
                        with self._changed:
                            self.connections += 1
                        self._set_state(CONNECTED, f"connection {self.connections} open")
                        logger.info(f"[dingtalk] Stream connection {self.connections} open")
                        await self._read(ws)
                except Exception as e:
                    if not self._stop.is_set():
                        self.reason = f"{type(e).__name__}: {e}"
                        logger.warning(f"[dingtalk] Stream connection {'lost' if worked else 'failed'}: {self.reason}")
                finally:
                    self.websocket = None
                if worked and (self._got_frame or time.monotonic() - opened >= STABLE_AFTER):
                    delays = self._delays()  # it worked: the waits start again from the first
            if self._stop.is_set():
                return
            delay = self.reconnect_max * random.uniform(0.8, 1.0) if refused else next(delays)
            self._set_state(CONNECTING, f"reconnecting in {delay:.1f} s ({self.reason})")
            logger.warning(f"[dingtalk] reconnecting to DingTalk in {delay:.1f} s")
            try:
                await asyncio.wait_for(self._stopped_async.wait(), delay)
            except asyncio.TimeoutError:
                pass

    async def _read(self, ws) -> None:
        tasks: set[asyncio.Task] = set()
        # At most max_in_flight callbacks taken at once: past that the reading waits, and the
        # rest stays in the socket (DingTalk's side) rather than piling up here.
        slots = asyncio.Semaphore(self.max_in_flight)
        async for raw in ws:
            try:
                frame = json.loads(raw)
                if not isinstance(frame, dict):
                    raise ValueError("not an object")
            except ValueError:
                logger.warning(f"[dingtalk] a frame that is not a JSON object skipped: {str(raw)[:200]!r}")
                continue
            if frame.get("type") == SystemMessage.TYPE:
                if await self._system(ws, frame):
                    return
                self._got_frame = True
                continue
            self._got_frame = True
            await slots.acquire()
            task = asyncio.create_task(self._route(ws, frame))
            tasks.add(task)
            task.add_done_callback(lambda t: (tasks.discard(t), slots.release()))
        logger.info(f"[dingtalk] Stream connection closed by DingTalk ({ws.close_code} {ws.close_reason or ''})".strip())

    async def _system(self, ws, frame: dict) -> bool:
        """Answer a SYSTEM frame; True when DingTalk asked to disconnect."""
        try:
            message = SystemMessage.from_dict(frame)
        except (ValueError, TypeError, AttributeError) as e:
            logger.warning(f"[dingtalk] a malformed SYSTEM frame skipped: {e}")
            return False
        if message.headers.topic == SystemMessage.TOPIC_DISCONNECT:
            logger.info(f"[dingtalk] DingTalk asked to reconnect: {str(message.data)[:200]}")
            await ws.close()
            return True
        ack = await self.system_handler.raw_process(message)  # ping: echoes its data
        await ws.send(json.dumps(ack.to_dict()))
        return False

    async def _route(self, ws, frame: dict) -> None:
        """A CALLBACK frame to its handler (the SDK's), the ack back on the socket it came in on
        (the SDK's route_message answers on whichever socket is current by then)."""
        headers = frame.get("headers") if isinstance(frame.get("headers"), dict) else {}
        try:
            if frame.get("type") != CallbackMessage.TYPE:
                raise ValueError(f"unexpected frame type {str(frame.get('type'))[:40]!r}")
            message = CallbackMessage.from_dict(frame)
            handler = self.callback_handler_map.get(message.headers.topic)
            if handler is None:
                logger.warning(f"[dingtalk] a callback of topic {str(message.headers.topic)[:100]!r} ignored")
                ack = _ack(headers.get("messageId"), AckMessage.STATUS_NOT_IMPLEMENT, "unknown topic")
            else:
                ack = await handler.raw_process(message)
        except Exception as e:
            # A frame that cannot be read (its data is no JSON, a field of the wrong type):
            # refused with 400, and the connection goes on.
            logger.warning(f"[dingtalk] a {str(frame.get('type'))[:40]} frame refused: {type(e).__name__}: {e}: "
                           f"{str(frame)[:200]}")
            ack = _ack(headers.get("messageId"), AckMessage.STATUS_BAD_REQUEST, "bad request")
        if ack is None or not ack.headers.message_id:
            return
        try:
            await ws.send(json.dumps(ack.to_dict()))
        except Exception as e:
            logger.info(f"[dingtalk] the ack of {ack.headers.message_id} was not sent (the connection closed): {e}")

    # ------------------------------------------------------------------ state
    def _set_state(self, state: str, reason: str) -> None:
        with self._changed:
            if self.state in (AUTH_REFUSED, STOPPED) and state != STOPPED or self.state == STOPPED:
                return  # final states stay
            self.state, self.reason = state, reason
            self._changed.notify_all()
        if self.on_state is not None:
            try:
                self.on_state(state, reason)
            except Exception:
                logger.exception("[dingtalk] state listener failed")


def _ack(message_id, code: int, text: str) -> AckMessage | None:
    if not message_id:
        return None
    ack = AckMessage()
    ack.code = code
    ack.headers.message_id = message_id
    ack.headers.content_type = Headers.CONTENT_TYPE_APPLICATION_JSON
    ack.message = text
    ack.data = {"response": text}
    return ack
