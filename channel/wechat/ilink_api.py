"""A small client of Tencent's iLink bot API for personal WeChat (reference/personal-wechat.md §1).

HTTPS and JSON. The QR calls carry no token; every bot call is a POST with the bot token in
`Authorization` and `base_info` in the body. The answer's `ret` (or `errcode`) is 0 on success;
anything else raises IlinkError, whose `expired` says the token is stale (-14) and whose
`window_closed` says the reply window is closed or the bot is rate-limited (-2).

Every call has a timeout, downloads (common.fetch, from the configured CDN host only) a size cap
and a total deadline; the token is never logged.
"""
from __future__ import annotations

import base64
import json
import random
import secrets
from urllib.parse import quote, urlsplit

import requests

from channel.wechat import ilink_media
from common import fetch
from common.json_limits import loads_limited

EXPIRED = -14
WINDOW = -2
APP_ID = "bot"
CLIENT_VERSION = str(2 << 16)  # 2.0.0 as the platform encodes it (major<<16 | minor<<8 | patch)
CHANNEL_VERSION = "2.0.0"
CONNECT_TIMEOUT = 10.0
CALL_TIMEOUT = 20.0
# Upload media types (not the item types of a message: 2 image, 3 voice, 4 file, 5 video).
UPLOAD_IMAGE, UPLOAD_VIDEO, UPLOAD_FILE, UPLOAD_VOICE = 1, 2, 3, 4


class IlinkError(Exception):
    """`transient`: the call may work when tried again (the host was not reachable, took too
    long, or answered 5xx); a refusal (4xx, a non-zero ret) is not."""

    def __init__(self, ret: int | None, errmsg: str, path: str = "", transient: bool = False) -> None:
        super().__init__(f"{path}: ret {ret}: {errmsg}" if ret is not None else f"{path}: {errmsg}")
        self.ret = ret
        self.errmsg = errmsg
        self.path = path
        self.transient = transient

    @property
    def expired(self) -> bool:
        return self.ret == EXPIRED

    @property
    def window_closed(self) -> bool:
        return self.ret == WINDOW


def new_client_id() -> str:
    return secrets.token_hex(8)


class MediaTooLarge(IlinkError):
    def __init__(self, limit: int, path: str) -> None:
        super().__init__(None, f"the file is larger than {limit} bytes", path)
        self.limit = limit


def _base(url: str) -> str:
    url = str(url or "").strip()
    if url and "://" not in url:
        url = "https://" + url
    return url.rstrip("/") + "/"


class IlinkClient:
    def __init__(self, api_base: str, cdn_base: str, token: str = "") -> None:
        self.api_base = _base(api_base)
        self.cdn_base = _base(cdn_base)
        self.token = token
        self.http = requests.Session()
        self.http.trust_env = False  # the hosts are settings; no proxy from the environment

    # ------------------------------------------------------------------ plumbing
    @staticmethod
    def _app_headers() -> dict[str, str]:
        return {"iLink-App-Id": APP_ID, "iLink-App-ClientVersion": CLIENT_VERSION}

    def _bot_headers(self) -> dict[str, str]:
        uin = base64.b64encode(str(random.getrandbits(32)).encode()).decode()
        return {**self._app_headers(), "Content-Type": "application/json", "AuthorizationType": "ilink_bot_token",
                "Authorization": f"Bearer {self.token}", "X-WECHAT-UIN": uin}

    @staticmethod
    def _answer(r: requests.Response, path: str) -> dict:
        try:
            # Bounded nesting: a hostile answer must not raise RecursionError in the poll thread.
            data = loads_limited(r.content.decode("utf-8", "replace"), strict=False)
        except ValueError:
            raise IlinkError(None, f"HTTP {r.status_code}, not JSON: {r.text[:120]!r}", path,
                             transient=r.status_code >= 500) from None
        if not isinstance(data, dict):
            raise IlinkError(None, f"HTTP {r.status_code}, unexpected answer {str(data)[:120]}", path)
        code = data.get("ret") or data.get("errcode") or 0
        try:
            code = int(code)
        except (TypeError, ValueError):
            raise IlinkError(None, f"ret {code!r} is not a number", path) from None
        if code:
            raise IlinkError(code, str(data.get("errmsg") or ""), path)
        if r.status_code >= 400:
            raise IlinkError(None, f"HTTP {r.status_code}", path, transient=r.status_code >= 500)
        return data

    def post(self, path: str, body: dict, timeout: float = CALL_TIMEOUT) -> dict:
        payload = {**body, "base_info": {"channel_version": CHANNEL_VERSION}}
        try:
            r = self.http.post(self.api_base + path, data=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                               headers=self._bot_headers(), timeout=(CONNECT_TIMEOUT, timeout))
        except requests.Timeout:
            raise
        except requests.RequestException as e:
            raise IlinkError(None, f"not reachable: {type(e).__name__}", path, transient=True) from None
        return self._answer(r, path)

    def same_cdn(self, url: str) -> bool:
        """Whether `url` is on the configured CDN host: an address an update or an answer names
        is fetched (or posted to) only there, never wherever it points."""
        try:
            mine, theirs = urlsplit(self.cdn_base), urlsplit(url)
        except ValueError:
            return False
        return (theirs.scheme, (theirs.hostname or "").lower(), theirs.port) == (
            mine.scheme, (mine.hostname or "").lower(), mine.port)

    # ------------------------------------------------------------------ login
    def get_qrcode(self, local_tokens: list[str] | None = None) -> dict:
        """A new login QR. With `local_tokens` (tokens issued to this client before), asked by
        POST as the official client does, so WeChat can answer that the bot is bound already."""
        path = "ilink/bot/get_bot_qrcode"
        try:
            if local_tokens:
                r = self.http.post(self.api_base + path, params={"bot_type": 3},
                                   data=json.dumps({"local_token_list": local_tokens[:10]}).encode("utf-8"),
                                   headers={**self._app_headers(), "Content-Type": "application/json"},
                                   timeout=(CONNECT_TIMEOUT, CALL_TIMEOUT))
            else:
                r = self.http.get(self.api_base + path, params={"bot_type": 3}, headers=self._app_headers(),
                                  timeout=(CONNECT_TIMEOUT, CALL_TIMEOUT))
        except requests.RequestException as e:
            raise IlinkError(None, f"not reachable: {type(e).__name__}", path) from None
        data = self._answer(r, path)
        if not isinstance(data.get("qrcode"), str) or not data["qrcode"]:
            raise IlinkError(None, "no qrcode in the answer", path)
        return data

    def qrcode_status(self, qrcode: str, wait: float, host: str | None = None, verify_code: str = "") -> dict:
        """The QR's status; a server that holds the poll past `wait` reads as `wait`."""
        path = "ilink/bot/get_qrcode_status"
        url = (_base(host) if host else self.api_base) + path + "?qrcode=" + quote(qrcode, safe="")
        if verify_code:
            url += "&verify_code=" + quote(verify_code, safe="")
        try:
            r = self.http.get(url, headers=self._app_headers(), timeout=(CONNECT_TIMEOUT, wait + 5))
        except requests.Timeout:
            return {"status": "wait"}
        except requests.RequestException as e:
            raise IlinkError(None, f"not reachable: {type(e).__name__}", path) from None
        return self._answer(r, path)

    # ------------------------------------------------------------------ messages
    def get_updates(self, cursor: str, wait: float) -> dict:
        """One long poll; a client-side timeout reads as an empty answer."""
        try:
            return self.post("ilink/bot/getupdates", {"get_updates_buf": cursor or ""}, timeout=wait + 5)
        except requests.Timeout:
            return {"msgs": [], "get_updates_buf": cursor}

    def send_message(self, to_user: str, items: list[dict], context_token: str, client_id: str = "") -> None:
        """`client_id`: the same for every try of one message (a try whose answer was lost may
        have been delivered; the id lets WeChat tell the retry from a new message)."""
        msg = {"from_user_id": "", "to_user_id": to_user, "client_id": client_id or new_client_id(), "message_type": 2,
               "message_state": 2, "item_list": items, "context_token": context_token}
        try:
            self.post("ilink/bot/sendmessage", {"msg": msg})
        except requests.Timeout:
            raise IlinkError(None, "no answer in time", "ilink/bot/sendmessage", transient=True) from None

    # ------------------------------------------------------------------ media
    def download(self, media: dict, max_bytes: int, deadline: float = 60.0) -> bytes:
        """The encrypted bytes of a CDN file; MediaTooLarge past `max_bytes`."""
        path = "download"
        full = media.get("full_url") if isinstance(media.get("full_url"), str) else ""
        param = media.get("encrypt_query_param")
        if full and self.same_cdn(full):
            url = full
        elif isinstance(param, str) and param:
            url = self.cdn_base + "download?encrypted_query_param=" + quote(param, safe="")
        else:
            raise IlinkError(None, "the media reference has no address", path)
        # Through common.fetch: a size cap, a total deadline, a bounded number of downloads at
        # once, and every redirect checked (the configured CDN host is allowed even when internal).
        try:
            data, _ = fetch.fetch_bytes(url, max_bytes, extra_hosts=[urlsplit(self.cdn_base).hostname or ""],
                                        timeout=deadline)
        except fetch.FetchTooLarge:
            raise MediaTooLarge(max_bytes, path) from None
        except fetch.FetchHTTPError as e:
            raise IlinkError(None, f"HTTP {e.status}", path, transient=e.status >= 500 or e.status == 429) from None
        except fetch.FetchRefused as e:
            raise IlinkError(None, f"refused: {e}", path) from None
        except fetch.FetchError as e:  # no connection, a timeout, every download slot taken
            raise IlinkError(None, f"not received: {type(e).__name__}", path, transient=True) from None
        return data

    def upload(self, data: bytes, media_type: int, to_user: str) -> dict:
        """Encrypt and upload `data`; the `media` reference a message carries, plus the sizes
        the item needs (`_plain_size`, `_cipher_size`)."""
        key = ilink_media.new_key()
        cipher = ilink_media.encrypt(data, key)
        filekey = secrets.token_hex(16)
        answer = self.post("ilink/bot/getuploadurl", {
            "filekey": filekey, "media_type": media_type, "to_user_id": to_user, "rawsize": len(data),
            "rawfilemd5": ilink_media.md5_hex(data), "filesize": len(cipher), "no_need_thumb": True,
            "aeskey": key.hex(),
        })
        full = answer.get("upload_full_url") if isinstance(answer.get("upload_full_url"), str) else ""
        param = answer.get("upload_param")
        if full and self.same_cdn(full):
            url = full
        elif isinstance(param, str) and param:
            url = (self.cdn_base + "upload?encrypted_query_param=" + quote(param, safe="")
                   + "&filekey=" + quote(filekey, safe=""))
        else:
            raise IlinkError(None, "no upload address in the answer", "ilink/bot/getuploadurl")
        try:
            r = self.http.post(url, data=cipher, headers={"Content-Type": "application/octet-stream"},
                               timeout=(CONNECT_TIMEOUT, 60.0))
        except requests.RequestException as e:
            raise IlinkError(None, f"not reachable: {type(e).__name__}", "upload") from None
        if r.status_code >= 400:
            reason = r.headers.get("x-error-message") or f"HTTP {r.status_code}"
            raise IlinkError(None, f"refused: {reason}", "upload")
        download_param = r.headers.get("x-encrypted-param")
        if not download_param:
            raise IlinkError(None, "the CDN gave no x-encrypted-param", "upload")
        return {"encrypt_query_param": download_param, "aes_key": ilink_media.key_for_message(key),
                "encrypt_type": 1, "_plain_size": len(data), "_cipher_size": len(cipher)}
