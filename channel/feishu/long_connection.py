"""Feishu events over lark-oapi's long connection (`feishu_event_mode: websocket`),
reference/channel-protocols.md §4.6: no public URL is needed.

lark-oapi's `ws.Client` does the work: it asks `{feishu_api_base}/callback/ws/endpoint` for a
WebSocket URL, connects, pings, reconnects, and hands each event frame to the dispatcher
registered here, then answers the frame (an error answer when the handler raised, which makes
Feishu push the event again). The handler runs the pipeline's durable accept, so a message is
in the state store before its frame is acknowledged.

The client keeps its event loop in a module global and blocks in `start()` for ever: it runs on
a thread of its own with a loop of its own, and stopping ends that loop.
"""
from __future__ import annotations

import asyncio
import logging
import threading

from channel.chat_channel import Produced
from common.log import logger

MESSAGE_EVENT = "im.message.receive_v1"


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


class LongConnection:
    def __init__(self, channel, app_id: str, app_secret: str, domain: str) -> None:
        self.channel = channel
        self.app_id = app_id
        self.app_secret = app_secret
        self.domain = domain
        self.loop: asyncio.AbstractEventLoop | None = None
        self.client = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="feishu-ws", daemon=True)
        self.thread.start()
        logger.info(f"[feishu] connecting to {self.domain} over the long connection")

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
        client = ws_client.Client(self.app_id, self.app_secret, event_handler=handler, domain=self.domain,
                                  log_level=lark_oapi.LogLevel.WARNING)
        self.client = client
        try:
            client.start()
        except (RuntimeError, asyncio.CancelledError):
            pass  # stop() ended it: the daemon is stopping
        except Exception as e:
            logger.error(f"[feishu] the long connection ended: {e}")

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
        loop = self.loop
        if loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        if self.thread is not None:
            self.thread.join(5)

    async def _shutdown(self) -> None:
        """On the client's loop: its reader and pinger cancelled, the socket closed, and last the
        wait in start(), which ends the thread; nothing reconnects or logs a closed loop on the way out."""
        current = asyncio.current_task()
        others = [task for task in asyncio.all_tasks() if task is not current]
        waiting = [task for task in others if getattr(task.get_coro(), "__name__", "") == "_select"]
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
