"""media/upload, media/get (both platforms; the token says which rules apply) and OA permanent
material (material/add_material, get_material, del_material: DoW's passive replies, §1.6 step 4).

Uncertified OA accounts get 48001 on media/upload (DoW's README: they lack the temp-media API)
but may use material. media/get serves temporary media only; material/get_material permanent only.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from .errors import (
    API_UNAUTHORIZED,
    DATA_FORMAT_ERROR,
    INVALID_MEDIA_ID,
    MISSING_MEDIA,
)
from .media import check_upload
from .routes import Answer, Binary, Req, Route, fail

if TYPE_CHECKING:
    from .server import WeChatPlatformSimulator


def _platform(req: Req) -> str:
    return req.grant.kind  # "oa" | "wecom"


def _store_upload(sim: "WeChatPlatformSimulator", req: Req, rules: str, permanent: bool):
    """(media, None) or (None, refusal) for a multipart upload with field `media`."""
    parts = req.multipart()
    media_part = (parts or {}).get("media")
    if media_part is None:
        return None, fail(MISSING_MEDIA, "multipart field `media` is required")
    kind = req.query.get("type", "")
    refused = check_upload(rules, kind, media_part.filename, media_part.data)
    if refused is not None:
        return None, fail(*refused)
    description = None
    if permanent and "description" in parts:
        try:
            description = json.loads(parts["description"].data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None, fail(DATA_FORMAT_ERROR, "description is not JSON")
    media = sim._media.add(req.grant.account, kind, media_part.data, media_part.filename, req.now,
                           permanent=permanent, description=description)
    return media, None


def upload(sim: "WeChatPlatformSimulator", req: Req) -> Answer:
    platform = _platform(req)
    if platform == "oa" and req.grant.account in sim.oa_uncertified:
        return fail(API_UNAUTHORIZED, "uncertified account: no temporary media API")
    media, refused = _store_upload(sim, req, platform, permanent=False)
    if refused is not None:
        return refused
    # OA answers without errcode and created_at as a number; WeCom with errcode and a string.
    created = int(media.created_at)
    return Answer(fields={"type": media.kind, "media_id": media.media_id,
                          "created_at": created if platform == "oa" else str(created)},
                  with_errcode=platform == "wecom")


def get(sim: "WeChatPlatformSimulator", req: Req):
    media = sim._media.get(req.grant.account, req.query.get("media_id"), req.now, permanent=False)
    if media is None:
        return fail(INVALID_MEDIA_ID)
    return Binary(media.data, media.content_type, media.filename)


def add_material(sim: "WeChatPlatformSimulator", req: Req) -> Answer:
    media, refused = _store_upload(sim, req, "oa_material", permanent=True)
    if refused is not None:
        return refused
    fields = {"media_id": media.media_id}
    if media.kind == "image":
        fields["url"] = f"{sim.base_url}/mmbiz/{media.media_id}"
    return Answer(fields=fields, with_errcode=False)


def _material(sim: "WeChatPlatformSimulator", req: Req):
    body = req.json_object()
    if body is None:
        return None, fail(DATA_FORMAT_ERROR)
    media = sim._media.get(req.grant.account, body.get("media_id"), req.now, permanent=True)
    if media is None:
        return None, fail(INVALID_MEDIA_ID)
    return media, None


def get_material(sim: "WeChatPlatformSimulator", req: Req):
    media, refused = _material(sim, req)
    return refused if refused is not None else Binary(media.data, media.content_type, media.filename)


def del_material(sim: "WeChatPlatformSimulator", req: Req) -> Answer:
    media, refused = _material(sim, req)
    if refused is not None:
        return refused
    media.deleted = True
    return Answer()


ROUTES = {
    "media/upload": Route("POST", "any", upload),
    "media/get": Route("GET", "any", get),
    "material/add_material": Route("POST", "oa", add_material),
    "material/get_material": Route("POST", "oa", get_material),
    "material/del_material": Route("POST", "oa", del_material),
}
