"""Token endpoints: OA `token` and `stable_token` (§1.7), WeCom `gettoken` (§2.4), and the OA
quota reset `clear_quota` / `clear_quota/v2` (§1.1: DoW calls v2 after a 45009)."""
from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs

from .errors import (
    INVALID_APPID,
    INVALID_CREDENTIAL,
    INVALID_GRANT_TYPE,
    MISSING_APPID,
    MISSING_SECRET,
    DATA_FORMAT_ERROR,
)
from .routes import Answer, Req, Route, fail

if TYPE_CHECKING:
    from .server import WeChatPlatformSimulator


def _oa_credentials(sim: "WeChatPlatformSimulator", appid, secret) -> Answer | None:
    if not appid:
        return fail(MISSING_APPID)
    if not secret:
        return fail(MISSING_SECRET)
    if appid not in sim.oa_apps:
        return fail(INVALID_APPID, f"appid {appid}")
    if sim.oa_apps[appid] != secret:
        return fail(INVALID_CREDENTIAL, "appsecret does not match the appid")
    return None


def _grant_answer(grant, ttl_left: float, with_errcode: bool) -> Answer:
    return Answer(fields={"access_token": grant.token, "expires_in": max(0, int(ttl_left))},
                  with_errcode=with_errcode)


def oa_token(sim: "WeChatPlatformSimulator", req: Req) -> Answer:
    if req.query.get("grant_type") != "client_credential":
        return fail(INVALID_GRANT_TYPE)
    appid, secret = req.query.get("appid"), req.query.get("secret")
    refused = _oa_credentials(sim, appid, secret)
    if refused is not None:
        return refused
    grant = sim._tokens.issue("oa", appid, secret, None, req.now, sim.token_ttl)
    return _grant_answer(grant, sim.token_ttl, with_errcode=False)


def oa_stable_token(sim: "WeChatPlatformSimulator", req: Req) -> Answer:
    body = req.json_object()
    if body is None:
        return fail(DATA_FORMAT_ERROR)
    if body.get("grant_type") != "client_credential":
        return fail(INVALID_GRANT_TYPE)
    appid, secret = body.get("appid"), body.get("secret")
    refused = _oa_credentials(sim, appid, secret)
    if refused is not None:
        return refused
    grant = None if body.get("force_refresh") else sim._tokens.current("oa", appid, secret, req.now)
    if grant is None:
        grant = sim._tokens.issue("oa", appid, secret, None, req.now, sim.token_ttl)
    return _grant_answer(grant, grant.expires_at - req.now, with_errcode=False)


def wecom_gettoken(sim: "WeChatPlatformSimulator", req: Req) -> Answer:
    corpid, secret = req.query.get("corpid"), req.query.get("corpsecret")
    if not corpid:
        return fail(MISSING_APPID, "corpid missing")
    if not secret:
        return fail(MISSING_SECRET, "corpsecret missing")
    apps = sim.wecom_apps.get(corpid)
    if apps is None:
        return fail(INVALID_APPID, f"invalid corpid {corpid}")
    if secret not in apps:
        return fail(INVALID_CREDENTIAL, "corpsecret does not belong to the corp")
    grant = sim._tokens.issue("wecom", corpid, secret, apps[secret], req.now, sim.token_ttl)
    return _grant_answer(grant, sim.token_ttl, with_errcode=True)


def clear_quota(sim: "WeChatPlatformSimulator", req: Req) -> Answer:
    body = req.json_object()
    if body is None:
        return fail(DATA_FORMAT_ERROR)
    if body.get("appid") != req.grant.account:
        return fail(INVALID_APPID, "appid is not the token's")
    sim._clear_quota(req.grant.account)
    return Answer()


def clear_quota_v2(sim: "WeChatPlatformSimulator", req: Req) -> Answer:
    # No token: appid and appsecret come in the query or as a form body.
    params = dict(req.query)
    try:
        form = parse_qs(req.raw.decode("utf-8"))
    except UnicodeDecodeError:
        form = {}
    for key, values in form.items():
        params.setdefault(key, values[0])
    appid, secret = params.get("appid"), params.get("appsecret")
    refused = _oa_credentials(sim, appid, secret)
    if refused is not None:
        return refused
    sim._clear_quota(appid)
    return Answer()


ROUTES = {
    "token": Route("GET", None, oa_token, metered=False),
    "stable_token": Route("POST", None, oa_stable_token, metered=False),
    "gettoken": Route("GET", None, wecom_gettoken, metered=False),
    "clear_quota": Route("POST", "oa", clear_quota, metered=False),
    "clear_quota/v2": Route("POST", None, clear_quota_v2, metered=False),
}
