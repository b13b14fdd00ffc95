"""A small client of the DingTalk OpenAPI (reference/channel-protocols.md §5.3, §5.4): access
token, JSON calls, the robot's file download and the media upload.

Written here rather than taken from dingtalk-stream (0.24.3, read for this): its HTTP helpers
read the API root once, at import, from an environment variable, have no timeouts, log a failure
and return None (so a refused reply looks like a sent one), and upload to a hard-coded host.
This client:

* takes its hosts from `dingtalk_api_base` and `dingtalk_oapi_base`;
* fetches the token under a lock, keeps it until a minute before it expires, and after a 401 /
  an invalid-token answer fetches a new one and retries the call once (a missing permission
  scope is not an invalid token: it is logged as such and not retried);
* counts a token-call refusal as bad credentials only for HTTP 400/401/403 (a 429 or 408 is
  passing trouble);
* raises DingTalkApiError with the HTTP status and DingTalk's code and message.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import requests

from common.log import logger
from common.token_cache import TokenCache

CALL_TIMEOUT = (5.0, 20.0)  # connect, read
TOKEN_PATH = "/v1.0/oauth2/accessToken"
# Codes of a token the platform no longer takes (the OpenAPI answers them with HTTP 401).
# Not `Forbidden.AccessDenied.AccessTokenPermissionDenied`: that one names a permission scope the
# app lacks, which a new token does not have either (see MISSING_SCOPE_CODE).
TOKEN_CODES = {"InvalidAuthentication"}
MISSING_SCOPE_CODE = "Forbidden.AccessDenied.AccessTokenPermissionDenied"
# HTTP statuses of the token call that mean the client id / secret were refused; others (429,
# 408, 5xx) are passing trouble, retried later.
CREDENTIAL_STATUSES = (400, 401, 403)
# Old-API errcodes of an invalid or expired token.
OAPI_TOKEN_ERRCODES = {40014, 42001, 88}


class DingTalkApiError(Exception):
    def __init__(self, status: int | None, code: Any, message: str, path: str = "") -> None:
        super().__init__(f"{path}: HTTP {status}: {code} {message}".strip() if path else f"HTTP {status}: {code} {message}")
        self.status = status
        self.code = code
        self.message = message
        self.path = path

    @property
    def token_refused(self) -> bool:
        if self.code == MISSING_SCOPE_CODE:
            return False
        return self.status == 401 or self.code in TOKEN_CODES or self.code in OAPI_TOKEN_ERRCODES


class CredentialsRefused(DingTalkApiError):
    """The client id / secret pair was refused: retrying cannot help."""


class DingTalkApi:
    def __init__(self, client_id: str, client_secret: str, api_base: str, oapi_base: str,
                 session: requests.Session | None = None) -> None:
        self.client_id = client_id
        self._secret = client_secret
        self.api_base = str(api_base).rstrip("/")
        self.oapi_base = str(oapi_base).rstrip("/")
        self.http = session or requests.Session()
        self.http.trust_env = False  # the hosts are settings; no proxy from the environment
        self._tokens = TokenCache(self._fetch_token, 60.0, "dingtalk", "an access token")

    # ------------------------------------------------------------------ token
    def token(self, stale: str = "") -> str:
        """The current token (common/token_cache.py)."""
        return self._tokens.get(stale)

    def _fetch_token(self) -> tuple[str, float]:
        try:
            r = self.http.post(self.api_base + TOKEN_PATH, json={"appKey": self.client_id, "appSecret": self._secret},
                               timeout=CALL_TIMEOUT)
        except requests.RequestException as e:
            raise DingTalkApiError(None, "", f"the access token could not be fetched: {e}", TOKEN_PATH) from None
        data = _json(r)
        if r.status_code != 200 or not data.get("accessToken"):
            code, message = data.get("code", ""), str(data.get("message") or r.text[:200])
            refused = r.status_code in CREDENTIAL_STATUSES or code == "invalidClientIdOrSecret"
            error = CredentialsRefused if refused else DingTalkApiError
            raise error(r.status_code, code, f"access token refused: {message} (check dingtalk_client_id and "
                                             f"dingtalk_client_secret, the AppKey and AppSecret of the app)", TOKEN_PATH)
        return str(data["accessToken"]), float(data.get("expireIn") or 7200)

    # ------------------------------------------------------------------ calls
    def call(self, path: str, payload: dict, method: str = "POST") -> dict:
        """One OpenAPI call (`/v1.0/...`) with the token in its header; JSON in and out."""
        def attempt(token: str) -> dict:
            try:
                r = self.http.request(method, self.api_base + path, json=payload, timeout=CALL_TIMEOUT,
                                      headers={"x-acs-dingtalk-access-token": token})
            except requests.RequestException as e:
                raise DingTalkApiError(None, "", f"not reachable: {e}", path) from None
            data = _json(r)
            if r.status_code >= 400:
                error = DingTalkApiError(r.status_code, data.get("code", ""), str(data.get("message") or r.text[:200]), path)
                if error.code == MISSING_SCOPE_CODE:
                    logger.error(f"[dingtalk] {path}: the app lacks a permission ({error.message}); grant it in the "
                                 f"DingTalk developer console (app -> permissions); a new token would not help")
                raise error
            return data

        return self._with_token(path, attempt)

    def upload(self, kind: str, name: str, data: bytes, mime: str) -> str:
        """Upload a file to the old API's `/media/upload`; returns its media_id."""
        path = "/media/upload"

        def attempt(token: str) -> str:
            try:
                r = self.http.post(self.oapi_base + path, params={"access_token": token, "type": kind},
                                   files={"media": (name, data, mime)}, timeout=(5.0, 60.0))
            except requests.RequestException as e:
                raise DingTalkApiError(None, "", f"not reachable: {e}", path) from None
            answer = _json(r)
            code = answer.get("errcode") or 0
            if r.status_code >= 400 or code or not answer.get("media_id"):
                raise DingTalkApiError(r.status_code, code, str(answer.get("errmsg") or r.text[:200]), path)
            return str(answer["media_id"])

        return self._with_token(path, attempt)

    def download_url(self, download_code: str, robot_code: str) -> str:
        """The temporary URL of a file a user sent the robot (`downloadCode` of the message)."""
        data = self.call("/v1.0/robot/messageFiles/download", {"downloadCode": download_code, "robotCode": robot_code})
        url = data.get("downloadUrl")
        if not isinstance(url, str) or not url:
            raise DingTalkApiError(200, "", f"no downloadUrl in {str(data)[:200]}", "/v1.0/robot/messageFiles/download")
        return url

    def _with_token(self, path: str, attempt: Callable[[str], Any]) -> Any:
        return self._tokens.use(path, attempt, lambda e: isinstance(e, DingTalkApiError) and e.token_refused)


def _json(r: requests.Response) -> dict:
    try:
        data = json.loads(r.content.decode("utf-8", "replace"), strict=False)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}
