"""The pieces every API handler shares: the request as a handler sees it, what it answers, and the
route table entry. Handlers run under the simulator's lock and return an answer; the HTTP side
(server.py) turns it into bytes and records the call."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Optional

from .errors import OK, errmsg
from .media import Part, parse_multipart
from .tokens import Grant

if TYPE_CHECKING:
    from .server import WeChatPlatformSimulator


@dataclass
class Req:
    api: str
    method: str
    query: dict
    raw: bytes
    content_type: str
    now: float
    grant: Optional[Grant] = None

    def json_object(self) -> Optional[dict]:
        """The body as a JSON object, None when it is not one (the platform then says 47001)."""
        try:
            value = json.loads(self.raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def multipart(self) -> Optional[dict[str, Part]]:
        return parse_multipart(self.content_type, self.raw)


@dataclass
class Answer:
    """A JSON answer. OA leaves errcode out of most successful answers (token, media/upload); WeCom
    always has it, so `with_errcode` is the handler's call."""

    errcode: int = OK
    detail: str = ""
    fields: dict = field(default_factory=dict)
    with_errcode: bool = True
    note: str = ""
    status: int = 200

    def payload(self) -> dict:
        out: dict = {}
        if self.errcode != OK or self.with_errcode:
            out["errcode"] = self.errcode
            out["errmsg"] = errmsg(self.errcode, self.detail) if self.errcode != OK else "ok"
        out.update(self.fields)
        return out


@dataclass
class Binary:
    data: bytes
    content_type: str
    filename: Optional[str]


Handler = Callable[["WeChatPlatformSimulator", Req], Any]  # -> Answer | Binary


@dataclass(frozen=True)
class Route:
    method: str  # GET | POST
    auth: Optional[str]  # None (no token), "oa", "wecom", "any" (a token of either platform)
    handler: Handler
    metered: bool = True  # counts against daily_quota


def fail(code: int, detail: str = "") -> Answer:
    return Answer(code, detail)
