"""A small client of the Feishu OpenAPI (reference/channel-protocols.md §4.4): the tenant access
token, JSON calls, uploads and resource downloads.

Written here rather than using lark-oapi's `lark.Client` (read for this, 1.7.5): its token cache
has no lock (concurrent first calls each fetch a token), a call refused with an invalid-token
code (99991663 and friends) is returned as an error and never retried with a fresh token, its
resource download has no size cap, and `bot/v3/info` has no typed call. This client:

* takes the host from `feishu_api_base` (a loopback simulator in tests);
* fetches the tenant token under a lock, keeps it until 5 minutes before it expires, and after
  99991661 / 99991663 / 99991668 fetches a new one and retries the call once;
* gives every call a timeout and every download a size cap and a total deadline;
* raises FeishuApiError with the code and msg, which the channel puts in its log.
"""
from __future__ import annotations

import json
from typing import Any, Callable

import requests

from common.deadline import Deadline
from common.token_cache import TokenCache

TOKEN_PATH = "/open-apis/auth/v3/tenant_access_token/internal"
TOKEN_ERRORS = {99991661, 99991663, 99991668}  # token missing / invalid tenant token / invalid token
TOKEN_MARGIN = 300.0  # seconds before its expiry a token is replaced
CALL_TIMEOUT = (5.0, 20.0)  # connect, read
DOWNLOAD_DEADLINE = 60.0


class FeishuApiError(Exception):
    def __init__(self, code: int | None, msg: str, path: str = "") -> None:
        super().__init__(f"{path}: code {code}: {msg}" if path else f"code {code}: {msg}")
        self.code = code
        self.msg = msg
        self.path = path


class FeishuApi:
    def __init__(self, base: str, app_id: str, app_secret: str, session: requests.Session | None = None) -> None:
        self.base = str(base).rstrip("/")
        self.app_id = app_id
        self.app_secret = app_secret
        self.http = session or requests.Session()
        self.http.trust_env = False  # the host is a setting; no proxy from the environment
        self._tokens = TokenCache(self._fetch_token, TOKEN_MARGIN, "feishu", "a tenant access token")

    # ------------------------------------------------------------------ token
    def token(self, stale: str = "") -> str:
        """The current tenant token (common/token_cache.py)."""
        return self._tokens.get(stale)

    def _fetch_token(self) -> tuple[str, float]:
        try:
            r = self.http.post(self.base + TOKEN_PATH, json={"app_id": self.app_id, "app_secret": self.app_secret},
                               timeout=CALL_TIMEOUT)
            data = r.json()
        except (requests.RequestException, ValueError) as e:
            raise FeishuApiError(None, f"the tenant access token could not be fetched: {e}", TOKEN_PATH) from None
        if not isinstance(data, dict) or data.get("code") != 0 or not data.get("tenant_access_token"):
            code = data.get("code") if isinstance(data, dict) else None
            msg = data.get("msg") if isinstance(data, dict) else str(data)[:200]
            raise FeishuApiError(code, f"tenant access token refused: {msg}", TOKEN_PATH)
        return str(data["tenant_access_token"]), float(data.get("expire") or 7200)

    # ------------------------------------------------------------------ calls
    def call(self, method: str, path: str, payload: dict | None = None, *, params: dict | None = None,
             files: dict | None = None, form: dict | None = None, timeout: tuple[float, float] = CALL_TIMEOUT) -> dict:
        """One API call with the token; the answer's JSON (code 0). Retried once with a new token
        when the platform refuses the token."""
        return self._with_token(path, lambda token: self._send(method, path, token, payload, params, files, form,
                                                               timeout))

    def download(self, path: str, params: dict, max_bytes: int) -> bytes:
        """The bytes of a resource; FeishuApiError when the platform answers an error or the
        file is larger than max_bytes."""
        return self._with_token(path, lambda token: self._download(path, token, params, max_bytes))

    def _with_token(self, path: str, attempt: Callable[[str], Any]) -> Any:
        return self._tokens.use(path, attempt, lambda e: isinstance(e, FeishuApiError) and e.code in TOKEN_ERRORS)

    def _send(self, method: str, path: str, token: str, payload: dict | None, params: dict | None,
              files: dict | None, form: dict | None, timeout: tuple[float, float]) -> dict:
        headers = {"Authorization": f"Bearer {token}"}
        try:
            if files:
                r = self.http.request(method, self.base + path, params=params, data=form, files=files,
                                      headers=headers, timeout=timeout)
            else:
                body = None if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
                if body is not None:
                    headers["Content-Type"] = "application/json; charset=utf-8"
                r = self.http.request(method, self.base + path, params=params, data=body, headers=headers,
                                      timeout=timeout)
        except requests.RequestException as e:
            raise FeishuApiError(None, f"not reachable: {e}", path) from None
        return _answer(r.status_code, r.content, path)

    def _download(self, path: str, token: str, params: dict, max_bytes: int) -> bytes:
        chunks, size = [], 0
        with Deadline(DOWNLOAD_DEADLINE) as deadline:  # shuts the socket however slowly it trickles
            try:
                with self.http.get(self.base + path, params=params, headers={"Authorization": f"Bearer {token}"},
                                   timeout=CALL_TIMEOUT, stream=True) as r:
                    deadline.attach(r)
                    kind, status = r.headers.get("Content-Type", ""), r.status_code
                    for chunk in r.iter_content(64 * 1024):
                        size += len(chunk)
                        if size > max_bytes:
                            raise FeishuApiError(None, f"the file is larger than {max_bytes} bytes", path)
                        chunks.append(chunk)
            except requests.RequestException as e:
                if deadline.expired:
                    raise FeishuApiError(None, f"the download took longer than {DOWNLOAD_DEADLINE:g} s", path) from None
                raise FeishuApiError(None, f"not reachable: {e}", path) from None
        data = b"".join(chunks)
        if status >= 400 or "json" in kind:
            _answer(status, data, path)  # raises the platform's error
        return data


def _answer(status: int, content: bytes, path: str) -> dict:
    try:
        data = json.loads(content.decode("utf-8", "replace"), strict=False)
    except ValueError:
        raise FeishuApiError(None, f"HTTP {status}, not JSON: {content[:200]!r}", path) from None
    if not isinstance(data, dict):
        raise FeishuApiError(None, f"HTTP {status}, unexpected answer {str(data)[:200]}", path)
    code = data.get("code")
    if code not in (0, None):
        raise FeishuApiError(int(code) if isinstance(code, int) else None, str(data.get("msg") or ""), path)
    if status >= 400:
        raise FeishuApiError(None, f"HTTP {status}", path)
    return data
