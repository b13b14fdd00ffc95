"""AI cards (`dingtalk_card_enabled`): an answer shown in one card that grows while Dify writes it.

A card is created and delivered to the conversation (`/v1.0/card/instances/createAndDeliver`),
its content variable updated with the whole text so far (`PUT /v1.0/card/streaming`, at most
once every `dingtalk_card_interval` seconds: DingTalk throttles card updates), and finished with
the complete text (`isFinalize`) and the template's finished status. The request bodies follow
the ones dingtalk-stream's AICardReplier sends; the calls go through DingTalkApi (timeouts, a
failure raised instead of logged and dropped).
"""
from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field

from bridge.context import Context
from channel.dingtalk.api import DingTalkApi
from channel.dingtalk.message import DingTalkMessage
from common.log import logger

CONTENT_KEY = "msgContent"
# flowStatus of dingtalk-stream's AI card templates (AICardStatus).
PROCESSING, INPUTING, FINISHED, FAILED = "1", "2", "3", "5"


@dataclass
class Card:
    out_track_id: str
    cmsg: DingTalkMessage
    shown: str = ""
    sent: str = ""
    last_update: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


class CardPump:
    def __init__(self, api: DingTalkApi, template_id: str, interval: float) -> None:
        self.api = api
        self.template_id = template_id
        self.interval = max(0.0, float(interval))
        self._open: dict[int, dict[str, Card]] = {}  # id(context) -> stream_id -> card, oldest first
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ growing
    def show(self, context: Context, stream_id: str, text: str) -> None:
        cmsg = context.get("msg")
        with self._lock:
            card = self._open.setdefault(id(context), {}).get(stream_id)
        if card is None:
            card = self.create(cmsg)
            with self._lock:
                self._open.setdefault(id(context), {})[stream_id] = card
        with card.lock:
            card.shown = text
            if time.monotonic() - card.last_update < self.interval:
                return  # the next update (or the finish) carries it
            self._stream(card, text, final=False)

    def create(self, cmsg: DingTalkMessage) -> Card:
        card = Card(uuid.uuid4().hex, cmsg)
        body = {
            "cardTemplateId": self.template_id,
            "outTrackId": card.out_track_id,
            "cardData": {"cardParamMap": {"flowStatus": PROCESSING, CONTENT_KEY: ""}},
            "callbackType": "STREAM",
            "imGroupOpenSpaceModel": {"supportForward": True},
            "imRobotOpenSpaceModel": {"supportForward": True},
        }
        robot_code = cmsg.robot_code or self.api.client_id
        if cmsg.is_group:
            body["openSpaceId"] = f"dtv1.card//IM_GROUP.{cmsg.conversation_id}"
            deliver = {"robotCode": robot_code}
            if cmsg.sender_staff_id:
                deliver["atUserIds"] = {cmsg.sender_staff_id: cmsg.actual_user_nickname or cmsg.sender_staff_id}
            body["imGroupOpenDeliverModel"] = deliver
        else:
            body["openSpaceId"] = f"dtv1.card//IM_ROBOT.{cmsg.sender_staff_id}"
            body["imRobotOpenDeliverModel"] = {"spaceType": "IM_ROBOT", "robotCode": robot_code}
        self.api.call("/v1.0/card/instances/createAndDeliver", body)
        logger.debug(f"[dingtalk] AI card {card.out_track_id} delivered for message {cmsg.msg_id}")
        return card

    def _stream(self, card: Card, text: str, final: bool) -> None:
        self.api.call("/v1.0/card/streaming", {
            "outTrackId": card.out_track_id, "guid": uuid.uuid4().hex, "key": CONTENT_KEY, "content": text,
            "isFull": True, "isFinalize": final, "isError": False,
        }, method="PUT")
        card.sent = text
        card.last_update = time.monotonic()

    # ------------------------------------------------------------------ finishing
    def oldest(self, context: Context) -> tuple[str, Card] | None:
        with self._lock:
            cards = self._open.get(id(context)) or {}
            return next(iter(cards.items()), None)

    def finish(self, context: Context, stream_id: str | None, card: Card, text: str) -> None:
        """Finish `card` with the whole `text`; it is then closed."""
        with card.lock:
            self._stream(card, text, final=True)
            self.api.call("/v1.0/card/instances", {
                "outTrackId": card.out_track_id,
                "cardData": {"cardParamMap": {"flowStatus": FINISHED, CONTENT_KEY: text}},
            }, method="PUT")
        if stream_id is not None:
            with self._lock:
                (self._open.get(id(context)) or {}).pop(stream_id, None)

    def answer(self, cmsg: DingTalkMessage, text: str) -> None:
        """A card for an answer that was not shown growing: created and finished at once."""
        card = self.create(cmsg)
        self.finish(None, None, card, text)  # type: ignore[arg-type]

    def close(self, context: Context) -> None:
        """The context is done: a card that got no finished text is finished with what it shows."""
        with self._lock:
            cards = self._open.pop(id(context), {})
        for card in cards.values():
            try:
                self.finish(context, None, card, card.shown)
            except Exception as e:
                logger.warning(f"[dingtalk] AI card {card.out_track_id} could not be finished: {e}")
