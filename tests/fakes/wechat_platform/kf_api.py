"""WeCom customer service endpoints, `kf/sync_msg` and `kf/send_msg` (reference §3.1, §3.3); the
store and its rules are in kf.py. Any WeCom app token of the corp may call them (which app is
authorised for customer service is not modelled)."""
from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from .errors import (
    CONTENT_TOO_LONG,
    DATA_FORMAT_ERROR,
    INVALID_MSGTYPE,
    KF_INVALID_OPEN_KFID,
    KF_OPEN_KFID_NOT_FOUND,
    OK,
    TEXT_MAX_BYTES,
)
from .outgoing import MEDIA_TYPES, over_limit, resolve_media, text_content
from .records import Shown
from .routes import Answer, Req, Route, fail

if TYPE_CHECKING:
    from .server import WeChatPlatformSimulator

OTHER = ("link", "msgmenu", "location", "miniprogram", "business_card", "ca_link")


def sync_msg(sim: "WeChatPlatformSimulator", req: Req) -> Answer:
    body = req.json_object()
    if body is None:
        return fail(DATA_FORMAT_ERROR)
    code, detail, fields = sim._kf.sync(req.grant.account, body, req.now)
    note = "" if body.get("token") else "no sync token"
    return Answer(code, detail, fields, note=note) if code == OK else Answer(code, detail, note=note)


def send_msg(sim: "WeChatPlatformSimulator", req: Req) -> Answer:
    body = req.json_object()
    if body is None:
        return fail(DATA_FORMAT_ERROR)
    corpid = req.grant.account
    open_kfid, touser, msgtype = body.get("open_kfid"), body.get("touser"), body.get("msgtype")
    if not isinstance(open_kfid, str) or not open_kfid.startswith("wk"):
        return fail(KF_INVALID_OPEN_KFID, f"open_kfid {open_kfid!r}")
    if not sim._kf.known(corpid, open_kfid):
        return fail(KF_OPEN_KFID_NOT_FOUND, open_kfid)
    if msgtype not in ("text",) + MEDIA_TYPES + OTHER:
        return fail(INVALID_MSGTYPE, f"msgtype {msgtype!r}")
    payload = body.get(msgtype)
    if not isinstance(payload, dict) or not isinstance(touser, str):
        return fail(DATA_FORMAT_ERROR, f"touser or `{msgtype}` object missing")
    text = media = None
    if msgtype == "text":
        text, refused = text_content(payload)
        if refused is None and over_limit(text):
            refused = fail(CONTENT_TOO_LONG, f"{len(text.encode('utf-8'))} bytes > {TEXT_MAX_BYTES}")
    elif msgtype in MEDIA_TYPES:
        media, refused = resolve_media(sim, corpid, msgtype, payload, req.now)
    else:
        refused = None
    if refused is not None:
        return refused
    # Only a message that would be delivered spends the customer's budget.
    code, detail = sim._kf.spend(corpid, open_kfid, touser, req.now)
    if code != OK:
        return fail(code, detail)
    msgid = body.get("msgid") if isinstance(body.get("msgid"), str) and body.get("msgid") else secrets.token_hex(16)
    sim._show(Shown(touser, f"{corpid}/{open_kfid}", "kf/send_msg", msgtype, text,
                    media.media_id if media else None, media.data if media else None, req.now, body=body))
    return Answer(fields={"msgid": msgid})


ROUTES = {
    "kf/sync_msg": Route("POST", "wecom", sync_msg),
    "kf/send_msg": Route("POST", "wecom", send_msg),
}
