"""WeCom self-built app send, `message/send` (reference §2.4).

- `agentid` must be the token's app (41011 missing, 40056 another app's).
- touser "u1|u2" (or "@all"); when the corp has a member list (`wecom_members`), unknown ids come
  back in `invaliduser` and nobody valid means 81013. toparty / totag are shown to "party:<id>" /
  "tag:<id>" as no org chart is modelled.
- text and markdown over 2048 bytes are truncated, not refused: the member sees the first 2048
  bytes and the Shown record says `truncated`.
- About 30 messages a minute and 1000 an hour per member per app; the excess is answered errcode 0
  and silently not shown (the Call's note says so).
"""
from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from .errors import (
    DATA_FORMAT_ERROR,
    INVALID_AGENTID,
    INVALID_MSGTYPE,
    MISSING_AGENTID,
    NO_VALID_RECIPIENT,
)
from .outgoing import MEDIA_TYPES, over_limit, resolve_media, text_content, truncate_utf8
from .records import Shown
from .routes import Answer, Req, Route, fail

if TYPE_CHECKING:
    from .server import WeChatPlatformSimulator

TEXTUAL = ("text", "markdown")
OTHER = ("textcard", "news", "mpnews", "miniprogram_notice", "template_card")


def _agentid(value) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


def _recipients(sim: "WeChatPlatformSimulator", corpid: str, body: dict) -> tuple[list[str], list[str]]:
    users = [u for u in str(body.get("touser") or "").split("|") if u]
    members = sim.wecom_members.get(corpid) if sim.wecom_members is not None else None
    valid = [u for u in users if members is None or u == "@all" or u in members]
    invalid = [u for u in users if u not in valid]
    for key, prefix in (("toparty", "party:"), ("totag", "tag:")):
        valid += [prefix + p for p in str(body.get(key) or "").split("|") if p]
    return valid, invalid


def message_send(sim: "WeChatPlatformSimulator", req: Req) -> Answer:
    body = req.json_object()
    if body is None:
        return fail(DATA_FORMAT_ERROR)
    corpid = req.grant.account
    if "agentid" not in body:
        return fail(MISSING_AGENTID)
    if _agentid(body.get("agentid")) != req.grant.agentid:
        return fail(INVALID_AGENTID, f"agentid {body.get('agentid')!r} is not the token's app")
    msgtype = body.get("msgtype")
    if msgtype not in TEXTUAL + MEDIA_TYPES + OTHER:
        return fail(INVALID_MSGTYPE, f"msgtype {msgtype!r}")
    payload = body.get(msgtype)
    if not isinstance(payload, dict):
        return fail(DATA_FORMAT_ERROR, f"`{msgtype}` object missing")
    text = media = None
    truncated = False
    if msgtype in TEXTUAL:
        text, refused = text_content(payload)
        if refused is None and over_limit(text):
            text, truncated = truncate_utf8(text), True
    elif msgtype in MEDIA_TYPES:
        media, refused = resolve_media(sim, corpid, msgtype, payload, req.now)
    else:
        refused = None
    if refused is not None:
        return refused
    valid, invalid = _recipients(sim, corpid, body)
    if not valid:
        return Answer(NO_VALID_RECIPIENT, fields={"invaliduser": "|".join(invalid)})
    dropped = []
    for user in valid:
        if not sim._member_rate_ok(corpid, req.grant.agentid, user, req.now):
            dropped.append(user)
            continue
        sim._show(Shown(user, corpid, "message/send", msgtype, text, media.media_id if media else None,
                        media.data if media else None, req.now, truncated=truncated, body=body))
    notes = []
    if truncated:
        notes.append("text truncated to 2048 bytes")
    if dropped:
        notes.append("dropped by rate limit: " + "|".join(dropped))
    fields = {"invaliduser": "|".join(invalid), "invalidparty": "", "invalidtag": "",
              "unlicenseduser": "", "msgid": secrets.token_urlsafe(24)}
    if msgtype == "template_card":
        fields["response_code"] = secrets.token_urlsafe(24)
    return Answer(fields=fields, note="; ".join(notes))


ROUTES = {"message/send": Route("POST", "wecom", message_send)}
