"""WeCom customer service (微信客服) `kf/sync_msg` items -> ChatMessage (reference/
channel-protocols.md §3.1 item 3).

Only translation lives here: which field means what, which items are a customer's message, and
how a picture or a voice clip is fetched (`media/get`) when someone calls ``prepare()``. What
to answer is the pipeline's business.

Fixed against the original: an item is checked before it is read, so a servicer's own message
(origin 5) is never answered as if the customer wrote it, and a system event (origin 4, which
has no top-level external_userid) is skipped instead of raising in the constructor.
"""
from __future__ import annotations

from typing import Any, Callable

from bridge.context import ContextType
from channel.chat_message import ChatMessage
from common.text import safe_text
from common.tmp_dir import unique_tmp_path

ORIGIN_CUSTOMER = 3  # 4 = system event, 5 = a servicer typing in the WeCom client
_TYPES = {"text": ContextType.TEXT, "image": ContextType.IMAGE, "voice": ContextType.VOICE}
# sync_msg is asked for voice_format 0 (AMR); pictures have no declared format.
_SUFFIX = {"image": ".jpg", "voice": ".amr"}

# (media_id, path): write the media file to path, raising on failure.
Downloader = Callable[[str, str], None]


class UnsupportedItem(ValueError):
    """An item the channel does not answer; the message says why (for the log)."""


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def check_item(item: Any) -> None:
    """Raise UnsupportedItem unless `item` is a customer's text, picture or voice clip."""
    if not isinstance(item, dict):
        raise UnsupportedItem("not an object")
    origin = item.get("origin")
    if origin != ORIGIN_CUSTOMER:
        what = {4: "a system event", 5: "a servicer's message"}.get(origin, f"origin {origin!r}")
        raise UnsupportedItem(f"{what}, not a customer's message")
    for key in ("msgid", "external_userid", "open_kfid"):
        if not isinstance(item.get(key), str) or not item[key]:
            raise UnsupportedItem(f"no {key}")
    kind = item.get("msgtype")
    if kind not in _TYPES:
        raise UnsupportedItem(f"msgtype {kind!r} is not handled")
    payload = _dict(item.get(kind))
    if kind == "text" and not isinstance(payload.get("content"), str):
        raise UnsupportedItem("a text without content")
    if kind != "text" and (not isinstance(payload.get("media_id"), str) or not payload["media_id"]):
        raise UnsupportedItem(f"a {kind} without media_id")


class WechatCsMessage(ChatMessage):
    """A customer's message. `path` names the file a media message is downloaded to (kept in the
    inbox record, so the context rebuilt after a restart points at the same file)."""

    def __init__(self, item: dict, download: Downloader | None, path: str | None = None) -> None:
        check_item(item)
        super().__init__(item)
        self.item = item
        self.msg_id = item["msgid"]
        self.create_time = item.get("send_time")
        self.msgtype = item["msgtype"]
        self.origin = item["origin"]
        self.external_userid = item["external_userid"]
        self.open_kfid = item["open_kfid"]
        self.ctype = _TYPES[self.msgtype]
        # The customer is the other side; the kf account is "us" (the original's mapping).
        self.from_user_id = self.other_user_id = self.external_userid
        self.to_user_id = self.open_kfid
        self.is_group = False
        self.media_id = ""
        if self.msgtype == "text":
            self.content = safe_text(_dict(item["text"]).get("content") or "")
            return
        self.media_id = _dict(item[self.msgtype])["media_id"]
        self.content = path or unique_tmp_path(_SUFFIX[self.msgtype])
        if download is not None:
            # Lazy: a picture is fetched only when a question needs it (media ids live 3 days).
            self._prepare_fn = lambda: download(self.media_id, self.content)
