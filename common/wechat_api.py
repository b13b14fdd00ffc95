"""A small client of the WeChat Official Account and WeCom server APIs (reference/
channel-protocols.md §1.7, §2.4, §3.1): access token, JSON calls, media upload and download.

Written here rather than taken from wechatpy's WeChatClient (1.8.18, read for this): its token
fetch and media download use hard-coded hosts (so no loopback simulator, no proxy host), the
token fetch has no timeout, and its retry after 40001/40014/42001 recurses without a bound when
the platform keeps refusing. This client:

* takes every host from a base-URL setting (`wechatmp_api_base`, `wechatcom_api_base`);
* fetches a token under a lock (one fetch at a time: the platform invalidates the previous token
  when a new one is issued), keeps it until a minute before it expires, and after 40001 / 40014 /
  42001 fetches a new one and retries the call once;
* gives every call a timeout and every download a size cap and a total deadline;
* raises WechatApiError with the errcode and errmsg, which the channels put in their logs.

JSON calls (the reply on every message: message/send, custom/send, kf/send_msg) go through urllib3
directly: requests' per-call work (preparing the request, merging settings, hooks) cost about 0.8 ms
of CPU per call here, a third of the daemon's CPU per message in bench/webhook.py. Uploads
(multipart) and downloads (streamed, capped) stay on requests.
"""
from __future__ import annotations

import json
from typing import Any, Callable
from urllib.parse import urlencode

import certifi
import requests
import urllib3

from common.deadline import Deadline
from common.token_cache import TokenCache

TOKEN_ERRORS = {40001, 40014, 42001}  # credential invalid / token invalid / token expired
CALL_TIMEOUT = (5.0, 20.0)  # connect, read
POOL_CONNECTIONS = 32  # kept-alive connections per host for JSON calls (one per worker thread at most)
DOWNLOAD_DEADLINE = 60.0


class WechatApiError(Exception):
    def __init__(self, errcode: int | None, errmsg: str, path: str = "") -> None:
        super().__init__(f"{path}: errcode {errcode}: {errmsg}" if path else f"errcode {errcode}: {errmsg}")
        self.errcode = errcode
        self.errmsg = errmsg
        self.path = path


class WechatApi:
    """`base` is the API root without `/cgi-bin` (e.g. https://qyapi.weixin.qq.com);
    `token_request` gives the token path and its query, e.g. ("gettoken", {"corpid": .., "corpsecret": ..})."""

    def __init__(self, base: str, token_request: tuple[str, dict[str, str]], label: str = "wechat",
                 session: requests.Session | None = None) -> None:
        self.base = str(base).rstrip("/") + "/cgi-bin/"
        self.token_path, self.token_query = token_request
        self.label = label
        self.http = session or requests.Session()
        self.http.trust_env = False  # the platform's host is a setting; no proxy from the environment
        # The same CA bundle as requests; no proxy from the environment either.
        self.pool = urllib3.PoolManager(maxsize=POOL_CONNECTIONS, ca_certs=certifi.where(), retries=False)
        self._tokens = TokenCache(self._fetch_token, 60.0, label, "an access token")

    # ------------------------------------------------------------------ token
    def token(self, stale: str = "") -> str:
        """The current token (common/token_cache.py)."""
        return self._tokens.get(stale)

    def _fetch_token(self) -> tuple[str, float]:
        try:
            r = self.http.get(self.base + self.token_path, params=self.token_query, timeout=CALL_TIMEOUT)
            data = r.json()
        except (requests.RequestException, ValueError) as e:
            raise WechatApiError(None, f"the access token could not be fetched: {e}", self.token_path) from None
        if not isinstance(data, dict) or data.get("errcode") not in (None, 0) or not data.get("access_token"):
            code = data.get("errcode") if isinstance(data, dict) else None
            message = data.get("errmsg") if isinstance(data, dict) else str(data)[:200]
            raise WechatApiError(code, f"access token refused: {message} (check the app id / corp id and "
                                       f"secret)", self.token_path)
        return str(data["access_token"]), float(data.get("expires_in") or 7200)

    # ------------------------------------------------------------------ calls
    def call(self, path: str, payload: dict | None = None, *, params: dict | None = None,
             files: dict | None = None, method: str = "POST") -> dict:
        """One API call with the token; JSON in and out. Retried once with a new token when the
        platform says the token is invalid or expired."""
        return self._with_token(path, lambda token: self._send(path, token, payload, params, files, method))

    def download(self, path: str, params: dict, max_bytes: int) -> tuple[bytes, str]:
        """The bytes of a media file (`media/get`) and its content type; WechatApiError when the
        platform answers JSON (an error) or the file is larger than max_bytes."""
        return self._with_token(path, lambda token: self._download(path, token, params, max_bytes))

    def _with_token(self, path: str, attempt: Callable[[str], Any]) -> Any:
        return self._tokens.use(path, attempt, lambda e: isinstance(e, WechatApiError) and e.errcode in TOKEN_ERRORS)

    def _send(self, path: str, token: str, payload: dict | None, params: dict | None, files: dict | None,
              method: str) -> dict:
        query = {**(params or {}), "access_token": token}
        if files:
            try:
                r = self.http.request(method, self.base + path, params=query, files=files, timeout=CALL_TIMEOUT)
            except requests.RequestException as e:
                raise WechatApiError(None, f"not reachable: {e}", path) from None
            status, content = r.status_code, r.content
        else:
            body = None if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
            try:
                r3 = self.pool.request(method, f"{self.base}{path}?{urlencode(query)}", body=body,
                                       headers={"Content-Type": "application/json; charset=utf-8"} if body else None,
                                       timeout=urllib3.Timeout(connect=CALL_TIMEOUT[0], read=CALL_TIMEOUT[1]))
            except urllib3.exceptions.HTTPError as e:
                raise WechatApiError(None, f"not reachable: {e}", path) from None
            status, content = r3.status, r3.data
        text = content.decode("utf-8", "replace")
        try:
            data = json.loads(text, strict=False)
        except ValueError:
            raise WechatApiError(None, f"HTTP {status}, not JSON: {text[:200]!r}", path) from None
        if not isinstance(data, dict):
            raise WechatApiError(None, f"HTTP {status}, unexpected answer {str(data)[:200]}", path)
        code = int(data.get("errcode") or 0)
        if code:
            raise WechatApiError(code, str(data.get("errmsg") or ""), path)
        if status >= 400:
            raise WechatApiError(None, f"HTTP {status}", path)
        return data

    def _download(self, path: str, token: str, params: dict, max_bytes: int) -> tuple[bytes, str]:
        chunks, size = [], 0
        with Deadline(DOWNLOAD_DEADLINE) as deadline:  # shuts the socket however slowly it trickles
            try:
                with self.http.get(self.base + path, params={**params, "access_token": token}, timeout=CALL_TIMEOUT,
                                   stream=True) as r:
                    deadline.attach(r)
                    kind, status = r.headers.get("Content-Type", ""), r.status_code
                    for chunk in r.iter_content(64 * 1024):
                        size += len(chunk)
                        if size > max_bytes:
                            raise WechatApiError(None, f"the file is larger than {max_bytes} bytes", path)
                        chunks.append(chunk)
            except requests.RequestException as e:
                if deadline.expired:
                    raise WechatApiError(None, f"the download took longer than {DOWNLOAD_DEADLINE:g} s", path) from None
                raise WechatApiError(None, f"not reachable: {e}", path) from None
        data = b"".join(chunks)
        if "json" in kind or "text/plain" in kind or data[:1] == b"{":
            try:
                answer = json.loads(data.decode("utf-8", "replace"), strict=False)
            except ValueError:
                answer = None
            if isinstance(answer, dict) and answer.get("errcode"):
                raise WechatApiError(int(answer["errcode"]), str(answer.get("errmsg") or ""), path)
        if status >= 400:
            raise WechatApiError(None, f"HTTP {status}", path)
        return data, kind
