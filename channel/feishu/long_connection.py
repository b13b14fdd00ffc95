"""Feishu events over lark-oapi's long connection (`feishu_event_mode: websocket`),
reference/channel-protocols.md §4.6: no public URL is needed.

lark-oapi's `ws.Client` does the work: it asks `{feishu_api_base}/callback/ws/endpoint` for a
WebSocket URL, connects, pings, reconnects, and hands each event frame to the dispatcher
registered here, then answers the frame (an error answer when the handler raised, which makes
Feishu push the event again). The handler runs the pipeline's durable accept, so a message is
in the state store before its frame is acknowledged.

The client keeps its event loop in a module global: it runs on a thread of its own with a loop of
its own, and stopping ends that loop. Its `start()` is not used: the daemon opens the connection
itself (_main) and opens it again, with a back-off, whenever lark gives up (it does so silently
after the server's ReconnectCount, or on a ClientException while reconnecting), so a daemon never
runs on without its connection. The event work (the store write, plugins) runs on an intake
thread, not on the client's loop, where it would hold pings and every other frame.
There is no HTTP server in this mode, so no /healthz: the connection state is logged (ERROR when
it is lost, INFO when it is back) and readable from LongConnection.state().
"""
from __future__ import annotations

import asyncio
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from channel.chat_channel import Produced
from common.log import logger

MESSAGE_EVENT = "im.message.receive_v1"
BACKOFF_FIRST = 0.5  # seconds before the daemon opens a connection lark gave up on
BACKOFF_MAX = 60.0


class _ToOurLog(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        logger.log(record.levelno, f"[feishu] lark: {record.getMessage()}")


def _forward_lark_log() -> None:
    """lark-oapi logs to stdout through a handler of its own: its records go to run.log instead."""
    lark_log = logging.getLogger("Lark")
    lark_log.handlers = [_ToOurLog()]
    lark_log.propagate = False


class NotAccepted(Exception):
    """The message could not be stored: the frame is answered with an error, Feishu pushes it again."""


class _Relay:
    """Stands in for the client's event handler: the client calls it synchronously on its loop,
    where the handler's work (store writes, HTTP, plugins) would hold pings and every other
    frame. The work is done first on the intake thread (_Client._handle_data_frame); the
    client's call then only takes its outcome."""

    def __init__(self, handler) -> None:
        self.handler = handler
        self.outcome: tuple[object, BaseException | None] | None = None

    def _do_without_validation(self, payload: bytes):
        outcome, self.outcome = self.outcome, None
        if outcome is None:  # not prepared (a frame type this module does not take off the loop)
            return self.handler._do_without_validation(payload)
        result, error = outcome
        if error is not None:
            raise error
        return result


def _client_class():
    import lark_oapi.ws.client as ws_client

    class _Client(ws_client.Client):
        """lark's client, with the event work off its loop and its death seen.

        lark gives up in two ways without a word to its caller: its reconnect loop raises
        ServerUnreachableException after the server's ReconnectCount, and a ClientException
        (the endpoint refusing, e.g. too many connections) ends its receive task; the process
        then runs on with no connection. Both are reported to `on_lost` here."""

        on_lost = None  # set by LongConnection
        intake = None

        async def _receive_message_loop(self):
            try:
                await super()._receive_message_loop()
            except Exception as e:  # lark gave up reconnecting
                if self.on_lost is not None:
                    self.on_lost(e)

        async def _handle_data_frame(self, frame):
            headers = {h.key: h.value for h in frame.headers}
            relay = self._event_handler
            if headers.get("type") != "event" or not isinstance(relay, _Relay) or self.intake is None:
                return await super()._handle_data_frame(frame)
            payload = frame.payload
            if int(headers.get("sum") or 1) > 1:
                payload = self._combine(headers.get("message_id", ""), int(headers["sum"]), int(headers.get("seq") or 0),
                                        payload)
                if payload is None:
                    return
                for header in frame.headers:
                    if header.key == "sum":
                        header.value = "1"
                frame.payload = payload
            try:
                result = await asyncio.get_running_loop().run_in_executor(
                    self.intake, relay.handler._do_without_validation, payload)
                outcome = (result, None)
            except Exception as e:  # noqa: BLE001 - answered as the client answers a handler's error
                outcome = (None, e)
            # Taken by the relay within this call, before its first await: no other frame in between.
            relay.outcome = outcome
            await super()._handle_data_frame(frame)

    return _Client


class LongConnection:
    def __init__(self, channel, app_id: str, app_secret: str, domain: str) -> None:
        self.channel = channel
        self.app_id = app_id
        self.app_secret = app_secret
        self.domain = domain
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client = None
        self.thread: threading.Thread | None = None
        self.intake = ThreadPoolExecutor(1, thread_name_prefix="feishu-intake")  # one: a chat keeps its order
        self.reason = ""
        self._lost: asyncio.Event | None = None
        self._stopping = False

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="feishu-ws", daemon=True)
        self.thread.start()
        logger.info(f"[feishu] connecting to {self.domain} over the long connection")

    @property
    def connected(self) -> bool:
        return getattr(self.client, "_conn", None) is not None

    def state(self) -> tuple[str, str, bool]:
        """(state, reason, usable), as a connection probe gives it."""
        if self.connected:
            return "connected", "", True
        return ("stopped" if self._stopping else "connecting"), self.reason, False

    def _run(self) -> None:
        import lark_oapi
        import lark_oapi.ws.client as ws_client
        from lark_oapi.event.dispatcher_handler import EventDispatcherHandler

        _forward_lark_log()
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        ws_client.loop = loop  # the client schedules everything on this module global
        self.loop = loop
        handler = EventDispatcherHandler.builder("", "").register_p2_customized_event(MESSAGE_EVENT, self._on_message).build()
        client = _client_class()(self.app_id, self.app_secret, event_handler=_Relay(handler), domain=self.domain,
                                 log_level=lark_oapi.LogLevel.WARNING)
        client.intake = self.intake
        client.on_lost = self._on_lost
        self.client = client
        try:
            loop.run_until_complete(self._main())
        except (RuntimeError, asyncio.CancelledError):
            pass  # stop() ended it: the daemon is stopping
        except Exception as e:  # a bug here: say so, the daemon cannot take messages any more
            logger.error(f"[feishu] the long connection ended: {type(e).__name__}: {e}")

    async def _main(self) -> None:
        """Connect, and connect again whenever lark gives up, with a back-off; pings run throughout."""
        self._lost = asyncio.Event()
        client = self.client
        pinging = False
        backoff = BACKOFF_FIRST
        while not self._stopping:
            try:
                await client._connect()
                if client._conn is None:
                    raise ConnectionError("no connection")
            except Exception as e:  # noqa: BLE001 - every failure is retried
                self.reason = f"{type(e).__name__}: {e}"
                logger.error(f"[feishu] the long connection to {self.domain} could not be opened ({self.reason}); "
                             f"trying again in {backoff:g} s (no Feishu message arrives meanwhile)")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            if backoff != BACKOFF_FIRST:
                logger.info("[feishu] the long connection is open again")
            backoff = BACKOFF_FIRST
            self.reason = ""
            if not pinging:
                asyncio.get_running_loop().create_task(client._ping_loop())
                pinging = True
            self._lost.clear()
            await self._lost.wait()

    def _on_lost(self, error: Exception) -> None:
        """On the client's loop: lark stopped reconnecting."""
        self.reason = f"{type(error).__name__}: {error}"
        if not self._stopping:
            logger.error(f"[feishu] the long connection was lost and lark stopped reconnecting ({self.reason}); "
                         f"the daemon opens it again")
        if self._lost is not None:
            self._lost.set()

    def _on_message(self, data) -> None:
        header = data.header
        envelope = {
            "schema": "2.0",
            "header": {"event_id": getattr(header, "event_id", None), "event_type": MESSAGE_EVENT},
            "event": data.event,
        }
        results = self.channel.take_event(envelope)
        if any(result in (Produced.NOT_STORED, Produced.STOPPING) for result in results):
            raise NotAccepted("the message could not be stored")

    def stop(self) -> None:
        self._stopping = True
        loop = self.loop
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        if self.thread is not None:
            self.thread.join(5)
        self.intake.shutdown(wait=False, cancel_futures=True)

    async def _shutdown(self) -> None:
        """On the client's loop: its reader and pinger cancelled, the socket closed, and last the
        wait in _main, which ends the thread; nothing reconnects or logs a closed loop on the way out."""
        current = asyncio.current_task()
        others = [task for task in asyncio.all_tasks() if task is not current]
        waiting = [task for task in others if getattr(task.get_coro(), "__name__", "") in ("_select", "_main")]
        workers = [task for task in others if task not in waiting]
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        conn = getattr(self.client, "_conn", None)
        if conn is not None:
            try:
                await conn.close()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        for task in waiting:
            task.cancel()
