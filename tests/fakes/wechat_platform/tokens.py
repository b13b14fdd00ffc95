"""Access tokens of both platforms (reference §1.7, §2.4).

One live token per credential: asking again issues a new token and the old one answers 40001
("not latest") from then on, so a client that keeps two tokens, or refreshes from two threads
without a lock, sees it fail. An expired token answers 42001, a token never issued 40014.
OA tokens are keyed by appid, WeCom tokens by (corpid, corpsecret): each WeCom app has its own.
"""
from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Optional

from .errors import INVALID_CREDENTIAL, INVALID_TOKEN, MISSING_TOKEN, OK, TOKEN_EXPIRED


@dataclass
class Grant:
    token: str
    kind: str  # "oa" | "wecom"
    account: str  # appid or corpid
    secret: str
    agentid: Optional[int]  # WeCom app; None for OA
    issued_at: float
    expires_at: float
    state: str = "live"  # live | superseded (a newer token exists) | revoked

    @property
    def key(self) -> tuple:
        return (self.kind, self.account) if self.kind == "oa" else (self.kind, self.account, self.secret)


class TokenBook:
    def __init__(self) -> None:
        self._grants: dict[str, Grant] = {}
        self._current: dict[tuple, Grant] = {}

    def issue(self, kind: str, account: str, secret: str, agentid: Optional[int], now: float,
              ttl: float) -> Grant:
        # 43 characters of the URL-safe alphabet do not look like the real 512-char tokens, and
        # need not: clients must treat the token as opaque.
        grant = Grant(secrets.token_urlsafe(48), kind, account, secret, agentid, now, now + ttl)
        old = self._current.get(grant.key)
        if old is not None and old.state == "live":
            old.state = "superseded"
        self._current[grant.key] = grant
        self._grants[grant.token] = grant
        return grant

    def current(self, kind: str, account: str, secret: str, now: float) -> Optional[Grant]:
        """The live unexpired token of a credential, for stable_token without force_refresh."""
        key = (kind, account) if kind == "oa" else (kind, account, secret)
        grant = self._current.get(key)
        if grant is None or grant.state != "live" or now >= grant.expires_at:
            return None
        return grant

    def check(self, token: Optional[str], now: float) -> tuple[int, Optional[Grant]]:
        if not token:
            return MISSING_TOKEN, None
        grant = self._grants.get(token)
        if grant is None:
            return INVALID_TOKEN, None
        if grant.state != "live":
            return INVALID_CREDENTIAL, grant
        if now >= grant.expires_at:
            return TOKEN_EXPIRED, grant
        return OK, grant

    def expire(self, now: float, account: Optional[str] = None) -> int:
        """Make the live tokens (of one appid/corpid, or all) expired from now: 42001 until refetched."""
        count = 0
        for grant in self._current.values():
            if grant.state == "live" and (account is None or grant.account == account):
                grant.expires_at = min(grant.expires_at, now)
                count += 1
        return count

    def revoke(self, account: Optional[str] = None) -> int:
        """As if the secret was reset or another server fetched a token: 40001 until refetched."""
        count = 0
        for grant in self._current.values():
            if grant.state == "live" and (account is None or grant.account == account):
                grant.state = "revoked"
                count += 1
        return count
