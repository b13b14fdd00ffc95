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
from typing import Callable

from bridge.context import Context
from bridge.bridge import is_chinese
from channel.dingtalk.api import DingTalkApi, DingTalkApiError
from channel.dingtalk.message import DingTalkMessage
from common.log import logger

CONTENT_KEY = "msgContent"
# flowStatus of dingtalk-stream's AI card templates (AICardStatus).
PROCESSING, INPUTING, FINISHED, FAILED = "1", "2", "3", "5"
ANSWER_KEY = ""  # the card of an answer that was not shown growing
CUT_OFF_ZH = "（回答没有发完：出错中断了，请再问一次）"
CUT_OFF_EN = "(The answer was cut off by an error; please ask again.)"


@dataclass
class Card:
    out_track_id: str
    cmsg: DingTalkMessage
    shown: str = ""
    sent: str = ""
    last_update: float = 0.0
    finalized: bool = False  # the streaming finalize went through: never sent again
    lock: threading.Lock = field(default_factory=threading.Lock)


def _key(context: Context) -> tuple[str, str]:
    cmsg = context.get("msg")
    return str(getattr(cmsg, "conversation_id", "") or ""), str(getattr(cmsg, "msg_id", "") or "")


class CardPump:
    def __init__(self, api: DingTalkApi, template_id: str, interval: float,
                 on_shown: Callable[[Context], None] | None = None) -> None:
        """`on_shown(context)`: a card for the context is in the chat (called once it is created,
        before its text grows), so a crash from then on must not answer the message again."""
        self.api = api
        self.on_shown = on_shown
        self.template_id = template_id
        self.interval = max(0.0, float(interval))
        # (conversation id, message id) -> stream_id -> card, oldest first. Kept by the message, not
        # by id(context): a second context made for the same message (the voice path) finds its
        # card, and an address Python reuses never hands a card to another chat's answer.
        self._open: dict[tuple, dict[str, Card]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ growing
    def show(self, context: Context, stream_id: str, text: str) -> None:
        cmsg = context.get("msg")
        with self._lock:
            card = self._open.setdefault(_key(context), {}).get(stream_id)
        if card is None:
            card = self.create(cmsg)
            with self._lock:
                self._open.setdefault(_key(context), {})[stream_id] = card
            if self.on_shown is not None:
                self.on_shown(context)
        with card.lock:
            if card.finalized:
                return
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
        if final:
            card.finalized = True
        card.sent = text
        card.last_update = time.monotonic()

    # ------------------------------------------------------------------ finishing
    def oldest(self, context: Context) -> tuple[str, Card] | None:
        with self._lock:
            cards = self._open.get(_key(context)) or {}
            return next(iter(cards.items()), None)

    def finish(self, context: Context | None, stream_id: str | None, card: Card, text: str,
               status: str = FINISHED) -> None:
        """Finish `card` with the whole `text`; it is then closed. Safe to call again after a
        failure: a card finalized already is not finalized twice (DingTalk refuses that)."""
        with card.lock:
            if not card.finalized:
                self._stream(card, text, final=True)
            try:
                # The template's status only changes how the card looks (its spinner): the text
                # is in the card already, so a failure here is logged, not retried.
                self.api.call("/v1.0/card/instances", {
                    "outTrackId": card.out_track_id,
                    "cardData": {"cardParamMap": {"flowStatus": status, CONTENT_KEY: text}},
                }, method="PUT")
            except DingTalkApiError as e:
                logger.warning(f"[dingtalk] AI card {card.out_track_id}: its status was not set ({e}); its text is final")
        if context is not None and stream_id is not None:
            with self._lock:
                (self._open.get(_key(context)) or {}).pop(stream_id, None)

    def answer(self, context: Context, cmsg: DingTalkMessage, text: str) -> None:
        """A card for an answer that was not shown growing: created, then finished. Once it is
        created it is kept with the context, so a retry finishes that card instead of making
        another (or sending the text another way)."""
        card = self.create(cmsg)
        with self._lock:
            self._open.setdefault(_key(context), {})[ANSWER_KEY] = card
        self.finish(context, ANSWER_KEY, card, text)

    def close(self, context: Context) -> None:
        """The context is done: a card that got no finished text (its final reply could not be
        sent) is finished with what it shows and a note that the answer was cut off, in the
        failed status: it must not look complete."""
        with self._lock:
            cards = self._open.pop(_key(context), {})
        for card in cards.values():
            if card.finalized:
                continue
            note = CUT_OFF_ZH if is_chinese(str(context.content)) else CUT_OFF_EN
            try:
                self.finish(None, None, card, (card.shown.rstrip() + "\n\n" + note).strip(), status=FAILED)
            except Exception as e:
                logger.warning(f"[dingtalk] AI card {card.out_track_id} could not be finished: {e}")
