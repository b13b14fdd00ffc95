"""The `/wx` callback on the shared HTTP server (reference §1.2–§1.5).

Every request is checked in this order before its content is trusted: the signature (constant
time), the timestamp, then in safe mode the envelope (its own signature and our AppID), and only
then the message XML, parsed without DTDs or entities. A refused request gets 403 or 400 and
never reaches the channel. What the channel answers is sealed again when the request was.
"""
from __future__ import annotations

import hashlib
import time
from typing import TYPE_CHECKING

import anyio
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from common.http_server import HttpServer, shared_server
from common.log import logger
from common.wechat_callback import MAX_CLOCK_SKEW, CallbackRefused, Envelope, check_clock, check_signature, log_refusal, \
    parse_xml
from config import conf

if TYPE_CHECKING:
    from channel.wechatmp.wechatmp_channel import WechatMPChannel

PATH = "/wx"
# A WeChat message is a few KB; a bigger body is refused (413) before it is read into memory.
MAX_BODY = 64 * 1024
# Deliveries that may wait for their answer at the same time. Each waits (up to ~6 s) on a thread
# of its own pool: on starlette's shared pool (40 threads) the 41st user waiting for a slow answer
# queued past WeChat's 5 s cut. Waiting threads sleep on a condition; they cost stack, not CPU.
PASSIVE_WAITS = 256
# Plaintext mode: the body each signed URL came with, kept while its timestamp is accepted.
SIGNED_BODIES = "wechatmp:signed_bodies"


class Callback:
    def __init__(self, channel: "WechatMPChannel", token: str, envelope: Envelope | None) -> None:
        self.channel = channel
        self.token = token
        self.envelope = envelope
        self.server: HttpServer | None = None
        self._waits: anyio.CapacityLimiter | None = None  # made in the event loop, on first use

    def start(self) -> None:
        host, port = "0.0.0.0", int(conf().get("wechatmp_port") or 8080)
        server = shared_server(host, port, max_body=MAX_BODY, channel=self.channel.channel_type or "wechatmp")
        server.add_route(PATH, self._verify, ["GET"])
        server.add_route(PATH, self._post, ["POST"])
        server.set_queue_probe(self.channel.dispatcher.pending)
        server.watch_store(conf().state_store)
        self.server = server
        server.start()
        logger.info(f"[wechatmp] listening on http://{host}:{port}{PATH} "
                    f"({'safe mode' if self.envelope else 'plaintext mode'})")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(float(conf().get("shutdown_timeout")))

    def _check_query(self, request: Request) -> None:
        q = request.query_params
        check_signature(q.get("signature", ""), self.token, q.get("timestamp", ""), q.get("nonce", ""))
        check_clock(q.get("timestamp", ""))

    async def _verify(self, request: Request) -> Response:
        try:
            self._check_query(request)
        except CallbackRefused as e:
            log_refusal("wechatmp", e, "(URL verification)")
            return PlainTextResponse("signature check failed", status_code=e.status)
        # The echo is plain even in safe mode (the platform never encrypts echostr).
        return PlainTextResponse(request.query_params.get("echostr", ""))

    async def _post(self, request: Request) -> Response:
        arrived = time.monotonic()
        try:
            self._check_query(request)
            body = await request.body()
            fields, sealed = self._open(request.query_params, body)
            if not sealed:
                await anyio.to_thread.run_sync(self._check_plain_body, request.query_params, body)
        except CallbackRefused as e:
            log_refusal("wechatmp", e)
            return PlainTextResponse("refused", status_code=e.status)
        if self._waits is None:
            self._waits = anyio.CapacityLimiter(PASSIVE_WAITS)
        reply = await anyio.to_thread.run_sync(self.channel.answer, fields, arrived, limiter=self._waits)
        if reply is None:
            return PlainTextResponse("success")
        if sealed:
            q = request.query_params
            reply = self.envelope.seal(reply, q.get("nonce") or None, q.get("timestamp") or None)
        return Response(reply.encode("utf-8"), media_type="application/xml")

    @staticmethod
    def _check_plain_body(q, body: bytes) -> None:
        """Plaintext mode: WeChat signs the URL, not the body, so a URL seen once (in a proxy's
        log, say) could carry any body until its timestamp expires. Each signed URL is taken
        with one body only; the same body again is WeChat's own re-delivery."""
        store = conf().state_store
        if store is None:
            return
        key = f"{q.get('signature', '')}:{q.get('timestamp', '')}:{q.get('nonce', '')}"
        digest = hashlib.sha256(body).hexdigest()
        try:
            known = store.get(SIGNED_BODIES, key)
            if known is None:
                store.put(SIGNED_BODIES, key, digest, ttl=2 * MAX_CLOCK_SKEW)
        except Exception as e:  # the message is still checked by its signature and clock
            logger.warning(f"[wechatmp] could not check the body of a signed request against earlier ones: {e}")
            return
        if known is not None and known != digest:
            raise CallbackRefused(403, "a signed URL seen before came with another body (a replay with a forged body)")

    def _open(self, q, body: bytes) -> tuple[dict[str, str], bool]:
        """The message's fields, and whether it came sealed (and the reply must be)."""
        outer = parse_xml(body)
        sealed = q.get("encrypt_type", "raw") == "aes"
        if self.envelope is not None and not sealed:
            # The URL's signature does not cover the body: in safe mode only the sealed envelope
            # proves the message is WeChat's (else one seen URL lets anyone post as anyone).
            raise CallbackRefused(403, "a plaintext message while safe mode is on (wechatmp_aes_key is set)")
        if sealed:
            if self.envelope is None:
                raise CallbackRefused(400, "an encrypted message, but wechatmp_aes_key is not set (copy the "
                                           "EncodingAESKey of the account's server settings)")
            encrypt = outer.get("Encrypt")
            if not isinstance(encrypt, str) or not encrypt:
                raise CallbackRefused(400, "safe mode without an Encrypt element")
            outer = parse_xml(self.envelope.open(q.get("msg_signature", ""), q.get("timestamp", ""),
                                                 q.get("nonce", ""), encrypt))
        fields = {k: v.strip() if isinstance(v, str) else "" for k, v in outer.items() if not isinstance(v, dict)}
        if not fields.get("FromUserName") or not fields.get("MsgType"):
            raise CallbackRefused(400, "a message without FromUserName or MsgType")
        return fields, sealed
