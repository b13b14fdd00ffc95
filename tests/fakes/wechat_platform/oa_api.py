"""OA customer-service send, `message/custom/send` (reference §1.7).

Allowed within 48 h of the user's last interaction: the simulator learns interactions from
`sim.touch(appid, openid)`, which a linked CallbackSender calls on every delivery. Text over
2048 UTF-8 bytes is refused with 45002 (the limit DoW splits at); uncertified accounts get 48001.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .errors import (
    API_UNAUTHORIZED,
    CONTENT_TOO_LONG,
    DATA_FORMAT_ERROR,
    INVALID_MSGTYPE,
    INVALID_OPENID,
    OUT_OF_WINDOW,
    TEXT_MAX_BYTES,
)
from .outgoing import over_limit, resolve_media, text_content
from .records import Shown
from .routes import Answer, Req, Route, fail

if TYPE_CHECKING:
    from .server import WeChatPlatformSimulator

MEDIA = ("image", "voice", "video")
OTHER = ("music", "news", "mpnews", "mpnewsarticle", "msgmenu", "wxcard", "miniprogrampage")


def custom_send(sim: "WeChatPlatformSimulator", req: Req) -> Answer:
    body = req.json_object()
    if body is None:
        return fail(DATA_FORMAT_ERROR)
    appid = req.grant.account
    if appid in sim.oa_uncertified:
        return fail(API_UNAUTHORIZED, "uncertified account: no customer-service API")
    touser, msgtype = body.get("touser"), body.get("msgtype")
    if not isinstance(touser, str) or not touser:
        return fail(INVALID_OPENID)
    if msgtype not in ("text",) + MEDIA + OTHER:
        return fail(INVALID_MSGTYPE, f"msgtype {msgtype!r}")
    payload = body.get(msgtype)
    if not isinstance(payload, dict):
        return fail(DATA_FORMAT_ERROR, f"`{msgtype}` object missing")
    if sim.require_interaction and not sim._window_open(appid, touser, req.now):
        return fail(OUT_OF_WINDOW)
    text = media = None
    if msgtype == "text":
        text, refused = text_content(payload)
        if refused is None and over_limit(text):
            refused = fail(CONTENT_TOO_LONG, f"{len(text.encode('utf-8'))} bytes > {TEXT_MAX_BYTES}")
    elif msgtype in MEDIA:
        media, refused = resolve_media(sim, appid, msgtype, payload, req.now)
    else:
        refused = None  # accepted as is; shown with its raw body
    if refused is not None:
        return refused
    sim._show(Shown(touser, appid, "custom/send", msgtype, text, media.media_id if media else None,
                    media.data if media else None, req.now, body=body))
    return Answer()


ROUTES = {"message/custom/send": Route("POST", "oa", custom_send)}
