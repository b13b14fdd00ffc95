"""The Official Account server API as this channel uses it (reference §1.7): the client, uploads,
and what the errors that need the operator's attention mean."""
from __future__ import annotations

import json
import os
from typing import Any

from common.wechat_api import WechatApi, WechatApiError
from config import conf

# Errors no retry can fix, each with its cause and what to do (one log line, DESIGN §8).
EXPLAINED = {
    45009: "the account's daily quota for this API is used up; wait until tomorrow, or reset it in the "
           "Official Account admin console (resets are limited per month)",
    45015: "the user has not written to the account in the last 48 hours, and the customer-service API may "
           "only answer within 48 h of the user's last message",
    48001: "this account is not authorised for the API (the customer-service and media APIs need a verified "
           "(认证) service account); use channel_type wechatmp (passive replies) instead",
}
# Media the material and media APIs take, by the first bytes of the file.
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "png"), (b"\xff\xd8\xff", "jpg"), (b"GIF8", "gif"), (b"BM", "bmp"))


def make_api(appid: str, secret: str) -> WechatApi:
    base = str(conf().get("wechatmp_api_base") or "https://api.weixin.qq.com")
    return WechatApi(base, ("token", {"grant_type": "client_credential", "appid": appid, "secret": secret}),
                     label="wechatmp")


def explain(error: Exception) -> str | None:
    """The operator's line for an error no retry can fix, None for any other."""
    if isinstance(error, WechatApiError) and error.errcode in EXPLAINED:
        return f"{error.path} refused with {error.errcode}: {EXPLAINED[error.errcode]}"
    return None


def image_suffix(data: bytes) -> str:
    for magic, suffix in _IMAGE_MAGIC:
        if data.startswith(magic):
            return suffix
    raise ValueError("the picture is not PNG, JPEG, GIF or BMP")


def upload(api: WechatApi, kind: str, name: str, data: bytes, *, permanent: bool) -> str:
    """The media id of `data` uploaded as `kind` (image, voice, video): temporary media (3 days)
    or permanent material, which uncertified accounts may use too (reference §1.6)."""
    files: dict[str, Any] = {"media": (name, data)}
    if permanent and kind == "video":
        # Video material needs a title and an introduction.
        files["description"] = (None, json.dumps({"title": os.path.splitext(name)[0], "introduction": ""}))
    path = "material/add_material" if permanent else "media/upload"
    answer = api.call(path, params={"type": kind}, files=files)
    media_id = answer.get("media_id")
    if not media_id:
        raise WechatApiError(None, f"no media_id in the answer {str(answer)[:200]}", path)
    return str(media_id)

