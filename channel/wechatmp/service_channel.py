"""Channel `wechatmp_service`: the same callback, answered at once ("success"), with the answers
sent through the customer-service API (reference §1.7; verified service accounts only, and only
within 48 h of the user's last message)."""
from __future__ import annotations

from bridge.context import Context
from bridge.reply import Reply, ReplyType
from channel.wechatmp import api as mp_api
from channel.wechatmp.pending import TEXT_MAX_BYTES
from channel.wechatmp.wechatmp_channel import WechatMPChannel
from common.log import logger
from common.utils import split_string_by_utf8_length

_TEXT_TYPES = (ReplyType.TEXT, ReplyType.TEXT_, ReplyType.INFO, ReplyType.ERROR)


class WechatMPServiceChannel(WechatMPChannel):

    def _collect(self, fields: dict[str, str], user: str, attempt: int, arrived: float) -> str | None:
        return None  # the answer goes through the API; the callback only says "received"

    def _busy_with(self, user: str) -> bool:
        return False  # every message is a question: nothing waits to be fetched

    def send(self, reply: Reply, context: Context) -> None:
        user = str(context.get("receiver"))
        try:
            if reply.type in _TEXT_TYPES:
                pieces = split_string_by_utf8_length(str(reply.content), TEXT_MAX_BYTES)
                self.send_pieces(reply, pieces, lambda piece: self._custom_send(user, "text", {"content": piece}))
                logger.info(f"[wechatmp_service] text sent to {user} in {len(pieces)} message(s)")
                return
            for kind, media_id, permanent in self._upload_reply(reply, permanent=False):
                self._custom_send(user, kind, {"media_id": media_id})
                logger.info(f"[wechatmp_service] {kind} sent to {user}")
                if permanent:  # material was only needed for this message (the library is limited)
                    self.materials.shown(media_id)
        except Exception as e:
            line = mp_api.explain(e)
            if line is None:
                raise  # the pipeline retries and logs
            # No retry helps: one line with the cause and the remedy, and the answer is given up.
            logger.error(f"[wechatmp_service] answer to {user} not sent: {line}")

    def _custom_send(self, user: str, kind: str, body: dict) -> None:
        self.api.call("message/custom/send", {"touser": user, "msgtype": kind, kind: body})
