"""Answers to a customer through `kf/send_msg` (reference/channel-protocols.md §3.1 item 4).

* Text goes in pieces of at most 2048 UTF-8 bytes, in order (the original computed the pieces
  and then sent the whole text, which the platform cuts).
* Pictures, voice clips, videos and files are uploaded with `media/upload` and sent by media_id.
* The platform lets an account answer a customer only within 48 h of the customer's last
  message and with at most 5 messages per customer message. Past either limit a retry cannot
  help, so those refusals are logged in one clear line and the rest of the answer is dropped
  (BudgetRefused), instead of the pipeline's retries.
"""
from __future__ import annotations

from common.log import logger
from common.utils import split_string_by_utf8_length
from common.wechat_api import WechatApi, WechatApiError

TEXT_MAX_BYTES = 2048
# errcode -> what it means for the customer's conversation.
BUDGET_ERRORS = {
    95001: "the platform allows 5 messages per customer message and they are used up",
    95002: "the customer's last message is more than 48 hours old",
    95024: "the customer has sent no message in the last 48 hours",
}
ACCOUNT_ERRORS = {
    95000: "the open_kfid is not valid",
    95004: "the open_kfid does not exist (is the customer-service account deleted, or in another corp?)",
}


class BudgetRefused(Exception):
    """The platform will not take more messages to this customer now; retrying cannot help."""


class KfSender:
    def __init__(self, api: WechatApi, label: str = "wechatcom_service") -> None:
        self.api = api
        self.label = label

    def send_text(self, external_userid: str, open_kfid: str, text: str) -> int:
        """Send `text` in 2048-byte pieces; returns how many pieces went. BudgetRefused when the
        platform refuses one for a 48 h / 5-message reason (the pieces after it are dropped);
        another error after the first piece is logged and the rest dropped (a retry of the whole
        text would repeat what the customer already has)."""
        pieces = split_string_by_utf8_length(text, TEXT_MAX_BYTES)
        if len(pieces) > 1:
            logger.info(f"[{self.label}] answer of {len(text.encode('utf-8'))} bytes sent in {len(pieces)} pieces")
        for n, piece in enumerate(pieces):
            try:
                self._send(external_userid, open_kfid, "text", {"content": piece})
            except BudgetRefused:
                if n:
                    logger.warning(f"[{self.label}] {len(pieces) - n} of {len(pieces)} pieces of the answer to "
                                   f"{external_userid} were not delivered")
                raise
            except WechatApiError as e:
                if not n:
                    raise
                logger.error(f"[{self.label}] piece {n + 1} of {len(pieces)} to {external_userid} failed ({e}); "
                             f"the rest of the answer is dropped")
                return n
        return len(pieces)

    def send_media(self, external_userid: str, open_kfid: str, kind: str, name: str, data: bytes) -> None:
        """Upload `data` as `kind` (image, voice, video, file) and send it."""
        answer = self.api.call("media/upload", params={"type": kind}, files={"media": (name, data)})
        media_id = answer.get("media_id")
        if not isinstance(media_id, str) or not media_id:
            raise WechatApiError(None, f"no media_id in the answer {str(answer)[:200]}", "media/upload")
        self._send(external_userid, open_kfid, kind, {"media_id": media_id})

    def _send(self, external_userid: str, open_kfid: str, msgtype: str, payload: dict) -> None:
        body = {"touser": external_userid, "open_kfid": open_kfid, "msgtype": msgtype, msgtype: payload}
        try:
            self.api.call("kf/send_msg", body)
        except WechatApiError as e:
            if e.errcode in BUDGET_ERRORS:
                logger.warning(f"[{self.label}] a {msgtype} to customer {external_userid} was refused ({e.errcode}): "
                               f"{BUDGET_ERRORS[e.errcode]}; it is dropped, no retry")
                raise BudgetRefused(f"{e.errcode}: {BUDGET_ERRORS[e.errcode]}") from None
            if e.errcode in ACCOUNT_ERRORS:
                logger.error(f"[{self.label}] kf/send_msg refused ({e.errcode}): {ACCOUNT_ERRORS[e.errcode]} "
                             f"({open_kfid})")
            raise
