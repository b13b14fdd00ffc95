"""A small client of the web-WeChat protocol (reference/personal-wechat.md §4.1), for the legacy
`wx_protocol: itchat` path. Written for this project: no itchat code, only the protocol's steps,
endpoints, field names and constants.

The parsers are plain functions (tested on their own); `WebWxClient` does the HTTP. Every host
after the login comes from the `redirect_uri` WeChat answers with, so pointing `base_url` at a
simulator keeps all traffic local (a host that is not one of WeChat's own gives file and sync
URLs equal to the API URL, as in §4.1 step 4).

`LoginInfo` is everything a restart needs to go on without a scan (hot_reload): keys, cookies,
hosts and the sync key. It is plain data for the state store (never a pickle).
"""
from __future__ import annotations

import hashlib
import json
import mimetypes
import random
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import quote

import requests

APP_ID = "wx782c26e4c19acffb"
LOGIN_PAGE = "https://wx.qq.com/cgi-bin/mmwebwx-bin/webwxnewloginpage?mod=desktop"
QR_LINK = "https://login.weixin.qq.com/l/{uuid}"  # what the phone scans; nothing is fetched for it
USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/120.0 Safari/537.36")
# The UOS desktop headers the ticket request carries (§4.1 step 4).
UOS_CLIENT_VERSION = "2.0.0"
UOS_EXTSPAM = ("Go8FCIkFEokFCggwMDAwMDAwMRAGGvAESySibk50w5Wb3uTl2c2h64jVVrV7gNs06GFlWplHQbY/5FfiO++1yH4ykCyNPWKXmco+"
               "wfQzK5R98D3so7rJ5LmGFvBLjGceleySrc3SOf2Pc1gVehzJgODeS0lDL3/I/0S2SSE98YgKleq6Uqx6ndTy9yaL9qFxJL7eiA/R"
               "3SEfTaW1SBoSITIu+EEkXff+Pv8NHOk7N57rcGk1w0ZzRrQDkXTOXFN2iHYIzAAZPIOY45Lsh+A4slpgnDiaOvRtlQYCt97nmPLu"
               "TipOJ8Qc5pM7ZsOsAPPrCQL7nK0I7aPrFDF0q4ziUUKettzW8MrAaiVfmbD1/VkmLNVqqZVvBCtRblXb5FHmtS8FxnqCzYP4WFvz"
               "3T0TcrOqwLX1M/DQvcHaGGw0B0y4bZMs7lVScGBFxMj3vbFi2SRKbKhaitxHfYHAOAa0X7/MSS0RNAjdwoyGHeOepXOKY+h3iHeq"
               "CvgOH6LOifdHf/1aaZNwSkGotYnYScW8Yx63LnSwba7+hESrtPa/huRmB9KWvMCKbDThL/nne14hnL277EDCSocPu3rOSYjuB9gK"
               "SOdVmWsj9Dxb/iZIe+S6AiG29Esm+/eUacSba0k8wn5HhHg9d4tIcixrxveflc8vi2/wNQGVFNsGO6tB5WF0xf/plngOvQ1/ivGV"
               "/C1Qpdhzznh0ExAVJ6dwzNg7qIEBaw+BzTJTUuRcPk92Sn6QDn2Pu3mpONaEumacjW4w6ipPnPw+g2TfywJjeEcpSZaP4Q3YV5HG"
               "8D6UjWA4GSkBKculWpdCMadx0usMomsSS/74QgpYqcPkmamB4nVv1JxczYITIqItIKjD35IGKAUwAA==")
CHUNK = 524288  # upload chunk size (§4.1 step 7: chunks for files over 512 KiB)
# Hosts with separate file and push hosts (§4.1 step 4); any other host serves all three.
_KNOWN_HOSTS = (
    ("wx2.qq.com", "file.wx2.qq.com", "webpush.wx2.qq.com"),
    ("wx8.qq.com", "file.wx8.qq.com", "webpush.wx8.qq.com"),
    ("qq.com", "file.wx.qq.com", "webpush.wx.qq.com"),
    ("web2.wechat.com", "file.web2.wechat.com", "webpush.web2.wechat.com"),
    ("wechat.com", "file.web.wechat.com", "webpush.web.wechat.com"),
)
LOGGED_OUT_CODES = ("1100", "1101", "1102")


class WebWxError(Exception):
    """A call that failed. `transient`: trying again later may work (network, 5xx)."""

    def __init__(self, message: str, *, transient: bool = False, ret: Any = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.ret = ret


class LoggedOut(WebWxError):
    """WeChat ended this login (synccheck retcode 1100/1101/1102, or a call's Ret 1101)."""


class MediaTooLarge(WebWxError):
    pass


class Malformed(WebWxError):
    """An answer that is not in the protocol's shape."""


# ---------------------------------------------------------------- parsers
def parse_uuid(text: str) -> str | None:
    """The QR uuid of a jslogin answer (`window.QRLogin.code = 200; window.QRLogin.uuid = "..";`)."""
    found = re.search(r'window\.QRLogin\.code\s*=\s*(\d+);\s*window\.QRLogin\.uuid\s*=\s*"([^"\s]+)"', text or "")
    if found and found.group(1) == "200":
        return found.group(2)
    return None


def parse_login_poll(text: str) -> tuple[str, str | None]:
    """(code, redirect_uri) of a login poll answer: 408 waiting, 201 scanned, 200 confirmed
    (with the redirect), anything else: the QR is done for. A body without a code gives "400"."""
    found = re.search(r"window\.code\s*=\s*(\d+)", text or "")
    if not found:
        return "400", None
    code = found.group(1)
    redirect = None
    if code == "200":
        link = re.search(r'window\.redirect_uri\s*=\s*"(\S+?)"', text)
        if not link:
            return "400", None
        redirect = link.group(1)
    return code, redirect


def parse_ticket(text: str) -> dict[str, str]:
    """The fields of the ticket page's XML (`<error><ret>0</ret><skey>..</skey>...`)."""
    fields = {}
    for name in ("ret", "message", "skey", "wxsid", "wxuin", "pass_ticket"):
        found = re.search(f"<{name}>(.*?)</{name}>", text or "", re.S)
        if found:
            fields[name] = found.group(1).strip()
    return fields


def api_hosts(redirect_uri: str) -> tuple[str, str, str]:
    """(url, file_url, sync_url) for a confirmed login's redirect_uri."""
    url = redirect_uri[: redirect_uri.rfind("/")]
    for host, file_host, push_host in _KNOWN_HOSTS:
        if host in url:
            return url, f"https://{file_host}/cgi-bin/mmwebwx-bin", f"https://{push_host}/cgi-bin/mmwebwx-bin"
    return url, url, url


def parse_synccheck(text: str) -> tuple[str, str]:
    """(retcode, selector) of `window.synccheck={retcode:"0",selector:"2"}`. Raises Malformed."""
    found = re.search(r'window\.synccheck\s*=\s*\{\s*retcode\s*:\s*"(\d+)"\s*,\s*selector\s*:\s*"(\d+)"\s*\}', text or "")
    if not found:
        raise Malformed(f"synccheck answer not understood: {str(text)[:80]!r}")
    return found.group(1), found.group(2)


def sync_key_text(sync_key: Any) -> str:
    """`Key_Val|Key_Val` of a SyncKey object (what synccheck takes)."""
    items = sync_key.get("List") if isinstance(sync_key, dict) else None
    if not isinstance(items, list):
        return ""
    return "|".join(f"{i.get('Key')}_{i.get('Val')}" for i in items if isinstance(i, dict))


def parse_json(data: bytes, what: str) -> dict:
    """A JSON object, or Malformed (a truncated body, an HTML error page, nesting too deep)."""
    try:
        value = json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        raise Malformed(f"{what}: the answer is not JSON ({data[:60]!r})") from None
    if not isinstance(value, dict):
        raise Malformed(f"{what}: the answer is a {type(value).__name__}, not an object")
    return value


def base_ret(answer: dict) -> Any:
    response = answer.get("BaseResponse")
    return response.get("Ret") if isinstance(response, dict) else None


def new_device_id() -> str:
    return "e" + "".join(random.choice("0123456789") for _ in range(15))


def new_client_msg_id() -> str:
    return str(int(time.time() * 1e4)) + str(random.randint(0, 9999)).zfill(4)


# ---------------------------------------------------------------- the login
@dataclass
class LoginInfo:
    url: str
    file_url: str
    sync_url: str
    skey: str = field(repr=False)
    sid: str = field(repr=False)
    uin: str
    pass_ticket: str = field(repr=False)
    device_id: str
    cookies: dict = field(default_factory=dict, repr=False)
    user_name: str = ""
    nick_name: str = ""
    sync_key: dict = field(default_factory=dict)
    sync_check_key: dict = field(default_factory=dict)

    def base_request(self) -> dict:
        return {"Uin": int(self.uin) if str(self.uin).isdigit() else self.uin, "Sid": self.sid, "Skey": self.skey,
                "DeviceID": self.device_id}

    def to_record(self) -> dict:
        return asdict(self)

    @classmethod
    def from_record(cls, record: Any) -> "LoginInfo | None":
        if not isinstance(record, dict):
            return None
        try:
            info = cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record})
        except TypeError:
            return None
        if not (info.url and info.sid and info.skey and info.uin):
            return None
        return info


class WebWxClient:
    def __init__(self, base_url: str, *, timeout: float = 35.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()
        self.http.trust_env = False  # never an environment proxy for a login session
        self.http.headers["User-Agent"] = USER_AGENT
        self.info: LoginInfo | None = None

    # ------------------------------------------------------------ plumbing
    def _request(self, method: str, url: str, what: str, *, timeout: float | None = None, **kwargs) -> requests.Response:
        try:
            answer = self.http.request(method, url, timeout=timeout or self.timeout, **kwargs)
        except requests.RequestException as e:
            raise WebWxError(f"{what}: {type(e).__name__}", transient=True) from None
        if answer.status_code >= 500 or answer.status_code == 429:
            raise WebWxError(f"{what}: HTTP {answer.status_code}", transient=True)
        if answer.status_code >= 400:
            raise WebWxError(f"{what}: HTTP {answer.status_code}")
        return answer

    def _post_json(self, url: str, what: str, body: dict, **kwargs) -> dict:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        answer = self._request("POST", url, what, data=data,
                               headers={"Content-Type": "application/json;charset=UTF-8"}, **kwargs)
        result = parse_json(answer.content, what)
        ret = base_ret(result)
        if ret in (1100, 1101, 1102):
            raise LoggedOut(f"{what}: WeChat ended the login (Ret {ret})", ret=ret)
        return result

    def _checked(self, answer: dict, what: str) -> dict:
        ret = base_ret(answer)
        if ret != 0:
            raise WebWxError(f"{what}: WeChat answered Ret {ret}", ret=ret)
        return answer

    def _info(self) -> LoginInfo:
        if self.info is None:
            raise WebWxError("not logged in", transient=True)
        return self.info

    # ------------------------------------------------------------ QR login
    def new_uuid(self) -> str:
        answer = self._request("GET", f"{self.base_url}/jslogin", "jslogin",
                               params={"appid": APP_ID, "fun": "new", "redirect_uri": LOGIN_PAGE, "lang": "zh_CN"})
        uuid = parse_uuid(answer.text)
        if uuid is None:
            raise WebWxError(f"jslogin gave no QR uuid: {answer.text[:80]!r}", transient=True)
        return uuid

    def push_login(self, uin: str) -> str | None:
        """A login confirmed on the phone without a scan (§4.1, hot reload); the uuid, or None."""
        try:
            answer = self._request("GET", f"{self.base_url}/cgi-bin/mmwebwx-bin/webwxpushloginurl", "pushlogin",
                                   params={"uin": uin})
            result = parse_json(answer.content, "pushlogin")
        except WebWxError:
            return None
        uuid = result.get("uuid")
        if str(result.get("ret")) == "0" and isinstance(uuid, str) and uuid:
            return uuid
        return None

    def poll_login(self, uuid: str, scanned: bool) -> tuple[str, str | None]:
        now = int(time.time())
        answer = self._request("GET", f"{self.base_url}/cgi-bin/mmwebwx-bin/login", "login poll",
                               params={"loginicon": "true", "uuid": uuid, "tip": 0 if scanned else 1,
                                       "r": int(-now / 1579), "_": now})
        return parse_login_poll(answer.text)

    def finish_login(self, redirect_uri: str) -> LoginInfo:
        """The ticket step: cookies and keys for a confirmed QR. Raises WebWxError (ret 1203:
        this account may not use web WeChat)."""
        self.http.cookies.clear()
        answer = self._request("GET", redirect_uri, "ticket", allow_redirects=False,
                               headers={"client-version": UOS_CLIENT_VERSION, "extspam": UOS_EXTSPAM,
                                        "referer": "https://wx.qq.com/?&lang=zh_CN&target=t"})
        fields = parse_ticket(answer.text)
        cookies = self.http.cookies.get_dict()
        if fields.get("ret") not in (None, "0"):
            raise WebWxError(f"WeChat refused the web login (ret {fields.get('ret')}: "
                             f"{fields.get('message') or 'this account may not use web WeChat'})", ret=fields.get("ret"))
        sid = cookies.get("wxsid") or fields.get("wxsid")
        uin = cookies.get("wxuin") or fields.get("wxuin")
        skey, pass_ticket = fields.get("skey"), fields.get("pass_ticket")
        if not (sid and uin and skey and pass_ticket):
            raise WebWxError("the login ticket lacks wxsid/wxuin/skey/pass_ticket (the account may be limited "
                             "on web WeChat, or not verified by real name)")
        url, file_url, sync_url = api_hosts(redirect_uri)
        self.info = LoginInfo(url, file_url, sync_url, skey, sid, str(uin), pass_ticket, new_device_id(), cookies)
        return self.info

    def resume(self, info: LoginInfo) -> None:
        """Use a saved login (hot_reload): its cookies go back into the session."""
        self.http.cookies.clear()
        for name, value in (info.cookies or {}).items():
            self.http.cookies.set(name, value)
        self.info = info

    def init(self) -> dict:
        """webwxinit: the own user, the sync key and the first contacts."""
        info = self._info()
        answer = self._checked(self._post_json(
            f"{info.url}/webwxinit", "webwxinit", {"BaseRequest": info.base_request()},
            params={"r": int(-time.time() / 1579), "pass_ticket": info.pass_ticket}), "webwxinit")
        user = answer.get("User")
        if not isinstance(user, dict) or not isinstance(user.get("UserName"), str):
            raise Malformed("webwxinit: no User in the answer")
        info.user_name = user["UserName"]
        info.nick_name = str(user.get("NickName") or "")
        # A resumed login goes on from its own saved key: init's would skip what came meanwhile.
        if isinstance(answer.get("SyncKey"), dict) and not (isinstance(info.sync_key, dict) and info.sync_key.get("List")):
            info.sync_key = answer["SyncKey"]
            info.sync_check_key = answer["SyncKey"]
        info.cookies = self.http.cookies.get_dict()
        return answer

    def status_notify(self) -> None:
        info = self._info()
        self._post_json(f"{info.url}/webwxstatusnotify", "statusnotify",
                        {"BaseRequest": info.base_request(), "Code": 3, "FromUserName": info.user_name,
                         "ToUserName": info.user_name, "ClientMsgId": int(time.time())},
                        params={"lang": "zh_CN", "pass_ticket": info.pass_ticket})

    def contacts(self, max_pages: int = 50) -> list[dict]:
        """Every contact (friends, rooms, official accounts), paged by Seq."""
        info = self._info()
        members: list[dict] = []
        seq = 0
        for _ in range(max_pages):
            answer = self._request("GET", f"{info.url}/webwxgetcontact", "webwxgetcontact",
                                   params={"r": int(time.time() * 1000), "seq": seq, "skey": info.skey})
            page = parse_json(answer.content, "webwxgetcontact")
            found = page.get("MemberList")
            if isinstance(found, list):
                members.extend(m for m in found if isinstance(m, dict))
            seq = page.get("Seq") or 0
            if not seq:
                break
        return members

    def batch_contacts(self, user_names: list[str]) -> list[dict]:
        """Rooms (and their members) by user name: webwxbatchgetcontact?type=ex."""
        info = self._info()
        answer = self._post_json(f"{info.url}/webwxbatchgetcontact", "webwxbatchgetcontact",
                                 {"BaseRequest": info.base_request(), "Count": len(user_names),
                                  "List": [{"UserName": u, "ChatRoomId": ""} for u in user_names]},
                                 params={"type": "ex", "r": int(time.time())})
        found = answer.get("ContactList")
        return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []

    # ------------------------------------------------------------ receiving
    def sync_check(self, timeout: float) -> str:
        """The selector ("0": nothing new). Raises LoggedOut for retcode 1100/1101/1102."""
        info = self._info()
        answer = self._request("GET", f"{info.sync_url}/synccheck", "synccheck", timeout=timeout,
                               params={"r": int(time.time() * 1000), "skey": info.skey, "sid": info.sid,
                                       "uin": info.uin, "deviceid": info.device_id,
                                       "synckey": sync_key_text(info.sync_check_key or info.sync_key),
                                       "_": int(time.time() * 1000)})
        retcode, selector = parse_synccheck(answer.text)
        if retcode in LOGGED_OUT_CODES:
            raise LoggedOut(f"WeChat ended the login (synccheck retcode {retcode})", ret=retcode)
        if retcode != "0":
            raise WebWxError(f"synccheck retcode {retcode}", transient=True, ret=retcode)
        return selector

    def sync(self) -> dict:
        """webwxsync with the current sync key. The new keys are NOT taken here: the caller
        takes them with `advance` once the messages are safely stored."""
        info = self._info()
        answer = self._post_json(f"{info.url}/webwxsync", "webwxsync",
                                 {"BaseRequest": info.base_request(), "SyncKey": info.sync_key, "rr": ~int(time.time())},
                                 params={"sid": info.sid, "skey": info.skey, "pass_ticket": info.pass_ticket})
        self._checked(answer, "webwxsync")
        for name in ("AddMsgList", "ModContactList"):
            if name in answer and not isinstance(answer[name], list):
                raise Malformed(f"webwxsync: {name} is a {type(answer[name]).__name__}, not a list")
        if not isinstance(answer.get("SyncKey"), dict):
            raise Malformed("webwxsync: no SyncKey in the answer")
        return answer

    def advance(self, answer: dict) -> None:
        info = self._info()
        info.sync_key = answer["SyncKey"]
        check = answer.get("SyncCheckKey")
        info.sync_check_key = check if isinstance(check, dict) and check.get("List") else answer["SyncKey"]

    def download(self, kind: str, msg: dict, max_bytes: int) -> bytes:
        """The media of a message (image, voice, video, file), at most `max_bytes` (else MediaTooLarge)."""
        info = self._info()
        msg_id = str(msg.get("NewMsgId") or msg.get("MsgId") or "")
        if kind == "file":
            url = f"{info.file_url}/webwxgetmedia"
            params = {"sender": msg.get("FromUserName", ""), "mediaid": msg.get("MediaId", ""),
                      "filename": msg.get("FileName", ""), "fromuser": info.uin, "pass_ticket": "undefined",
                      "webwx_data_ticket": self.http.cookies.get("webwx_data_ticket", "")}
        else:
            endpoint = {"image": "webwxgetmsgimg", "voice": "webwxgetvoice", "video": "webwxgetvideo"}[kind]
            url = f"{info.url}/{endpoint}"
            params = {"msgid": msg_id, "skey": info.skey}
        answer = self._request("GET", url, f"{kind} download", params=params, stream=True,
                               headers={"Range": "bytes=0-"} if kind == "video" else None)
        with answer:
            declared = answer.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise MediaTooLarge(f"{kind} of {declared} bytes")
            data = bytearray()
            try:
                for block in answer.iter_content(65536):
                    data += block
                    if len(data) > max_bytes:
                        raise MediaTooLarge(f"{kind} over {max_bytes} bytes")
            except requests.RequestException as e:
                raise WebWxError(f"{kind} download: {type(e).__name__}", transient=True) from None
        return bytes(data)

    # ------------------------------------------------------------ sending
    def _send(self, endpoint: str, what: str, msg: dict, client_msg_id: str, params: dict | None = None) -> dict:
        info = self._info()
        msg = dict(msg, FromUserName=info.user_name, LocalID=client_msg_id, ClientMsgId=client_msg_id)
        answer = self._post_json(f"{info.url}/{endpoint}", what,
                                 {"BaseRequest": info.base_request(), "Msg": msg, "Scene": 0}, params=params)
        return self._checked(answer, what)

    def send_text(self, to: str, text: str, client_msg_id: str) -> dict:
        return self._send("webwxsendmsg", "webwxsendmsg", {"Type": 1, "Content": text, "ToUserName": to},
                          client_msg_id, {"pass_ticket": self._info().pass_ticket})

    def upload(self, data: bytes, name: str, to: str, media_type: str) -> str:
        """Upload `data` (in 512 KiB chunks) and return its MediaId. media_type: pic, video or doc."""
        info = self._info()
        size = len(data)
        chunks = max(1, (size + CHUNK - 1) // CHUNK)
        request = json.dumps({"UploadType": 2, "BaseRequest": info.base_request(),
                              "ClientMediaId": int(time.time() * 1e4), "TotalLen": size, "StartPos": 0,
                              "DataLen": size, "MediaType": 4, "FromUserName": info.user_name, "ToUserName": to,
                              "FileMd5": hashlib.md5(data).hexdigest()}, separators=(",", ":"))
        file_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
        quoted = quote(name)
        result: dict = {}
        for n in range(chunks):
            fields = {"id": (None, "WU_FILE_0"), "name": (None, quoted), "type": (None, file_type),
                      "lastModifiedDate": (None, time.strftime("%a %b %d %Y %H:%M:%S GMT+0800 (CST)")),
                      "size": (None, str(size)), "mediatype": (None, media_type),
                      "uploadmediarequest": (None, request),
                      "webwx_data_ticket": (None, self.http.cookies.get("webwx_data_ticket", "")),
                      "pass_ticket": (None, info.pass_ticket)}
            if chunks > 1:
                fields["chunks"] = (None, str(chunks))
                fields["chunk"] = (None, str(n))
            fields["filename"] = (quoted, data[n * CHUNK:(n + 1) * CHUNK], "application/octet-stream")
            answer = self._request("POST", f"{info.file_url}/webwxuploadmedia", "upload", params={"f": "json"},
                                   files=fields)
            result = self._checked(parse_json(answer.content, "upload"), "upload")
        media_id = result.get("MediaId")
        if not isinstance(media_id, str) or not media_id:
            raise WebWxError("upload: no MediaId in the answer")
        return media_id

    def send_image(self, to: str, media_id: str, client_msg_id: str) -> dict:
        return self._send("webwxsendmsgimg", "webwxsendmsgimg", {"Type": 3, "MediaId": media_id, "ToUserName": to},
                          client_msg_id, {"fun": "async", "f": "json"})

    def send_video(self, to: str, media_id: str, client_msg_id: str) -> dict:
        return self._send("webwxsendvideomsg", "webwxsendvideomsg", {"Type": 43, "MediaId": media_id, "ToUserName": to},
                          client_msg_id, {"fun": "async", "f": "json", "pass_ticket": self._info().pass_ticket})

    def send_file(self, to: str, name: str, size: int, media_id: str, client_msg_id: str) -> dict:
        ext = name.rsplit(".", 1)[1] if "." in name else ""
        content = (f"<appmsg appid='wxeb7ec651dd0aefa9' sdkver=''><title>{_xml(name)}</title><des></des><action></action>"
                   f"<type>6</type><content></content><url></url><lowurl></lowurl><appattach><totallen>{size}"
                   f"</totallen><attachid>{_xml(media_id)}</attachid><fileext>{_xml(ext)}</fileext></appattach>"
                   f"<extinfo></extinfo></appmsg>")
        return self._send("webwxsendappmsg", "webwxsendappmsg", {"Type": 6, "Content": content, "ToUserName": to},
                          client_msg_id, {"fun": "async", "f": "json"})

    def accept_friend(self, user_name: str, ticket: str) -> dict:
        """webwxverifyuser with Opcode 3: accept a friend request."""
        info = self._info()
        answer = self._post_json(f"{info.url}/webwxverifyuser", "webwxverifyuser",
                                 {"BaseRequest": info.base_request(), "Opcode": 3, "VerifyUserListSize": 1,
                                  "VerifyUserList": [{"Value": user_name, "VerifyUserTicket": ticket}],
                                  "VerifyContent": "", "SceneListCount": 1, "SceneList": [33], "skey": info.skey},
                                 params={"r": int(time.time()), "pass_ticket": info.pass_ticket})
        return self._checked(answer, "webwxverifyuser")

    def logout(self) -> None:
        info = self.info
        if info is None:
            return
        try:
            self._request("GET", f"{info.url}/webwxlogout", "logout", timeout=5,
                          params={"redirect": 1, "type": 1, "skey": info.skey})
        except WebWxError:
            pass


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("'", "&apos;")
