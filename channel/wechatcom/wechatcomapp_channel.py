"""Channel `wechatcom_app`: a WeCom self-built app (reference/channel-protocols.md §2).

In: WeCom POSTs AES-encrypted XML to `/wxcomapp` on the shared HTTP server (port
`wechatcomapp_port`). Every request is checked before its content is looked at (common/
wechat_callback.py): signature, clock, corp id, then XML without DTD or entities. A message is
written to the state store's inbox (the pipeline's produce) before WeCom gets its "success"; when
the store cannot take it the answer is a 503, so WeCom delivers it again instead of the message
being lost. Re-deliveries (WeCom retries a slow answer, same MsgId) are recognised by the
pipeline's dedup, which the original lacked on this channel.

Out: through the API (`message/send`), never in the callback's response (as the original):
text with Markdown stripped, in pieces of at most 2048 UTF-8 bytes sent in order; images, files,
videos and voice uploaded with `media/upload` first.
"""
from __future__ import annotations

import io
import os
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from bridge.context import Context
from bridge.reply import Reply, ReplyType
from channel.chat_channel import ChatChannel, Produced
from channel.chat_message import ChatMessage
from channel.wechatcom.wechatcomapp_message import UnsupportedMessage, WechatComAppMessage
from channel.reply_media import read_reply_media, with_extension
from common import fetch
from common.http_server import json_error, shared_server
from common.log import logger
from common.text import safe_data
from common.utils import compress_imgfile, convert_webp_to_png, remove_markdown_symbol, split_string_by_utf8_length
from common.wechat_api import WechatApi, WechatApiError
from common.wechat_callback import CallbackRefused, Envelope, log_refusal, open_wecom_callback
from config import ConfigError, conf

PATH = "/wxcomapp"
MAX_BODY = 64 * 1024  # a callback is a few hundred bytes of XML; anything near this is hostile
TEXT_MAX_BYTES = 2048
IMAGE_MAX_BYTES = 10 * 1024 * 1024
MEDIA_MAX_BYTES = 20 * 1024 * 1024
# Reply type -> the media type of media/upload and message/send.
_MEDIA_KINDS = {ReplyType.IMAGE: "image", ReplyType.IMAGE_URL: "image", ReplyType.FILE: "file",
                ReplyType.VIDEO: "video", ReplyType.VIDEO_URL: "video", ReplyType.VOICE: "voice"}
# errcode -> what the operator should know (the reply is lost; the log says why).
_SEND_ERRORS = {
    45009: "the API rate or daily quota is exhausted",
    81013: "the user is not in the app's visible range (or does not exist)",
    60020: "this server's IP is not in the app's trusted IP list",
    40056: "wechatcomapp_agent_id is not the app's AgentId",
    44004: "the text was empty",
}


# The extension an upload gets when neither its name nor its first bytes give one.
_DEFAULT_EXTENSION = {"image": ".png", "voice": ".amr", "video": ".mp4", "file": ".bin"}


def _setting(key: str) -> str:
    return str(conf().get(key) or "").strip()


class WechatComAppChannel(ChatChannel):
    NOT_SUPPORT_REPLYTYPE: list = []
    PRIVATE_NEEDS_PREFIX = False  # a chat with an app is a direct conversation (as the original)
    NOT_STORED_IN_RESPONSE = True  # the 503 makes WeCom deliver it again; no refusal text per delivery

    def __init__(self) -> None:
        super().__init__()
        self.corp_id = _setting("wechatcom_corp_id")
        self.agent_id = _setting("wechatcomapp_agent_id")
        self.envelope: Envelope | None = None
        self.api: WechatApi | None = None
        self.server = None

    # ================================================================== lifecycle
    def startup(self) -> None:
        needed = ("wechatcom_corp_id", "wechatcomapp_token", "wechatcomapp_aes_key", "wechatcomapp_secret",
                  "wechatcomapp_agent_id")
        missing = [key for key in needed if not _setting(key)]
        if missing:
            raise ConfigError(f"{', '.join(missing)} must be set for channel_type wechatcom_app (from the app's page "
                              f"and its API receive settings in the WeCom admin console)")
        try:
            self.envelope = Envelope(_setting("wechatcomapp_token"), _setting("wechatcomapp_aes_key"), self.corp_id)
        except ValueError as e:
            raise ConfigError(f"wechatcomapp_aes_key is not a WeCom EncodingAESKey ({e})") from None
        if not self.agent_id.isdigit():
            raise ConfigError(f"wechatcomapp_agent_id must be the app's AgentId, a number (got {self.agent_id!r})")
        self.api = WechatApi(_setting("wechatcom_api_base") or "https://qyapi.weixin.qq.com",
                             ("gettoken", {"corpid": self.corp_id, "corpsecret": _setting("wechatcomapp_secret")}),
                             label="wechatcom")
        port = int(conf().get("wechatcomapp_port") or 9898)
        server = shared_server("0.0.0.0", port, max_body=MAX_BODY, channel=self.channel_type or "wechatcom_app")
        server.add_route(PATH, self._verify, ["GET"])
        server.add_route(PATH, self._post, ["POST"])
        server.add_route(PATH + "/", self._verify, ["GET"])
        server.add_route(PATH + "/", self._post, ["POST"])
        server.set_queue_probe(self.dispatcher.pending)
        server.watch_store(conf().state_store)
        # Before new callbacks are taken: messages accepted before the last stop come first.
        self.resume_inbox()
        self.server = server
        server.start()
        logger.info(f"[wechatcom] listening on http://0.0.0.0:{port}{PATH} (set this URL in the app's API receive settings)")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(float(conf().get("shutdown_timeout")))
        super().stop()

    # ================================================================== callbacks in
    async def _verify(self, request: Request) -> Response:
        q = request.query_params
        try:
            plain = self.envelope.open(q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", ""),
                                       q.get("echostr", ""))
        except CallbackRefused as refusal:
            log_refusal("wechatcom", refusal, "(URL verification)")
            return json_error(refusal.status, refusal.reason)
        return PlainTextResponse(plain)

    async def _post(self, request: Request) -> Response:
        q = request.query_params
        body = await request.body()
        try:
            fields = open_wecom_callback(self.envelope, self.corp_id, q, body)
        except CallbackRefused as refusal:
            log_refusal("wechatcom", refusal)
            return json_error(refusal.status, refusal.reason)
        result = await run_in_threadpool(self._take, fields)
        if result in (Produced.NOT_STORED, Produced.STOPPING):
            # Not in the store: a non-success answer makes WeCom deliver it again.
            return PlainTextResponse("not accepted, send again", status_code=503)
        return PlainTextResponse("success")

    def _take(self, fields: dict) -> Produced:
        fields = safe_data(fields)
        kind = str(fields.get("MsgType") or "").lower()
        if kind == "event":
            logger.debug(f"[wechatcom] event {fields.get('Event')} from {fields.get('FromUserName')} ignored")
            return Produced.IGNORED
        try:
            cmsg = WechatComAppMessage(fields, self._download)
        except UnsupportedMessage as e:
            logger.info(f"[wechatcom] message {fields.get('MsgId')} skipped: {e}")
            return Produced.IGNORED
        context = self._compose_context(cmsg.ctype, cmsg.content, isgroup=False, msg=cmsg)
        return self.produce(context)

    def _download(self, media_id: str, max_bytes: int) -> bytes:
        data, _kind = self.api.download("media/get", {"media_id": media_id}, max_bytes)
        return data

    # ================================================================== the inbox
    def message_to_record(self, cmsg: ChatMessage) -> dict:
        if isinstance(cmsg, WechatComAppMessage):
            return {"wechatcom_app": cmsg.fields}
        return super().message_to_record(cmsg)

    def record_to_message(self, record: dict) -> ChatMessage:
        if "wechatcom_app" in record:
            return WechatComAppMessage(dict(record["wechatcom_app"]), self._download)
        return super().record_to_message(record)

    # ================================================================== replies out
    def send(self, reply: Reply, context: Context) -> None:
        receiver = context.get("receiver")
        if not receiver:
            raise ValueError("no receiver for the reply")
        if reply.type in (ReplyType.TEXT, ReplyType.INFO, ReplyType.ERROR, ReplyType.TEXT_):
            self._send_text(receiver, str(reply.content), reply)
        elif reply.type in _MEDIA_KINDS:
            self._send_media(receiver, reply)
        else:
            raise NotImplementedError(f"a WeCom app cannot send {reply.type}")

    def _send_text(self, receiver: str, text: str, reply: Reply | None = None) -> None:
        pieces = split_string_by_utf8_length(remove_markdown_symbol(text), TEXT_MAX_BYTES)
        if len(pieces) > 1:
            logger.info(f"[wechatcom] a text of {len(text)} characters goes to {receiver} in {len(pieces)} pieces")
        self.send_pieces(reply or Reply(ReplyType.TEXT, text), pieces,
                         lambda piece: self._message_send(receiver, {"msgtype": "text", "text": {"content": piece}}))

    def _send_media(self, receiver: str, reply: Reply) -> None:
        kind = _MEDIA_KINDS[reply.type]
        try:
            data, name = self._media_bytes(reply)
        except (fetch.FetchError, OSError) as e:
            logger.warning(f"[wechatcom] {reply.type} not read ({e}); sending the link instead")
            self._send_text(receiver, str(reply.content))
            return
        if kind == "voice" and not data.startswith(b"#!AMR"):
            kind = "file"  # WeCom voice messages are AMR only, and there is no AMR encoder here
            name = name if "." in name else name + ".mp3"
        if kind == "image" and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
            data, name = convert_webp_to_png(io.BytesIO(data)).getvalue(), os.path.splitext(name)[0] + ".png"
        if kind == "image" and len(data) >= IMAGE_MAX_BYTES:
            data = compress_imgfile(io.BytesIO(data), IMAGE_MAX_BYTES - 1).getvalue()
        name = with_extension(name, data, _DEFAULT_EXTENSION[kind])
        try:
            uploaded = self._call("media/upload", params={"type": kind}, files={"media": (name, data)})
        except WechatApiError as e:
            logger.error(f"[wechatcom] {kind} for {receiver} not uploaded: {e}")
            raise
        self._message_send(receiver, {"msgtype": kind, kind: {"media_id": uploaded["media_id"]}})

    @staticmethod
    def _media_bytes(reply: Reply) -> tuple[bytes, str]:
        return read_reply_media(reply, MEDIA_MAX_BYTES)

    def _message_send(self, receiver: str, message: dict) -> None:
        payload = {"touser": receiver, "agentid": int(self.agent_id), "safe": 0, **message}
        answer = self._call("message/send", payload)
        if answer.get("invaliduser"):
            logger.warning(f"[wechatcom] WeCom did not deliver to {answer['invaliduser']}: not a member the app can "
                           f"reach (check the app's visible range)")

    def _call(self, path: str, payload: dict | None = None, **kwargs: Any) -> dict:
        try:
            return self.api.call(path, payload, **kwargs)
        except WechatApiError as e:
            hint = _SEND_ERRORS.get(e.errcode or 0)
            logger.error(f"[wechatcom] {e}{': ' + hint if hint else ''}")
            raise
