"""Records the simulator hands to tests, and the error codes it answers with.

Codes marked "observed" are in reference/wecom-aibot.md §5.3; the others are choices made where the
reference is silent (§9), each named in ERRORS so a test can assert on the constant, not a number.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

# --- error codes -------------------------------------------------------------------------------
OK = 0
SYSTEM_BUSY = -1  # general table; used by the `fail_concurrent_chunks` knob
INVALID_CREDENTIALS = 853000  # observed: bad bot_id/secret
NOT_SUBSCRIBED = 853000  # choice: a command before a successful subscribe ("you are not authenticated")
REQ_ID_EXPIRED = 846604  # observed for late card updates; used for every late reply (welcome, 24 h window)
INVALID_REQ_ID = 846605  # observed: reply of the wrong kind / unknown req_id
STREAM_EXPIRED = 846608  # observed: late stream frame
STREAM_FINISHED = 846608  # choice: a frame to a stream that already has finish:true
INVALID_MSGTYPE = 40008  # observed
MISSING_FIELD = 40058  # observed, and the ack carries no headers.req_id
INVALID_MEDIA_ID = 40007  # observed; also used for unknown / expired upload_id (choice)
INVALID_MEDIA_TYPE = 40004  # general table: media of another type, bad upload type
INVALID_FILE_SIZE = 40006  # general table: every upload size / chunk count / completeness / md5 check
INVALID_CHATID = 93006  # observed for aibot_send_msg
CONTENT_TOO_LONG = 45002  # choice (§9.5 open): WeCom's general "content size out of limit"
RATE_LIMITED = 45009  # reference's assumption (§5.2)
BAD_FRAME = 47001  # choice: WeCom's general "data format error" for non-JSON frames and unknown cmds

ERRORS: dict[int, str] = {
    OK: "ok",
    SYSTEM_BUSY: "system busy",
    INVALID_CREDENTIALS: "invalid bot_id or secret",
    REQ_ID_EXPIRED: "req_id expired",
    INVALID_REQ_ID: "invalid req_id",
    STREAM_EXPIRED: "stream message update expired",
    INVALID_MSGTYPE: "invalid message type",
    MISSING_FIELD: "invalid Request Parameter",
    INVALID_MEDIA_ID: "invalid media_id",
    INVALID_MEDIA_TYPE: "invalid media type",
    INVALID_FILE_SIZE: "invalid file size",
    INVALID_CHATID: "invalid chatid",
    CONTENT_TOO_LONG: "content size out of limit",
    RATE_LIMITED: "api freq out of limit",
    BAD_FRAME: "data format error",
}

MAX_CONTENT_BYTES = 20480  # stream / markdown / welcome text (§5.2)
MAX_FEEDBACK_ID_BYTES = 256


@dataclass
class Outcome:
    """What the server answers to one client request."""

    errcode: int = OK
    errmsg: str = "ok"
    body: Optional[dict] = None
    omit_req_id: bool = False  # 40058 acks come back without headers.req_id (§2.1)
    on_sent: Optional[Callable[[], None]] = field(default=None, compare=False)  # once sent or skipped


def ok(body: Optional[dict] = None) -> Outcome:
    return Outcome(body=body)


def fail(code: int, detail: str = "") -> Outcome:
    base = ERRORS.get(code, "error")
    return Outcome(code, f"{base}, {detail}" if detail else base)


def missing(path: str) -> Outcome:
    # Same wording as the observed ack: "missing field `body.image.media_id`. invalid Request Parameter"
    return Outcome(MISSING_FIELD, f"missing field `{path}`. invalid Request Parameter", omit_req_id=True)


# --- records -----------------------------------------------------------------------------------
class NotConnected(RuntimeError):
    """A push was asked for a bot with no live subscribed connection."""


@dataclass(frozen=True)
class Pushed:
    msgid: str
    req_id: str
    response_url: Optional[str]
    frame: Any = field(default=None, compare=False, repr=False)  # the exact frame sent


@dataclass
class Bubble:
    """One stream bubble as the user sees it: `text` is the last full snapshot."""

    stream_id: str
    text: str
    finished: bool
    frames: list[str]
    feedback_id: Optional[str]
    created_at: float
    updated_at: float
    req_id: str = ""
    expired: bool = False  # a later frame was refused (or silently dropped) as too late
    msg_items: list = field(default_factory=list)  # accepted, never rendered (§2.6)


@dataclass
class ConnectionRecord:
    """close_reason: client_closed (client sent a close frame), client_lost (TCP ended without one),
    dropped / closed (sim.drop without / with close frame), takeover (dropped after
    disconnected_event), idle_timeout, drop_after_frames, auth_failure (close_on_auth_failure),
    before_subscribe (before_subscribe="close"), server_stopped."""

    number: int
    bot_id: Optional[str]
    opened_at: float
    subscribed_at: Optional[float] = None
    closed_at: Optional[float] = None
    close_reason: Optional[str] = None
    kicked_at: Optional[float] = None  # when it got disconnected_event
