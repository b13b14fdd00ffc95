"""Feishu events over HTTP: `POST /` on the shared HTTP server (port `feishu_port`, the
original's path), reference/channel-protocols.md §4.2.

Each request is checked before its content is looked at (crypto.open_event); a refused one is
answered 400/401/403 and nothing of it is processed. A URL verification is answered with its
challenge (after the token check: the original echoed any challenge). A message event is written
to the state store's inbox (the pipeline's produce) before the 200: Feishu waits 3 s, and the
work happens after the answer. When the store cannot take it the answer is a 503, so Feishu
pushes it again instead of the message being lost.
"""
from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from channel.chat_channel import Produced
from channel.feishu.crypto import open_event
from common.http_server import json_error, shared_server
from common.log import logger
from common.wechat_callback import CallbackRefused, log_refusal
from config import conf

PATH = "/"
# An event is a few KB; a text message may hold up to 150 KB of text (more once escaped).
MAX_BODY = 512 * 1024


class FeishuWebhook:
    def __init__(self, channel, port: int, verification_token: str, encrypt_key: str = "") -> None:
        self.channel = channel
        self.port = port
        self.token = verification_token
        self.encrypt_key = encrypt_key
        self.server = shared_server("0.0.0.0", port, max_body=MAX_BODY, channel=channel.channel_type or "feishu")
        self.server.add_route(PATH, self._post, ["POST"])
        self.server.set_queue_probe(channel.dispatcher.pending)
        self.server.watch_store(conf().state_store)

    def start(self) -> None:
        self.server.start()
        logger.info(f"[feishu] listening on http://0.0.0.0:{self.server.port}{PATH} (set this URL as the request URL "
                    f"of the app's event subscription{', with its Encrypt Key' if self.encrypt_key else ''})")

    def stop(self) -> None:
        self.server.stop(float(conf().get("shutdown_timeout")))

    async def _post(self, request: Request) -> Response:
        body = await request.body()
        try:
            envelope = open_event(body, request.headers, self.token, self.encrypt_key)
        except CallbackRefused as refusal:
            log_refusal("feishu", refusal)
            return json_error(refusal.status, refusal.reason)
        if envelope.get("type") == "url_verification":
            logger.info("[feishu] URL verification answered")
            return JSONResponse({"challenge": str(envelope.get("challenge") or "")})
        results = await run_in_threadpool(self.channel.take_event, envelope)
        if any(result in (Produced.NOT_STORED, Produced.STOPPING) for result in results):
            # Not in the store: a non-200 makes Feishu push it again.
            return json_error(503, "not accepted, send again")
        return JSONResponse({"msg": "success"})
