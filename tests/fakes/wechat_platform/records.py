"""What the API simulator hands to tests: every call it answered (`Call`), every message a user
would see (`Shown`), and the faults a test queued for the next calls (`Fault`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional


@dataclass(frozen=True)
class Call:
    """One HTTP request to the API, in arrival order. `api` is the path after /cgi-bin/."""

    seq: int
    at: float
    api: str
    method: str
    query: dict  # first value of each query parameter
    body: Any  # parsed JSON; {"parts": {...}} for multipart (sizes, not bytes); raw bytes otherwise
    status: int  # HTTP status answered (0 = connection dropped on purpose)
    errcode: Optional[int]  # None for a binary answer or a non-JSON one
    account: Optional[str] = None  # appid / corpid the token belongs to
    injected: bool = False  # answered by a queued Fault
    note: str = ""  # e.g. "dropped by rate limit", "truncated to 2048 bytes"


@dataclass(frozen=True)
class Shown:
    """A message that reached a user's screen (or a WeCom member's), in order per user."""

    user: str  # openid, WeCom userid ("@all" as sent), or kf external_userid
    account: str  # appid, corpid, or "corpid/open_kfid" for customer service
    via: str  # "custom/send" | "message/send" | "kf/send_msg" | "passive"
    msgtype: str
    text: Optional[str]  # text / markdown content as shown (after any truncation)
    media_id: Optional[str]
    media: Optional[bytes]  # the media's bytes when the id resolved
    at: float
    truncated: bool = False
    body: dict = field(default_factory=dict, compare=False, repr=False)  # the request as sent


@dataclass
class Fault:
    """The answer queued for the next `count` calls of `api` ("*" = any API).

    delay: seconds to wait first (then answer normally unless another field says otherwise);
    drop: close the connection without an answer; status: an HTTP error page with that status;
    errcode: HTTP 200 with {"errcode", "errmsg"}. The call is not processed otherwise: an injected
    40001 says the token is stale but does not make it so (see expire_tokens / revoke_tokens)."""

    api: str
    count: int = 1
    errcode: Optional[int] = None
    errmsg: Optional[str] = None
    status: Optional[int] = None
    delay: float = 0.0
    drop: bool = False

    @property
    def answers(self) -> bool:
        return self.drop or self.status is not None or self.errcode is not None
