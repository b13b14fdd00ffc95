"""WeCom customer service (微信客服) message store: kf/sync_msg and the kf/send_msg budget (reference §3).

- Messages live per (corpid, open_kfid) in arrival order. A cursor is an opaque string naming a
  position after some message; the same position always gets the same cursor, so a client that
  stores it and a client that asks again agree.
- sync_msg returns what follows the cursor (all of the last 3 days without one), `limit` at a
  time, `has_more` = 1 while more follow. Messages sent through send_msg are never returned.
- A sync token comes from a kf_msg_or_event callback and is good for 10 minutes, for that
  open_kfid only. Without a token the call is served (the reference's stricter rate limit for
  token-less calls is not modelled; each call records whether a token was given).
- The send budget per (open_kfid, external_userid): a customer message (origin 3) opens 48 h and
  5 replies; the 6th reply is 95001, a reply after 48 h 95002, a reply to someone who never
  wrote 95024.
"""
from __future__ import annotations

import itertools
import secrets
from dataclasses import dataclass, field
from typing import Optional

from .errors import (
    CUSTOMER_WINDOW,
    INVALID_PARAMETER,
    KF_COUNT_LIMIT,
    KF_INVALID_OPEN_KFID,
    KF_INVALID_SYNC_TOKEN,
    KF_MAX_LIMIT,
    KF_NO_CUSTOMER_MESSAGE,
    KF_OPEN_KFID_NOT_FOUND,
    KF_REPLIES_PER_MESSAGE,
    KF_SYNC_TOKEN_TTL,
    KF_TIME_LIMIT,
    OK,
    TEMP_MEDIA_TTL,
)

ORIGIN_CUSTOMER, ORIGIN_SYSTEM, ORIGIN_SERVICER = 3, 4, 5


@dataclass
class _Budget:
    last_customer_at: float
    replies: int = 0


@dataclass
class _Account:
    corpid: str
    open_kfid: str
    items: list[tuple[int, dict]] = field(default_factory=list)  # (position, item)


class KfStore:
    def __init__(self) -> None:
        self._accounts: dict[tuple[str, str], _Account] = {}
        self._positions = itertools.count(1)
        self._cursors: dict[str, tuple[str, str, int]] = {}  # cursor -> (corpid, open_kfid, position)
        self._cursor_of: dict[tuple[str, str, int], str] = {}
        self._tokens: dict[str, tuple[str, str, float]] = {}  # sync token -> (corpid, open_kfid, issued)
        self._budgets: dict[tuple[str, str, str], _Budget] = {}

    # --- accounts and messages ----------------------------------------------------------------
    def add_account(self, corpid: str, open_kfid: str) -> None:
        self._accounts.setdefault((corpid, open_kfid), _Account(corpid, open_kfid))

    def known(self, corpid: str, open_kfid: str) -> bool:
        return (corpid, open_kfid) in self._accounts

    def push(self, corpid: str, open_kfid: str, entry: dict) -> None:
        """Store one message as the platform received it; a customer message opens the budget."""
        self.add_account(corpid, open_kfid)
        self._accounts[(corpid, open_kfid)].items.append((next(self._positions), entry))
        if entry.get("origin") == ORIGIN_CUSTOMER:
            key = (corpid, open_kfid, entry["external_userid"])
            self._budgets[key] = _Budget(float(entry["send_time"]))

    def issue_token(self, corpid: str, open_kfid: str, now: float) -> str:
        token = "ENC" + secrets.token_urlsafe(33)
        self._tokens[token] = (corpid, open_kfid, now)
        return token

    # --- sync_msg --------------------------------------------------------------------------------
    def _cursor(self, corpid: str, open_kfid: str, position: int) -> str:
        key = (corpid, open_kfid, position)
        cursor = self._cursor_of.get(key)
        if cursor is None:
            cursor = secrets.token_urlsafe(12)
            self._cursor_of[key], self._cursors[cursor] = cursor, key
        return cursor

    def sync(self, corpid: str, body: dict, now: float) -> tuple[int, str, dict]:
        """(errcode, detail, answer fields) for one sync_msg body."""
        open_kfid = body.get("open_kfid")
        if not isinstance(open_kfid, str) or not open_kfid.startswith("wk"):
            return KF_INVALID_OPEN_KFID, f"open_kfid {open_kfid!r}", {}
        account = self._accounts.get((corpid, open_kfid))
        if account is None:
            return KF_OPEN_KFID_NOT_FOUND, open_kfid, {}
        token = body.get("token")
        if token not in (None, ""):
            issued = self._tokens.get(token) if isinstance(token, str) else None
            if issued is None or issued[:2] != (corpid, open_kfid):
                return KF_INVALID_SYNC_TOKEN, "unknown token or another open_kfid's", {}
            if now - issued[2] > KF_SYNC_TOKEN_TTL:
                return KF_INVALID_SYNC_TOKEN, "token older than 10 minutes", {}
        limit = body.get("limit", KF_MAX_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= KF_MAX_LIMIT:
            return INVALID_PARAMETER, f"limit {limit!r} (1..{KF_MAX_LIMIT})", {}
        if body.get("voice_format", 0) not in (0, 1):
            return INVALID_PARAMETER, f"voice_format {body.get('voice_format')!r}", {}
        cursor = body.get("cursor")
        after = 0
        if cursor not in (None, ""):
            where = self._cursors.get(cursor) if isinstance(cursor, str) else None
            if where is None or where[:2] != (corpid, open_kfid):
                return INVALID_PARAMETER, "invalid cursor", {}
            after = where[2]
        fresh = [(pos, item) for pos, item in account.items
                 if pos > after and now - float(item["send_time"]) <= TEMP_MEDIA_TTL]
        page = fresh[:limit]
        end = page[-1][0] if page else after
        return OK, "", {
            "next_cursor": self._cursor(corpid, open_kfid, end),
            "has_more": 1 if len(fresh) > len(page) else 0,
            "msg_list": [dict(item) for _, item in page],
        }

    # --- send_msg budget -----------------------------------------------------------------------
    def spend(self, corpid: str, open_kfid: str, external_userid: str, now: float) -> tuple[int, str]:
        """Take one reply from the customer's budget, or say why not."""
        budget = self._budgets.get((corpid, open_kfid, external_userid))
        if budget is None:
            return KF_NO_CUSTOMER_MESSAGE, external_userid
        if now - budget.last_customer_at > CUSTOMER_WINDOW:
            return KF_TIME_LIMIT, ""
        if budget.replies >= KF_REPLIES_PER_MESSAGE:
            return KF_COUNT_LIMIT, ""
        budget.replies += 1
        return OK, ""


def item(open_kfid: str, msgtype: str, payload: dict, *, origin: int, send_time: int, msgid: str,
         external_userid: Optional[str] = None, servicer_userid: Optional[str] = None) -> dict:
    """One msg_list entry (§3.1 item 3). System events carry their ids inside `event` only."""
    entry: dict = {"msgid": msgid}
    if origin != ORIGIN_SYSTEM:
        entry["open_kfid"] = open_kfid
        entry["external_userid"] = external_userid
    entry["send_time"] = send_time
    entry["origin"] = origin
    if servicer_userid is not None:
        entry["servicer_userid"] = servicer_userid
    entry["msgtype"] = msgtype
    entry[msgtype] = dict(payload)
    return entry
