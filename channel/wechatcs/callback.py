"""The callback URL of WeCom customer service, `/wxcomapp` on the shared HTTP server (reference/
channel-protocols.md §2.2-§2.3, §3.1; the same port and path as the original).

* GET (URL verification): signature over echostr, then its plaintext answered bare.
* POST: the signature first (403, nothing else is looked at), the clock, the decryption (the
  trailing receive id must be our corp id: 403), then the inner XML, parsed without DTDs or
  entities (400). A `kf_msg_or_event` is acknowledged at once and pulled on the puller's thread:
  the platform cuts a callback at 5 s, and the callback itself carries no content to lose.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from common.http_server import HttpServer, shared_server
from common.log import logger
from common.wechat_callback import CallbackRefused, Envelope, log_refusal, open_wecom_callback
from config import conf

if TYPE_CHECKING:
    from channel.wechatcs.wechatcs_channel import WechatComServiceChannel

PATH = "/wxcomapp"
MAX_BODY = 64 * 1024  # a callback is a few hundred bytes; anything near this is not WeCom
LABEL = "wechatcom_service"


class KfCallback:
    def __init__(self, channel: "WechatComServiceChannel", envelope: Envelope, corp_id: str) -> None:
        self.channel = channel
        self.envelope = envelope
        self.corp_id = corp_id
        self.server: HttpServer | None = None

    def start(self) -> None:
        port = int(conf().get("wechatcomapp_port") or 9898)
        server = shared_server("0.0.0.0", port, max_body=MAX_BODY, channel=LABEL)
        server.add_route(PATH, self._verify, ["GET"])
        server.add_route(PATH, self._post, ["POST"])
        server.set_queue_probe(self.channel.dispatcher.pending)
        server.watch_store(conf().state_store)
        self.server = server
        server.start()
        logger.info(f"[{LABEL}] listening on http://0.0.0.0:{port}{PATH}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(float(conf().get("shutdown_timeout")))

    # ------------------------------------------------------------------ HTTP
    async def _verify(self, request: Request) -> Response:
        q = request.query_params
        try:
            plain = self.envelope.open(q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", ""),
                                       q.get("echostr", ""))
        except CallbackRefused as refusal:
            log_refusal(LABEL, refusal, "(URL verification)")
            return PlainTextResponse("refused", status_code=refusal.status)
        return PlainTextResponse(plain)

    async def _post(self, request: Request) -> Response:
        body = await request.body()
        try:
            fields = self.open(dict(request.query_params), body)
        except CallbackRefused as refusal:
            log_refusal(LABEL, refusal)
            return PlainTextResponse("refused", status_code=refusal.status)
        if fields.get("MsgType") == "event" and fields.get("Event") == "kf_msg_or_event":
            open_kfid = str(fields.get("OpenKfId") or "")
            if not open_kfid:
                return PlainTextResponse("no OpenKfId", status_code=400)
            try:
                # Written down before the acknowledgement: a crash before the pull still pulls it after a restart.
                await run_in_threadpool(self.channel.puller.remember, open_kfid)
            except Exception as e:
                logger.error(f"[{LABEL}] the state store cannot keep the account {open_kfid}: {e}")
                return PlainTextResponse("not stored", status_code=503)  # WeCom delivers it again
            self.channel.puller.notify(open_kfid, str(fields.get("Token") or "") or None)
        else:
            logger.debug(f"[{LABEL}] callback {fields.get('MsgType')}/{fields.get('Event')} ignored")
        return PlainTextResponse("success")

    def open(self, query: dict, body: bytes) -> dict:
        """The inner message fields of a genuine callback; CallbackRefused otherwise."""
        return open_wecom_callback(self.envelope, self.corp_id, query, body)
