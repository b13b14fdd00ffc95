"""Callback mode of the WeCom AI bot (reference/wecom-aibot.md §3): WeCom POSTs AES-encrypted
JSON to `/wecombot` on the shared HTTP server, and the answers travel back in the responses.

* GET (URL verification): the signature covers `echostr`; the answer is its plaintext, bare.
* POST: `{"encrypt": ...}` with msg_signature/timestamp/nonce in the query. The signature is
  checked before anything is decrypted; a forged or malformed request is refused (403 / 400)
  and never reaches the pipeline.
* A message is taken through the pipeline's durable path (in the state store) before the
  response, which opens a stream: `{"msgtype":"stream","stream":{"id","finish":false}}`. WeCom
  then POSTs refresh callbacks (`msgtype: "stream"`) with that id, each answered with the whole
  answer so far, until one says `finish: true`, or for 6 minutes after the user's message.
* A stream's id is made from the message id, so a re-delivered message (WeCom retries a slow
  response) and the refreshes after a restart find the same answer.
* A finished answer is also kept in the state store until WeCom stops asking, so a crash
  between the answer and WeCom's next refresh does not lose it (the message is marked answered
  and will not be asked again).
* What cannot go in the stream goes to the message's response_url (usable once, markdown): the
  part of an answer past 20480 bytes, an answer finished after the refreshes stopped, or a message
  sent after the answer ended (a plugin's scheduled one).
"""
from __future__ import annotations

import base64
import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from bridge.bridge import is_chinese
from bridge.context import Context
from bridge.reply import Reply, ReplyType
from channel.chat_channel import Produced
from channel.wecom_bot.crypto import CallbackCrypto, CryptoError
from channel.wecom_bot.message import WecomBotMessage
from channel.wecom_bot.streams import STREAM_SAFE_BYTES, cut_at, utf8_len
from common.http_server import HttpServer, json_error, shared_server
from common.json_limits import loads_limited
from common.log import logger
from config import ConfigError, conf, subscribe_msg

if TYPE_CHECKING:
    from channel.wecom_bot.wecom_bot_channel import WecomBotChannel

PATH = "/wecombot"
MAX_BODY = 256 * 1024
REFRESH_WINDOW = 360.0  # WeCom stops asking 6 minutes after the user's message
LATE_AFTER = REFRESH_WINDOW - 30  # an answer finished later than this also goes to response_url
MAX_IMAGES = 10
IMAGE_MAX_BYTES = 10 * 1024 * 1024
KEEP_FINISHED = 600.0
FINISHED_NAMESPACE = "wecom_bot:finished"  # stream id -> the finished answer, for refreshes after a restart
KEPT_IMAGES_MAX = 4 * 1024 * 1024  # base64 of the images kept with it (more: the text alone is kept)
# What a callback stream cannot carry (only JPG/PNG images fit, in msg_item): named, never dropped.
_UNSENDABLE = {ReplyType.FILE: ("文件", "file"), ReplyType.VOICE: ("语音", "voice"),
               ReplyType.VIDEO: ("视频", "video"), ReplyType.IMAGE: ("图片", "picture")}


def stream_id_of(msgid: str) -> str:
    return "s" + hashlib.sha1(msgid.encode("utf-8")).hexdigest()[:20]


@dataclass
class CallbackAnswer:
    stream_id: str
    created: float = field(default_factory=time.monotonic)
    done_text: str = ""  # finished parts (a TEXT reply ends the part being shown)
    partial: str = ""  # the part being written
    images: list = field(default_factory=list)  # (base64, md5) of images for the last frame
    finished: bool = False
    finished_at: float = 0.0
    response_url: str | None = None
    overflow_sent: bool = False

    def text(self) -> str:
        return self.done_text + self.partial


class CallbackServer:
    def __init__(self, channel: "WecomBotChannel") -> None:
        self.channel = channel
        token, key = str(conf().get("wecom_bot_token") or ""), str(conf().get("wecom_bot_aes_key") or "")
        missing = [k for k, v in (("wecom_bot_token", token), ("wecom_bot_aes_key", key)) if not v]
        if missing:
            raise ConfigError(f"{' and '.join(missing)} must be set for wecom_bot_mode callback (the Token and "
                              f"EncodingAESKey of the AI bot's API settings)")
        try:
            self.crypto = CallbackCrypto(token, key)
        except CryptoError as e:
            raise ConfigError(f"wecom_bot_aes_key is not a WeCom EncodingAESKey ({e}); it has 43 characters") from None
        self._answers: dict[str, CallbackAnswer] = {}
        self._lock = threading.Lock()
        self.server: HttpServer | None = None

    def start(self) -> None:
        host = str(conf().get("wecom_bot_host") or "0.0.0.0")
        port = int(conf().get("wecom_bot_port") or 9892)
        server = shared_server(host, port, max_body=MAX_BODY, channel="wecom_bot")
        server.add_route(PATH, self._verify, ["GET"])
        server.add_route(PATH, self._post, ["POST"])
        server.set_queue_probe(self.channel.dispatcher.pending)
        server.watch_store(conf().state_store)
        self.server = server
        server.start()
        logger.info(f"[wecom_bot] callback mode: listening on http://{host}:{port}{PATH}")

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop(float(conf().get("shutdown_timeout")))

    # ------------------------------------------------------------------ HTTP
    async def _verify(self, request: Request) -> Response:
        q = request.query_params
        echostr = q.get("echostr", "")
        try:
            self.crypto.check(q.get("msg_signature", ""), q.get("timestamp", ""), q.get("nonce", ""), echostr)
            plain = self.crypto.open(echostr)
        except CryptoError as e:
            logger.warning(f"[wecom_bot] URL verification refused: {e}")
            return json_error(403, "signature check failed")
        return PlainTextResponse(plain)

    async def _post(self, request: Request) -> Response:
        q = request.query_params
        try:
            envelope = loads_limited(await request.body())
        except ValueError:
            return json_error(400, "the body is not JSON")
        encrypt = envelope.get("encrypt") if isinstance(envelope, dict) else None
        if not isinstance(encrypt, str) or not encrypt:
            return json_error(400, "no encrypt field")
        nonce, timestamp = q.get("nonce", ""), q.get("timestamp", "")
        try:
            self.crypto.check(q.get("msg_signature", ""), timestamp, nonce, encrypt)
            body = loads_limited(self.crypto.open(encrypt))
        except CryptoError as e:
            logger.warning(f"[wecom_bot] callback refused: {e}")
            return json_error(403, "signature check failed")
        except ValueError:
            return json_error(400, "the message is not JSON")
        if not isinstance(body, dict):
            return json_error(400, "the message is not a JSON object")
        if body.get("msgtype") == "stream" and not _refreshed_id(body):
            # A stream reply needs the id; echoing an empty or made-up one would be an invalid answer.
            return json_error(400, "a stream refresh without a stream id")
        reply = await run_in_threadpool(self._answer, body)
        if reply is None:
            return Response(b"", status_code=200)
        return JSONResponse(self.crypto.seal(reply, nonce))

    def _answer(self, body: dict) -> dict | None:
        """The plaintext reply to one callback (None: an empty response)."""
        kind = body.get("msgtype")
        if kind == "stream":
            return self._snapshot(_refreshed_id(body))
        if kind == "event":
            event = body.get("event") if isinstance(body.get("event"), dict) else {}
            if event.get("eventtype") == "enter_chat" and subscribe_msg():
                return {"msgtype": "text", "text": {"content": subscribe_msg()}}
            self.channel._on_event(body, "")
            return None
        msgid = str(body.get("msgid") or "")
        if not msgid:
            return None
        stream_id = stream_id_of(msgid)
        with self._lock:
            known = stream_id in self._answers
            answer = self._answers.setdefault(stream_id, CallbackAnswer(stream_id))
            if isinstance(body.get("response_url"), str):
                answer.response_url = body["response_url"]
        if known:  # WeCom sent it again (our response was slow): the same stream
            return self._snapshot(stream_id)
        results = self.channel._handle_callback("aibot_msg_callback", body, "")
        accepted = Produced.ACCEPTED in results and self.channel.expects_answer(body)
        refused = any(r in (Produced.BUSY, Produced.NOT_STORED, Produced.STOPPING) for r in results)
        with self._lock:
            if refused and not accepted:
                answer.finished = True  # the refusal (sent by the pipeline) is the whole answer
            elif not accepted:
                # Ignored by the rules, a duplicate, or a picture kept for the next question.
                if not answer.text():
                    self._answers.pop(stream_id, None)
                    return None
        return self._snapshot(stream_id)

    def _snapshot(self, stream_id: str) -> dict:
        with self._lock:
            self._forget_old()
            answer = self._answers.get(stream_id) or self._kept_answer(stream_id)
            if answer is None:
                # Not known (yet): a restart, before the kept message is answered again.
                return {"msgtype": "stream", "stream": {"id": stream_id, "finish": False, "content": ""}}
            text = answer.text()
            finished = answer.finished
            overflow = ""
            if utf8_len(text) > STREAM_SAFE_BYTES:
                cut = cut_at(text, STREAM_SAFE_BYTES)
                text, overflow = text[:cut], text[cut:]
                finished = finished or bool(overflow and answer.finished)
            stream: dict[str, Any] = {"id": stream_id, "finish": finished, "content": text}
            if finished and answer.images:
                stream["msg_item"] = [{"msgtype": "image", "image": {"base64": b, "md5": m}}
                                      for b, m in answer.images[:MAX_IMAGES]]
        return {"msgtype": "stream", "stream": stream}

    def _kept_answer(self, stream_id: str) -> CallbackAnswer | None:
        """An answer finished before a restart, from the state store (None when there is none)."""
        store = conf().state_store
        if store is None or not stream_id:
            return None
        try:
            kept = store.get(FINISHED_NAMESPACE, stream_id)
        except Exception as e:
            logger.warning(f"[wecom_bot] could not read a kept answer: {e}")
            return None
        if not isinstance(kept, dict):
            return None
        answer = CallbackAnswer(stream_id, done_text=str(kept.get("text") or ""), finished=True,
                                images=[tuple(i) for i in kept.get("images") or []])
        self._answers[stream_id] = answer
        return answer

    def _keep(self, answer: CallbackAnswer, text: str) -> None:
        """Keep a finished answer in the state store while WeCom may still refresh it."""
        store = conf().state_store
        if store is None:
            return
        images = answer.images if sum(len(b) for b, _ in answer.images) <= KEPT_IMAGES_MAX else []
        try:
            store.put(FINISHED_NAMESPACE, answer.stream_id, {"text": text, "images": [list(i) for i in images]},
                      ttl=REFRESH_WINDOW + KEEP_FINISHED)
        except Exception as e:  # only risks this answer after a crash in the next minutes
            logger.warning(f"[wecom_bot] could not keep answer {answer.stream_id} for refreshes after a restart: {e}")

    def _forget_old(self) -> None:
        now = time.monotonic()
        for key in [k for k, a in self._answers.items() if now - a.created > REFRESH_WINDOW + KEEP_FINISHED]:
            del self._answers[key]

    # ------------------------------------------------------------------ from the pipeline
    def expect(self, cmsg: WecomBotMessage) -> None:
        """A question kept from the last run is going to be answered: its stream exists from
        now on, so WeCom sending the message again (its response was lost in the crash) gets
        that stream, not an empty response that would leave the answer unseen."""
        stream_id = stream_id_of(str(cmsg.body.get("msgid") or ""))
        with self._lock:
            self._answers.setdefault(stream_id, CallbackAnswer(stream_id, response_url=cmsg.response_url))

    def _answer_of(self, context: Context) -> CallbackAnswer | None:
        cmsg = context.get("msg")
        if not isinstance(cmsg, WecomBotMessage) or not cmsg.body.get("msgid"):
            return None
        stream_id = stream_id_of(str(cmsg.body["msgid"]))
        with self._lock:
            answer = self._answers.get(stream_id)
            if answer is None:  # answered again after a restart: WeCom may still be asking
                answer = self._answers[stream_id] = CallbackAnswer(stream_id, response_url=cmsg.response_url)
            return answer

    def show(self, context: Context, _answer_id: str, text: str) -> None:
        answer = self._answer_of(context)
        if answer is not None:
            with self._lock:
                answer.partial = text

    def send(self, reply: Reply, context: Context) -> None:
        answer = self._answer_of(context)
        if answer is None:
            raise NotImplementedError("callback mode can only answer a message (WeCom has no push API for it)")
        # Long after the end the answer is forgotten (and made afresh above): the store knows.
        answered = not answer.finished and self.channel.already_answered(context)
        with self._lock:
            after_end = answer.finished or answered
            url = answer.response_url if after_end else None
            if after_end:
                answer.response_url = None
        if after_end:
            # Sent after the answer ended (a plugin's scheduled message): its stream is finished
            # and WeCom asks no more, so only the message's response_url reaches the chat.
            self._send_after_end(reply, context, url)
            return
        if reply.type in (ReplyType.TEXT, ReplyType.INFO, ReplyType.ERROR, ReplyType.TEXT_):
            with self._lock:
                # A finished text replaces the part that was growing.
                sep = "\n\n" if answer.done_text else ""
                answer.done_text += sep + str(reply.content)
                answer.partial = ""
            return
        if reply.type in (ReplyType.IMAGE, ReplyType.IMAGE_URL):
            try:
                data, _name = self.channel._media_bytes(reply, "image")
            except Exception as e:
                logger.warning(f"[wecom_bot] image not fetched ({e}); sending the link")
                data = b""
            # msg_item takes JPG and PNG of at most 10 MB.
            if data and len(data) <= IMAGE_MAX_BYTES and (data[:3] == b"\xff\xd8\xff" or data[:8] == b"\x89PNG\r\n\x1a\n"):
                with self._lock:
                    answer.images.append((base64.b64encode(data).decode("ascii"), hashlib.md5(data).hexdigest()))
                return
        # Files, voice, video and other images cannot travel in a callback stream: their link, or
        # a note naming them (a bare "[file]" left the user guessing).
        note = str(reply.content) if reply.type in (ReplyType.IMAGE_URL, ReplyType.VIDEO_URL) else _unsendable(reply, context)
        with self._lock:
            answer.done_text += ("\n\n" if answer.done_text else "") + note

    def _send_after_end(self, reply: Reply, context: Context, url: str | None) -> None:
        # Markdown only: files and pictures go as their link or name, as in a stream.
        text_types = (ReplyType.TEXT, ReplyType.INFO, ReplyType.ERROR, ReplyType.TEXT_, ReplyType.IMAGE_URL,
                      ReplyType.VIDEO_URL)
        text = str(reply.content) if reply.type in text_types else f"[{reply.type.name.lower()}]"
        cmsg = context.get("msg")
        if url and cmsg is not None:
            cmsg.response_url = url
            if self.channel._via_response_url(cmsg, text[:STREAM_SAFE_BYTES]):
                return
        raise RuntimeError("callback mode cannot send more to this chat: the answer to the message is finished and "
                           "its response_url is used or missing (WeCom has no push API in callback mode)")

    def handled(self, context: Context) -> None:
        """The message's handling ended: its stream finishes at the next refresh; what the
        stream cannot carry goes to the response_url."""
        answer = self._answer_of(context)
        if answer is None:
            return
        with self._lock:
            if answer.partial and not answer.done_text.endswith(answer.partial):
                answer.done_text += answer.partial  # shown but never finished: kept as it was
            answer.partial = ""
            answer.finished = True
            answer.finished_at = time.monotonic()
            text = answer.done_text
            late = answer.finished_at - answer.created > LATE_AFTER
            overflow = text[cut_at(text, STREAM_SAFE_BYTES):] if utf8_len(text) > STREAM_SAFE_BYTES else ""
            rest = text if late else overflow
            # Kept when not needed now: a message sent later can only go there.
            url = answer.response_url if rest.strip() else None
            if url:
                answer.response_url = None
        if not late:
            self._keep(answer, text)
        logger.info(f"[wecom_bot] answer in stream {answer.stream_id} finished ({len(text)} characters)")
        if rest.strip():
            cmsg = context.get("msg")
            if url and cmsg is not None:
                cmsg.response_url = url
                if not self.channel._via_response_url(cmsg, rest[:STREAM_SAFE_BYTES]):
                    logger.warning(f"[wecom_bot] {len(rest)} characters of an answer could not be delivered")
            else:
                logger.warning(f"[wecom_bot] {len(rest)} characters of an answer could not be delivered (no response_url)")


def _refreshed_id(body: dict) -> str:
    """The stream id a refresh callback asks about ("" when it has none)."""
    stream = body.get("stream")
    sid = stream.get("id") if isinstance(stream, dict) else None
    return sid if isinstance(sid, str) else ""


def _unsendable(reply: Reply, context: Context) -> str:
    """The line shown instead of an attachment callback mode cannot send, in the user's language."""
    zh, en = _UNSENDABLE.get(reply.type, ("附件", "attachment"))
    content = reply.content
    path = content if isinstance(content, (str, os.PathLike)) else getattr(content, "name", "")
    name = os.path.basename(str(path or ""))  # the name only: the folder is this machine's business
    if is_chinese(str(context.content or "")):
        return f"[{zh}{' ' + name if name else ''}：这里无法发送{zh}]"
    return f"[{en}{' ' + name if name else ''}: a {en} cannot be sent in this chat]"
