"""Plays the WeChat / WeCom callback pusher against the daemon's callback URL (reference §1.2-§1.5,
§1.8, §2.2, §2.3, §2.6, §3.1, §3.3).

    oa = OfficialAccountSender(url, token, appid, aes_key=None | "43 chars", platform=sim)
    ex = oa.text("openid-1", "hello")          # -> Exchange
    ex.answered_on, ex.shown, ex.deliveries[i].outcome

    wc = WeComSender(url, token, aes_key, corp_id, agent_id=1000002, platform=sim)
    wc.kf_customer_says("wkKF", "wmUSER", "hi")  # store for sync_msg + push kf_msg_or_event

Every delivery is cut at `timeout` seconds (5.0 like the platform; tests may shorten it) and the
identical message (same MsgId, same CreateTime) is delivered again, `deliveries` (3) times in
all. Each delivery gets a fresh timestamp and nonce, so fresh signatures and ciphertext: the
daemon must deduplicate on MsgId, not on anything of the transport.

What the user sees (`Exchange.shown`): the passive reply of the first answered delivery; nothing
for an empty body or "success"; for OA, "该公众号暂时无法提供服务，请稍后再试" when the answer is not
a valid reply (bad XML, wrong addressee, bad signature, plaintext in safe mode, HTTP error) or when
every delivery was cut. WeCom shows nothing in those cases (the reference is silent; the problem is
still listed in `Delivery.problems`).

With `platform=` (a WeChatPlatformSimulator), each message opens the user's 48 h window there
(`touch`) and each valid passive reply is added to the user's `shown` list.
"""
from __future__ import annotations

import re
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Optional, Union

from . import xml_messages as X
from .crypto import Envelope, new_nonce, new_timestamp, sha1_signature
from .transport import RawResponse, request, with_query

if TYPE_CHECKING:
    from .server import WeChatPlatformSimulator

SERVICE_UNAVAILABLE = "该公众号暂时无法提供服务，请稍后再试"
PASSIVE_TEXT_LIMIT = 2048  # no documented limit (§1.5); DoW caps here, so more is worth a warning


@dataclass
class Delivery:
    attempt: int
    query: dict
    plaintext: Optional[str]  # the inner XML sent (None for post_raw)
    status: int  # HTTP status, 0 when no answer
    raw: bytes  # the response body
    elapsed: float
    dropped: bool  # cut at the deadline
    error: Optional[str]  # transport failure (refused, reset)
    outcome: str = "dropped"  # dropped | failed | empty | reply | invalid
    reply: Optional[X.ParsedReply] = None
    encrypted_reply: Optional[bool] = None
    problems: list[str] = field(default_factory=list)  # why the answer is not a valid reply
    warnings: list[str] = field(default_factory=list)  # valid, but suspicious (e.g. > 2048 bytes)

    @property
    def answered(self) -> bool:
        return self.outcome in ("empty", "reply", "invalid")


@dataclass
class Exchange:
    message: X.Inbound
    deliveries: list[Delivery]
    unavailable_text: Optional[str]

    @property
    def final(self) -> Optional[Delivery]:
        """The delivery that got an answer (always the last one), None when all were cut or failed."""
        last = self.deliveries[-1] if self.deliveries else None
        return last if last is not None and last.answered else None

    @property
    def reply(self) -> Optional[X.ParsedReply]:
        final = self.final
        return final.reply if final is not None and final.outcome == "reply" else None

    @property
    def answered_on(self) -> Optional[int]:
        """Attempt number (1-3) that got a non-empty valid reply."""
        return self.final.attempt if self.reply is not None else None

    @property
    def shown(self) -> Union[str, tuple, None]:
        """What the user sees: the reply text, (msgtype, media_id) for media, the unavailable
        text, or None."""
        final = self.final
        if final is None:  # every delivery cut or failed: WeChat gives up and says so
            return self.unavailable_text if self.deliveries else None
        if final.outcome == "invalid":
            return self.unavailable_text
        reply = self.reply
        if reply is None:
            return None
        return reply.text if reply.msgtype == "text" else (reply.msgtype, reply.media_id)

    @property
    def problems(self) -> list[str]:
        return [f"delivery {d.attempt}: {p}" for d in self.deliveries for p in d.problems]


@dataclass
class VerifyResult:
    status: int
    body: str
    expected: str
    elapsed: float
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        """Answered 200 with exactly the expected text (no quotes, BOM or newline)."""
        return self.status == 200 and self.body == self.expected


class _Sender:
    """The shared delivery loop; subclasses say how a request is built and who the account is."""

    account_name: str  # FromUserName of a valid reply
    account_id: str  # appid / corpid in the platform simulator
    unavailable_text: Optional[str]

    def __init__(self, url: str, token: str, envelope: Optional[Envelope], *, timeout: float,
                 deliveries: int, retry_gap: float, verify_timeout: float,
                 platform: Optional["WeChatPlatformSimulator"]) -> None:
        if deliveries < 1:
            raise ValueError("deliveries must be at least 1")
        self.url = url
        self.token = token
        self.envelope = envelope
        self.timeout = timeout
        self.deliveries = deliveries
        self.retry_gap = retry_gap
        self.verify_timeout = verify_timeout
        self.platform = platform

    # --- to be provided -------------------------------------------------------------------------
    def _request(self, plaintext: str, timestamp: str, nonce: str, user: Optional[str],
                 receiveid: Optional[str], forge: bool) -> tuple[dict, bytes]:
        raise NotImplementedError

    def _expects_encrypted_reply(self) -> Optional[bool]:
        """True: only encrypted replies are valid; False: only plaintext; None: either."""
        raise NotImplementedError

    # --- delivering ----------------------------------------------------------------------------
    def deliver(self, message: X.Inbound) -> Exchange:
        """Deliver like the platform: cut at `timeout`, again up to `deliveries` times."""
        exchange = Exchange(message, [], self.unavailable_text)
        if self.platform is not None and message.user is not None:
            self.platform.touch(self.account_id, message.user)
        for attempt in range(1, self.deliveries + 1):
            if attempt > 1 and self.retry_gap:
                time.sleep(self.retry_gap)
            delivery = self.send_once(message, attempt=attempt)
            exchange.deliveries.append(delivery)
            if delivery.answered:
                break
        reply = exchange.reply
        if self.platform is not None and reply is not None and message.user is not None:
            self.platform.show_passive(self.account_id, message.user, reply.msgtype, reply.text,
                                       reply.media_id, body=reply.fields)
        return exchange

    def send_once(self, message: X.Inbound, *, attempt: int = 1, receiveid: Optional[str] = None,
                  forge: bool = False, timeout: Optional[float] = None) -> Delivery:
        """One delivery, no retry. receiveid: encrypt for another AppID/CorpID; forge: wrong signatures."""
        return self._send_plaintext(message.xml(), message.user, attempt, receiveid, forge, timeout)

    def send_xml(self, plaintext: str, *, user: Optional[str] = None, receiveid: Optional[str] = None,
                 timeout: Optional[float] = None) -> Delivery:
        """Any plaintext XML (hostile.py) wrapped, signed and encrypted as a genuine callback."""
        return self._send_plaintext(plaintext, user, 1, receiveid, False, timeout)

    def post_raw(self, body: Union[bytes, str], *, query: Optional[dict] = None,
                 timeout: Optional[float] = None) -> Delivery:
        """Any body as is. The default query is signed as well as it can be: `signature` is valid,
        `msg_signature` covers the body's <Encrypt> when there is one."""
        raw = body.encode("utf-8") if isinstance(body, str) else body
        if query is None:
            query = self.signed_query(raw)
        response = request("POST", with_query(self.url, query), raw, timeout or self.timeout)
        return self._judge(Delivery(1, query, None, response.status, response.body, response.elapsed,
                                    response.dropped, response.error), None)

    def signed_query(self, body: bytes = b"") -> dict:
        timestamp, nonce = new_timestamp(), new_nonce()
        found = re.search(rb"<Encrypt>(?:<!\[CDATA\[)?([^<\]]*)", body)
        encrypt = found.group(1).decode("latin-1") if found else ""
        return self._signed(timestamp, nonce, encrypt)

    def _signed(self, timestamp: str, nonce: str, encrypt: str) -> dict:
        raise NotImplementedError

    def _send_plaintext(self, plaintext: str, user: Optional[str], attempt: int, receiveid: Optional[str],
                        forge: bool, timeout: Optional[float]) -> Delivery:
        timestamp, nonce = new_timestamp(), new_nonce()
        query, body = self._request(plaintext, timestamp, nonce, user, receiveid, forge)
        response: RawResponse = request("POST", with_query(self.url, query), body, timeout or self.timeout)
        delivery = Delivery(attempt, query, plaintext, response.status, response.body, response.elapsed,
                            response.dropped, response.error)
        return self._judge(delivery, user)

    # --- reading the answer ----------------------------------------------------------------------
    def _judge(self, d: Delivery, user: Optional[str]) -> Delivery:
        if d.dropped:
            d.outcome = "dropped"
            return d
        if d.error is not None:
            d.outcome = "failed"
            return d
        text = d.raw.decode("utf-8", "replace")
        if d.status != 200:
            d.outcome = "invalid"
            d.problems.append(f"HTTP {d.status}")
            return d
        if text.strip() in ("", "success"):
            d.outcome = "empty"
            return d
        d.outcome = "invalid"  # until proven a valid reply
        try:
            outer = X.parse(text)
        except X.NotXml as exc:
            d.problems.append(str(exc))
            return d
        fields = self._open_reply(outer, d)
        if fields is None:
            return d
        reply = X.read_reply(fields, user, self.account_name)
        d.reply = reply
        d.problems.extend(reply.problems)
        if not d.problems:
            d.outcome = "reply"
            if reply.text is not None and len(reply.text.encode("utf-8")) > PASSIVE_TEXT_LIMIT:
                d.warnings.append(f"passive text is {len(reply.text.encode('utf-8'))} bytes > {PASSIVE_TEXT_LIMIT}")
        return d

    def _open_reply(self, outer: dict, d: Delivery) -> Optional[dict]:
        """The reply's plaintext fields, checking the encrypted envelope (§1.4) when there is one."""
        expected = self._expects_encrypted_reply()
        encrypted = "Encrypt" in outer
        d.encrypted_reply = encrypted
        if expected is True and not encrypted:
            d.problems.append("plaintext reply to an encrypted callback")
            return None
        if expected is False and encrypted:
            d.problems.append("encrypted reply in plaintext mode")
            return None
        if not encrypted:
            return outer
        missing = [k for k in ("Encrypt", "MsgSignature", "TimeStamp", "Nonce") if not outer.get(k)]
        if missing:
            d.problems.append(f"encrypted reply lacks {', '.join(missing)}")
            return None
        if outer["MsgSignature"] != self.envelope.msg_signature(outer["TimeStamp"], outer["Nonce"], outer["Encrypt"]):
            d.problems.append("reply MsgSignature does not verify")
            return None
        try:
            inner = self.envelope.decrypt(outer["Encrypt"])
            return X.parse(inner)
        except ValueError as exc:  # NotXml is a ValueError too
            d.problems.append(f"cannot open the encrypted reply: {exc}")
            return None


class OfficialAccountSender(_Sender):
    """WeChat Official Account callbacks. mode: "plain" (no aes_key), "aes" (safe mode, the
    default with an aes_key) or "compat" (encrypted plus the plaintext elements)."""

    unavailable_text = SERVICE_UNAVAILABLE

    def __init__(self, url: str, token: str, appid: str, aes_key: Optional[str] = None, *,
                 mode: Optional[str] = None, original_id: str = "gh_0123456789ab", timeout: float = 5.0,
                 deliveries: int = 3, retry_gap: float = 0.0, verify_timeout: float = 5.0,
                 platform: Optional["WeChatPlatformSimulator"] = None) -> None:
        mode = mode or ("aes" if aes_key else "plain")
        if mode not in ("plain", "aes", "compat"):
            raise ValueError(f"mode {mode!r}")
        if mode != "plain" and not aes_key:
            raise ValueError(f"mode {mode!r} needs aes_key")
        super().__init__(url, token, Envelope(token, aes_key, appid) if aes_key else None, timeout=timeout,
                         deliveries=deliveries, retry_gap=retry_gap, verify_timeout=verify_timeout,
                         platform=platform)
        self.appid = appid
        self.mode = mode
        self.original_id = original_id
        self.account_name = original_id
        self.account_id = appid

    # --- URL verification (§1.2): the echostr comes back verbatim, never encrypted ---------------
    def verify(self, echostr: Optional[str] = None, *, forge: bool = False) -> VerifyResult:
        echostr = echostr or str(secrets.randbelow(10**19))
        timestamp, nonce = new_timestamp(), new_nonce()
        signature = sha1_signature(self.token, timestamp, nonce)
        if forge:
            signature = _forged(signature)
        query = {"signature": signature, "echostr": echostr, "timestamp": timestamp, "nonce": nonce}
        r = request("GET", with_query(self.url, query), b"", self.verify_timeout)
        return VerifyResult(r.status, r.body.decode("utf-8", "replace"), echostr, r.elapsed,
                            "dropped at the deadline" if r.dropped else r.error)

    # --- messages (§1.3) -------------------------------------------------------------------------
    def message(self, user: str, msgtype: str, extra: Union[list, dict] = (), msg_id: Optional[int] = None) -> Exchange:
        """Any MsgType with these elements (an unknown type too)."""
        items = list(extra.items()) if isinstance(extra, dict) else list(extra)
        return self.deliver(X.message(self.original_id, user, msgtype, items, msg_id))

    def text(self, user: str, content: str, msg_id: Optional[int] = None) -> Exchange:
        return self.message(user, "text", [("Content", content)], msg_id)

    def unsupported(self, user: str) -> Exchange:
        """A sticker or other content WeChat cannot pass on: text with the fixed marker."""
        return self.text(user, X.UNSUPPORTED_TEXT)

    def image(self, user: str, media_id: str, pic_url: str = "http://mmbiz.qpic.cn/sim/0",
              msg_id: Optional[int] = None) -> Exchange:
        return self.message(user, "image", [("PicUrl", pic_url), ("MediaId", media_id)], msg_id)

    def voice(self, user: str, media_id: str, recognition: Optional[str] = None, fmt: str = "amr",
              msg_id: Optional[int] = None) -> Exchange:
        extra = [("MediaId", media_id), ("Format", fmt)]
        if recognition is not None:  # only when the account enabled speech recognition
            extra.append(("Recognition", recognition))
        return self.message(user, "voice", extra, msg_id)

    def video(self, user: str, media_id: str, thumb_media_id: str = "", short: bool = False,
              msg_id: Optional[int] = None) -> Exchange:
        return self.message(user, "shortvideo" if short else "video",
                            [("MediaId", media_id), ("ThumbMediaId", thumb_media_id)], msg_id)

    def location(self, user: str, x: float, y: float, label: str = "", scale: int = 15) -> Exchange:
        return self.message(user, "location", [("Location_X", str(x)), ("Location_Y", str(y)),
                                                ("Scale", scale), ("Label", label)])

    def link(self, user: str, title: str, description: str, url: str) -> Exchange:
        return self.message(user, "link", [("Title", title), ("Description", description), ("Url", url)])

    def event(self, user: str, name: str, extra: Union[list, dict] = ()) -> Exchange:
        items = list(extra.items()) if isinstance(extra, dict) else list(extra)
        return self.deliver(X.event(self.original_id, user, name, items))

    def subscribe(self, user: str, scene: Optional[str] = None) -> Exchange:
        """Follow; with `scene`, follow by scanning a parameter QR code (EventKey qrscene_<scene>)."""
        if scene is None:
            return self.event(user, "subscribe", [("EventKey", "")])
        return self.event(user, "subscribe", [("EventKey", f"qrscene_{scene}"), ("Ticket", secrets.token_hex(16))])

    def unsubscribe(self, user: str) -> Exchange:
        return self.event(user, "unsubscribe", [("EventKey", "")])

    def forged_signature(self, user: str, content: str = "forged") -> Delivery:
        return self.send_once(X.message(self.original_id, user, "text", [("Content", content)]), forge=True)

    # --- request building (§1.2, §1.4) -----------------------------------------------------------
    def _signed(self, timestamp: str, nonce: str, encrypt: str) -> dict:
        query = {"signature": sha1_signature(self.token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
        if self.mode != "plain":
            query["encrypt_type"] = "aes"
            query["msg_signature"] = self.envelope.msg_signature(timestamp, nonce, encrypt)
        return query

    def _request(self, plaintext, timestamp, nonce, user, receiveid, forge):
        if self.mode == "plain":
            query, body = self._signed(timestamp, nonce, ""), plaintext
        else:
            encrypt = self.envelope.encrypt(plaintext, receiveid)
            query = self._signed(timestamp, nonce, encrypt)
            compat = self.mode == "compat" and plaintext.startswith("<xml>") and plaintext.endswith("</xml>")
            inner = plaintext[len("<xml>"):-len("</xml>")] if compat else X.element("ToUserName", self.original_id)
            body = f"<xml>{inner}{X.element('Encrypt', encrypt)}</xml>"
        if user is not None:
            query["openid"] = user
        if forge:
            query = {k: _forged(v) if k in ("signature", "msg_signature") else v for k, v in query.items()}
        return query, body.encode("utf-8")

    def _expects_encrypted_reply(self) -> Optional[bool]:
        return {"plain": False, "aes": True, "compat": None}[self.mode]


class WeComSender(_Sender):
    """WeCom self-built app and customer-service callbacks: always encrypted (§2.3, §3.1)."""

    unavailable_text = None

    def __init__(self, url: str, token: str, aes_key: str, corp_id: str, agent_id: Optional[int] = 1000002, *,
                 timeout: float = 5.0, deliveries: int = 3, retry_gap: float = 0.0, verify_timeout: float = 1.0,
                 platform: Optional["WeChatPlatformSimulator"] = None) -> None:
        super().__init__(url, token, Envelope(token, aes_key, corp_id), timeout=timeout, deliveries=deliveries,
                         retry_gap=retry_gap, verify_timeout=verify_timeout, platform=platform)
        self.corp_id = corp_id
        self.agent_id = agent_id
        self.account_name = corp_id
        self.account_id = corp_id

    # --- URL verification (§2.2): echostr is ciphertext, the answer its plaintext, within 1 s -----
    def verify(self, *, forge: bool = False, receiveid: Optional[str] = None) -> VerifyResult:
        plaintext = str(secrets.randbelow(10**19))
        echostr = self.envelope.encrypt(plaintext, receiveid)
        timestamp, nonce = new_timestamp(), new_nonce()
        signature = self.envelope.msg_signature(timestamp, nonce, echostr)
        query = {"msg_signature": _forged(signature) if forge else signature, "timestamp": timestamp,
                 "nonce": nonce, "echostr": echostr}
        r = request("GET", with_query(self.url, query), b"", self.verify_timeout)
        return VerifyResult(r.status, r.body.decode("utf-8", "replace"), plaintext, r.elapsed,
                            "dropped at the deadline" if r.dropped else r.error)

    # --- messages (§2.3) ---------------------------------------------------------------------------
    def message(self, user: str, msgtype: str, extra: Union[list, dict] = (), msg_id: Optional[int] = None) -> Exchange:
        items = list(extra.items()) if isinstance(extra, dict) else list(extra)
        return self.deliver(X.message(self.corp_id, user, msgtype, items, msg_id, agent_id=self.agent_id))

    def text(self, user: str, content: str, msg_id: Optional[int] = None) -> Exchange:
        return self.message(user, "text", [("Content", content)], msg_id)

    def image(self, user: str, media_id: str, pic_url: str = "https://wework.qpic.cn/sim/0",
              msg_id: Optional[int] = None) -> Exchange:
        return self.message(user, "image", [("PicUrl", pic_url), ("MediaId", media_id)], msg_id)

    def voice(self, user: str, media_id: str, recognition: Optional[str] = None, fmt: str = "amr",
              msg_id: Optional[int] = None) -> Exchange:
        extra = [("MediaId", media_id), ("Format", fmt)]
        if recognition is not None:
            extra.append(("Recognition", recognition))
        return self.message(user, "voice", extra, msg_id)

    def video(self, user: str, media_id: str, thumb_media_id: str = "", msg_id: Optional[int] = None) -> Exchange:
        return self.message(user, "video", [("MediaId", media_id), ("ThumbMediaId", thumb_media_id)], msg_id)

    def event(self, user: str, name: str, extra: Union[list, dict] = ()) -> Exchange:
        items = list(extra.items()) if isinstance(extra, dict) else list(extra)
        return self.deliver(X.event(self.corp_id, user, name, items, agent_id=self.agent_id))

    def subscribe(self, user: str) -> Exchange:
        return self.event(user, "subscribe", [("EventKey", "")])

    def enter_agent(self, user: str) -> Exchange:
        return self.event(user, "enter_agent", [("EventKey", "")])

    def kf_notify(self, open_kfid: str, sync_token: Optional[str] = None) -> Exchange:
        """The kf_msg_or_event callback (§3.1): no FromUserName, no content, only a sync Token.
        Without `sync_token`, a fresh one is taken from the linked platform."""
        if sync_token is None:
            if self.platform is None:
                raise ValueError("give sync_token or link a platform")
            sync_token = self.platform.kf_sync_token(self.corp_id, open_kfid)
        return self.deliver(X.event(self.corp_id, None, "kf_msg_or_event",
                                    [("Token", sync_token), ("OpenKfId", open_kfid)]))

    def kf_customer_says(self, open_kfid: str, external_userid: str, content: str) -> tuple[dict, Exchange]:
        """A customer's text: stored on the linked platform for sync_msg, then the callback."""
        if self.platform is None:
            raise ValueError("kf_customer_says needs platform=")
        item = self.platform.kf_message(self.corp_id, open_kfid, external_userid, content)
        return item, self.kf_notify(open_kfid)

    def forged_signature(self, user: str, content: str = "forged") -> Delivery:
        return self.send_once(X.message(self.corp_id, user, "text", [("Content", content)],
                                        agent_id=self.agent_id), forge=True)

    def wrong_corp_id(self, user: str, corp_id: str = "wwNotThisCorp0001", content: str = "hello") -> Delivery:
        """Correctly signed, but encrypted with another corp id as receiveid."""
        return self.send_once(X.message(self.corp_id, user, "text", [("Content", content)],
                                        agent_id=self.agent_id), receiveid=corp_id)

    # --- request building (§2.3) -------------------------------------------------------------------
    def _signed(self, timestamp: str, nonce: str, encrypt: str) -> dict:
        return {"msg_signature": self.envelope.msg_signature(timestamp, nonce, encrypt),
                "timestamp": timestamp, "nonce": nonce}

    def _request(self, plaintext, timestamp, nonce, user, receiveid, forge):
        encrypt = self.envelope.encrypt(plaintext, receiveid)
        query = self._signed(timestamp, nonce, encrypt)
        agent = X.element("AgentID", str(self.agent_id)) if self.agent_id is not None else ""
        body = f"<xml>{X.element('ToUserName', self.corp_id)}{agent}{X.element('Encrypt', encrypt)}</xml>"
        if forge:
            query["msg_signature"] = _forged(query["msg_signature"])
        return query, body.encode("utf-8")

    def _expects_encrypted_reply(self) -> Optional[bool]:
        return True


def _forged(signature: str) -> str:
    """A signature of the right shape that does not verify."""
    return signature[:-1] + ("0" if signature[-1] != "0" else "1")
