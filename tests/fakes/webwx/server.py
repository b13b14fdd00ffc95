"""The web-WeChat simulator: one ThreadingHTTPServer on 127.0.0.1 playing the login host and the
API host of reference/personal-wechat.md §4.1 (the API host is the one the redirect_uri names,
so it is this server too; a loopback host gives file and sync URLs equal to it).

  GET  /jslogin                                   -> window.QRLogin.code = 200; window.QRLogin.uuid = "..";
  GET  /cgi-bin/mmwebwx-bin/login?uuid=&tip=      -> window.code=408|201|200 (+ redirect_uri)|400,
                                                     held up to `hold` s while waiting
  GET  /cgi-bin/mmwebwx-bin/webwxnewloginpage     -> cookies wxsid, wxuin, webwx_data_ticket + XML
                                                     with skey/pass_ticket (or <ret>1203</ret>)
  GET  /cgi-bin/mmwebwx-bin/webwxpushloginurl     -> {"ret": "1"} unless `allow_push`
  POST webwxinit | webwxstatusnotify | webwxbatchgetcontact | webwxsync | webwxsendmsg |
       webwxsendmsgimg | webwxsendappmsg | webwxsendvideomsg | webwxverifyuser   (JSON, BaseRequest checked)
  GET  webwxgetcontact (two pages by Seq) | synccheck (held up to `hold` s) | webwxgetmsgimg |
       webwxgetvoice | webwxgetvideo | webwxgetmedia | webwxlogout
  POST webwxuploadmedia?f=json (multipart, chunked above 512 KiB) -> MediaId

Every API call must carry the login's cookies and keys; a call of a login the server ended
(`kick`, `webwxlogout`) gets Ret 1101 / synccheck retcode 1101. The server remembers how far the
account has synced (the key the last webwxsync presented), so a new login gets the messages that
came while it was away; a client that presents an older key gets those messages again
(`deliveries` counts how often each went out). Protocol mistakes of the client go to `errors`.
"""
from __future__ import annotations

import json
import secrets
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

API = "/cgi-bin/mmwebwx-bin/"


@dataclass
class Sent:
    endpoint: str
    to: str
    type: int
    content: str
    media_id: str
    client_msg_id: str

    @property
    def is_text(self) -> bool:
        return self.type == 1


@dataclass
class Login:
    sid: str
    uin: str
    skey: str
    pass_ticket: str
    data_ticket: str
    kicked: str = ""  # the retcode a kicked login gets


def _hex(n: int = 16) -> str:
    return secrets.token_hex(n)


class WebWxSimulator:
    def __init__(self, *, hold: float = 0.3, nick: str = "Botty") -> None:
        self.hold = hold
        self.user_name = "@" + _hex()
        self.nick = nick
        self.uin = str(1000000000 + secrets.randbelow(10 ** 9))
        self.friends: dict[str, str] = {}
        self.rooms: dict[str, dict] = {}
        self.qrs: list[str] = []
        self.status: dict[str, str] = {}
        self.logins: dict[str, Login] = {}  # sid -> login
        self.login: Login | None = None
        self.tickets: dict[str, str] = {}  # ticket -> uuid
        self.log: list[dict] = []  # every message, in order; the sync key is a position in it
        self.synced = 0  # how far the account has acknowledged
        self.deliveries: dict[str, int] = {}
        self.sent: list[Sent] = []
        self.uploads: dict[str, bytes] = {}
        self._chunks: dict[str, bytearray] = {}
        self.media: dict[str, bytes] = {}  # MsgId / MediaId -> bytes
        self.verified: list[dict] = []
        self.errors: list[str] = []
        self.calls: list[str] = []
        self.ticket_ret = "0"
        self.allow_push = False
        self.pushes: list[str] = []
        self._sync_answers: list[bytes] = []
        self._send_failures: list[dict] = []
        self._failing: dict[str, list[int]] = {}  # endpoint -> HTTP statuses its next calls get
        self._ids = 1000
        self._cond = threading.Condition()
        self._server: _Server | None = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> "WebWxSimulator":
        sim = self

        class Handler(_Handler):
            simulator = sim

        self._server = _Server(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    # ------------------------------------------------------------ contacts
    def add_friend(self, user: str, nick: str) -> None:
        self.friends[user] = nick

    def add_room(self, room: str, nick: str, members: dict[str, str], *, own_display: str = "") -> None:
        """members: user name -> nickname; the bot is a member too (with `own_display` as its
        group nickname)."""
        listed = [{"UserName": u, "NickName": n, "DisplayName": ""} for u, n in members.items()]
        listed.append({"UserName": self.user_name, "NickName": self.nick, "DisplayName": own_display})
        self.rooms[room] = {"UserName": room, "NickName": nick, "MemberList": listed}

    # ------------------------------------------------------------ the login
    def wait_qr(self, timeout: float = 15.0, after: int = 0) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.qrs) <= after:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no QR number {after + 1} was asked for")
                self._cond.wait(left)
            return self.qrs[after]

    def set_status(self, uuid: str, code: str) -> None:
        with self._cond:
            self.status[uuid] = code
            self._cond.notify_all()

    def scan(self, uuid: str) -> None:
        self.set_status(uuid, "201")

    def confirm(self, uuid: str) -> None:
        self.set_status(uuid, "200")

    def kick(self, retcode: str = "1101") -> None:
        """WeChat ends the current login (the phone logged out, or WeChat detected web use)."""
        with self._cond:
            if self.login is not None:
                self.login.kicked = retcode
            self._cond.notify_all()

    # ------------------------------------------------------------ messages
    def _next_id(self) -> str:
        self._ids += 1
        return str(self._ids) + _hex(3).translate(str.maketrans("abcdef", "123456"))

    def push(self, msg: Any) -> Any:
        with self._cond:
            self.log.append(msg)
            self._cond.notify_all()
        return msg

    def message(self, sender: str, msg_type: int, content: str = "", to: str | None = None, **extra: Any) -> dict:
        msg_id = self._next_id()
        msg = {"MsgId": msg_id, "NewMsgId": int(msg_id), "FromUserName": sender, "ToUserName": to or self.user_name,
               "MsgType": msg_type, "Content": content, "Status": 3, "ImgStatus": 1, "CreateTime": int(time.time()),
               "VoiceLength": 0, "PlayLength": 0, "FileName": "", "FileSize": "", "MediaId": "", "Url": "",
               "AppMsgType": 0, "StatusNotifyCode": 0, "StatusNotifyUserName": "", "RecommendInfo": {
                   "UserName": "", "NickName": "", "QQNum": 0, "Province": "", "City": "", "Content": "",
                   "Signature": "", "Alias": "", "Scene": 0, "VerifyFlag": 0, "AttrStatus": 0, "Sex": 0,
                   "Ticket": "", "OpCode": 0}, "ForwardFlag": 0, "AppInfo": {"AppID": "", "Type": 0},
               "HasProductId": 0, "Ticket": "", "ImgHeight": 0, "ImgWidth": 0, "SubMsgType": 0,
               "NewMsgId_str": msg_id, "OriContent": "", "EncryFileName": ""}
        msg.update(extra)
        return msg

    def push_text(self, sender: str, text: str) -> dict:
        return self.push(self.message(sender, 1, text))

    def push_group_text(self, room: str, member: str, text: str) -> dict:
        return self.push(self.message(room, 1, f"{member}:<br/>{text}"))

    def push_image(self, sender: str, data: bytes, room_member: str | None = None) -> dict:
        msg = self.message(sender, 3, (f"{room_member}:<br/>" if room_member else "") + "&lt;msg&gt;&lt;img /&gt;&lt;/msg&gt;")
        self.media[msg["MsgId"]] = data
        return self.push(msg)

    def push_voice(self, sender: str, data: bytes) -> dict:
        msg = self.message(sender, 34, "", VoiceLength=2000)
        self.media[msg["MsgId"]] = data
        return self.push(msg)

    def push_file(self, sender: str, name: str, data: bytes) -> dict:
        media_id = "@crypt_" + _hex(8)
        msg = self.message(sender, 49, "&lt;msg&gt;&lt;appmsg&gt;&lt;/appmsg&gt;&lt;/msg&gt;", AppMsgType=6,
                           FileName=name, FileSize=str(len(data)), MediaId=media_id)
        self.media[media_id] = data
        return self.push(msg)

    def push_friend_request(self, user: str, nick: str, text: str) -> dict:
        ticket = "v4_" + _hex(8)
        info = {"UserName": user, "NickName": nick, "Content": text, "Ticket": ticket, "Scene": 30, "OpCode": 2,
                "Sex": 0, "Alias": "", "Signature": "", "Province": "", "City": "", "QQNum": 0,
                "VerifyFlag": 0, "AttrStatus": 0}
        return self.push(self.message("fmessage", 37, "&lt;msg fromusername=&quot;x&quot; /&gt;", Status=3,
                                      RecommendInfo=info, Ticket=ticket))

    def inject_sync_answer(self, body: bytes) -> None:
        """The next webwxsync gets `body` instead of its answer."""
        with self._cond:
            self._sync_answers.append(body)
            self._cond.notify_all()

    def fail_next_send(self, *, ret: int = 1, status: int = 200, to: str | None = None, taken: bool = False) -> None:
        """The next send (to `to`) fails: Ret `ret` or HTTP `status`; with `taken` the message
        is recorded all the same (a send whose answer was lost)."""
        self._send_failures.append({"ret": ret, "status": status, "to": to, "taken": taken})

    def fail_next(self, endpoint: str, status: int = 503, count: int = 1) -> None:
        """The next `count` calls of `endpoint` (e.g. "webwxinit") get HTTP `status`."""
        self._failing.setdefault(endpoint, []).extend([status] * count)

    def sent_to(self, user: str) -> list[Sent]:
        return [s for s in list(self.sent) if s.to == user]

    def texts_to(self, user: str) -> list[str]:
        return [s.content for s in self.sent_to(user) if s.is_text]

    def wait_sent(self, user: str, count: int = 1, timeout: float = 15.0) -> list[Sent]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.sent_to(user)
            if len(found) >= count:
                return found
            time.sleep(0.05)
        raise AssertionError(f"{user} got {len(self.sent_to(user))} of {count} messages: {self.sent_to(user)}; "
                             f"errors: {self.errors}")

    # ------------------------------------------------------------ requests
    def _login_of(self, sid: str, cookies: dict, where: str) -> Login | None:
        login = self.logins.get(sid)
        if login is None:
            return None
        if cookies.get("wxsid") != login.sid or cookies.get("webwx_data_ticket") != login.data_ticket:
            self.errors.append(f"{where}: the login cookies are missing")
        return login

    def handle(self, method: str, path: str, query: dict, body: bytes, headers, cookies: dict) -> tuple:
        """(status, body bytes, headers)."""
        self.calls.append(path)
        q = {k.lower(): v[0] for k, v in query.items()}
        endpoint = path[len(API):] if path.startswith(API) else path.strip("/")
        if self._failing.get(endpoint):
            return self._failing[endpoint].pop(0), b"<html>busy</html>", {}
        if endpoint == "jslogin":
            if q.get("appid") != "wx782c26e4c19acffb":
                self.errors.append("jslogin without the web app id")
            uuid = _hex(6)
            with self._cond:
                self.qrs.append(uuid)
                self.status[uuid] = "408"
                self._cond.notify_all()
            return 200, f'window.QRLogin.code = 200; window.QRLogin.uuid = "{uuid}";'.encode(), {}
        if endpoint == "login":
            return 200, self._poll(q).encode(), {}
        if endpoint == "webwxnewloginpage":
            return self._ticket(q, headers)
        if endpoint == "webwxpushloginurl":
            if not self.allow_push or q.get("uin") != self.uin:
                return 200, b'{"ret":"1","msg":"all ticket empty"}', {}
            uuid = _hex(6)
            with self._cond:
                self.pushes.append(uuid)
                self.status[uuid] = "408"
                self._cond.notify_all()
            return 200, json.dumps({"ret": "0", "msg": "all ok", "uuid": uuid}).encode(), {}
        if endpoint == "synccheck":
            return 200, self._synccheck(q, cookies).encode(), {}
        if method == "GET":
            return self._get(endpoint, q, cookies)
        if endpoint == "webwxuploadmedia":
            return self._upload(body, headers, cookies)
        try:
            data = json.loads(body.decode("utf-8"))
            base = data["BaseRequest"]
        except (ValueError, KeyError, TypeError):
            self.errors.append(f"{endpoint}: not a JSON body with BaseRequest")
            return 400, b"", {}
        login = self._login_of(str(base.get("Sid")), cookies, endpoint)
        if login is None or login.kicked or base.get("Skey") != login.skey or str(base.get("Uin")) != login.uin:
            return 200, json.dumps({"BaseResponse": {"Ret": 1101, "ErrMsg": ""}}).encode(), {}
        return self._post(endpoint, q, data, login)

    def _poll(self, q: dict) -> str:
        uuid = q.get("uuid", "")
        deadline = time.monotonic() + self.hold
        with self._cond:
            if uuid not in self.status:
                return "window.code=400;"
            while self.status[uuid] == "408" or (self.status[uuid] == "201" and q.get("tip") == "0"):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            code = self.status[uuid]
        if code == "200":
            ticket = _hex(8)
            self.tickets[ticket] = uuid
            self.status[uuid] = "used"
            return (f'window.code=200;\nwindow.redirect_uri="{self.base_url}{API}webwxnewloginpage?ticket={ticket}'
                    f'&uuid={uuid}&lang=zh_CN&scan={int(time.time())}";')
        if code == "201":
            return "window.code=201;window.userAvatar = 'data:img/jpg;base64,';"
        if code == "408":
            return "window.code=408;"
        return "window.code=400;"

    def _ticket(self, q: dict, headers) -> tuple:
        if q.get("ticket") not in self.tickets:
            return 200, b"<error><ret>1100</ret><message>ticket unknown</message></error>", {}
        self.tickets.pop(q["ticket"])
        if headers.get("client-version") != "2.0.0" or not headers.get("extspam"):
            self.errors.append("ticket asked for without the UOS headers")
        if self.ticket_ret != "0":
            return 200, (f"<error><ret>{self.ticket_ret}</ret><message>为了你的帐号安全，此微信号不能登录网页微信。"
                         f"</message></error>").encode(), {}
        login = Login(_hex(8), self.uin, "@crypt_" + _hex(8), _hex(16), _hex(12))
        with self._cond:
            if self.login is not None:
                self.logins.pop(self.login.sid, None)
            self.logins[login.sid] = login
            self.login = login
        cookies = [f"wxsid={login.sid}; Path=/", f"wxuin={login.uin}; Path=/",
                   f"webwx_data_ticket={login.data_ticket}; Path=/"]
        body = (f"<error><ret>0</ret><message></message><skey>{login.skey}</skey><wxsid>{login.sid}</wxsid>"
                f"<wxuin>{login.uin}</wxuin><pass_ticket>{login.pass_ticket}</pass_ticket>"
                f"<isgrayscale>1</isgrayscale></error>")
        return 200, body.encode(), {"Set-Cookie": cookies}

    @staticmethod
    def _position(text: str) -> int:
        for part in text.split("|"):
            key, _, value = part.partition("_")
            if key == "1" and value.isdigit():
                return int(value)
        return 0

    def _synccheck(self, q: dict, cookies: dict) -> str:
        login = self._login_of(q.get("sid", ""), cookies, "synccheck")
        if login is None:
            return 'window.synccheck={retcode:"1101",selector:"0"}'
        if q.get("skey") != login.skey or q.get("uin") != login.uin or not q.get("deviceid"):
            self.errors.append("synccheck without skey/uin/deviceid")
        position = self._position(q.get("synckey", ""))
        deadline = time.monotonic() + self.hold
        with self._cond:
            while not login.kicked and len(self.log) <= position and not self._sync_answers:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if login.kicked:
                return f'window.synccheck={{retcode:"{login.kicked}",selector:"0"}}'
            selector = "2" if len(self.log) > position or self._sync_answers else "0"
        return f'window.synccheck={{retcode:"0",selector:"{selector}"}}'

    def _key(self, position: int) -> dict:
        return {"Count": 1, "List": [{"Key": 1, "Val": position}]}

    def _post(self, endpoint: str, q: dict, data: dict, login: Login) -> tuple:
        ok = {"Ret": 0, "ErrMsg": ""}
        if endpoint == "webwxinit":
            if q.get("pass_ticket") != login.pass_ticket:
                self.errors.append("webwxinit without pass_ticket")
            contacts = [{"UserName": r, "NickName": room["NickName"], "MemberList": [], "Sex": 0}
                        for r, room in list(self.rooms.items())[:1]]
            return self._json({"BaseResponse": ok, "Count": len(contacts), "ContactList": contacts,
                               "SyncKey": self._key(self.synced), "User": {
                                   "Uin": int(login.uin), "UserName": self.user_name, "NickName": self.nick},
                               "ChatSet": "", "SKey": login.skey, "InviteStartCount": 40})
        if endpoint == "webwxstatusnotify":
            return self._json({"BaseResponse": ok, "MsgID": self._next_id()})
        if endpoint == "webwxbatchgetcontact":
            listed = [self.rooms[i["UserName"]] for i in data.get("List", []) if i.get("UserName") in self.rooms]
            return self._json({"BaseResponse": ok, "Count": len(listed), "ContactList": listed})
        if endpoint == "webwxsync":
            if q.get("pass_ticket") != login.pass_ticket:
                self.errors.append("webwxsync without pass_ticket")
            with self._cond:
                if self._sync_answers:
                    return 200, self._sync_answers.pop(0), {}
                position = self._position("|".join(f"{i['Key']}_{i['Val']}" for i in data["SyncKey"]["List"]))
                self.synced = max(self.synced, position)
                msgs = self.log[position:]
                end = len(self.log)
            for m in msgs:
                key = str(m.get("MsgId")) if isinstance(m, dict) else repr(m)
                self.deliveries[key] = self.deliveries.get(key, 0) + 1
            return self._json({"BaseResponse": ok, "AddMsgCount": len(msgs), "AddMsgList": msgs,
                               "ModContactCount": 0, "ModContactList": [], "DelContactCount": 0,
                               "DelContactList": [], "SyncKey": self._key(end), "SyncCheckKey": self._key(end),
                               "ContinueFlag": 0})
        if endpoint in ("webwxsendmsg", "webwxsendmsgimg", "webwxsendappmsg", "webwxsendvideomsg"):
            return self._send(endpoint, data)
        if endpoint == "webwxverifyuser":
            if data.get("Opcode") != 3:
                self.errors.append("webwxverifyuser without Opcode 3")
            self.verified.extend(data.get("VerifyUserList", []))
            for item in data.get("VerifyUserList", []):
                self.friends.setdefault(item.get("Value"), item.get("Value"))
            return self._json({"BaseResponse": ok})
        self.errors.append(f"unknown POST {endpoint}")
        return 404, b"", {}

    def _send(self, endpoint: str, data: dict) -> tuple:
        msg = data.get("Msg") or {}
        to = str(msg.get("ToUserName", ""))
        if msg.get("FromUserName") != self.user_name:
            self.errors.append(f"{endpoint}: FromUserName is not the logged-in user")
        if not msg.get("ClientMsgId") or not msg.get("LocalID"):
            self.errors.append(f"{endpoint}: no ClientMsgId/LocalID")
        media_id = str(msg.get("MediaId") or "")
        if endpoint in ("webwxsendmsgimg", "webwxsendvideomsg") and media_id not in self.uploads:
            self.errors.append(f"{endpoint}: unknown MediaId")
        if endpoint == "webwxsendappmsg":
            found = str(msg.get("Content", "")).split("<attachid>")[-1].split("</attachid>")[0]
            if found not in self.uploads:
                self.errors.append("webwxsendappmsg: unknown attachid")
            media_id = found
        sent = Sent(endpoint, to, int(msg.get("Type") or 0), str(msg.get("Content") or ""), media_id,
                    str(msg.get("ClientMsgId")))
        for n, failure in enumerate(self._send_failures):
            if failure["to"] in (None, to):
                self._send_failures.pop(n)
                if failure["taken"]:
                    self.sent.append(sent)
                if failure["status"] != 200:
                    return failure["status"], b"busy", {}
                return self._json({"BaseResponse": {"Ret": failure["ret"], "ErrMsg": "system busy"}})
        self.sent.append(sent)
        return self._json({"BaseResponse": {"Ret": 0, "ErrMsg": ""}, "MsgID": self._next_id(),
                           "LocalID": msg.get("LocalID")})

    def _get(self, endpoint: str, q: dict, cookies: dict) -> tuple:
        login = self.login
        if login is None or login.kicked:
            return 200, json.dumps({"BaseResponse": {"Ret": 1101}}).encode(), {}
        if endpoint == "webwxgetcontact":
            if q.get("skey") != login.skey:
                self.errors.append("webwxgetcontact without skey")
            if q.get("seq", "0") == "0":
                friends = [{"UserName": u, "NickName": n, "Sex": 1} for u, n in self.friends.items()]
                return self._json({"BaseResponse": {"Ret": 0}, "MemberCount": len(friends), "MemberList": friends,
                                   "Seq": 1})
            rooms = [{"UserName": r, "NickName": room["NickName"], "MemberList": []} for r, room in self.rooms.items()]
            return self._json({"BaseResponse": {"Ret": 0}, "MemberCount": len(rooms), "MemberList": rooms, "Seq": 0})
        if endpoint in ("webwxgetmsgimg", "webwxgetvoice", "webwxgetvideo"):
            if q.get("skey") != login.skey:
                self.errors.append(f"{endpoint} without skey")
            data = self.media.get(q.get("msgid", ""))
            return (200, data, {"Content-Type": "image/jpeg"}) if data is not None else (404, b"", {})
        if endpoint == "webwxgetmedia":
            if q.get("webwx_data_ticket") != login.data_ticket:
                self.errors.append("webwxgetmedia without webwx_data_ticket")
            data = self.media.get(q.get("mediaid", ""))
            return (200, data, {"Content-Type": "application/octet-stream"}) if data is not None else (404, b"", {})
        if endpoint == "webwxlogout":
            login.kicked = "1101"
            return 200, b"", {}
        self.errors.append(f"unknown GET {endpoint}")
        return 404, b"", {}

    def _upload(self, body: bytes, headers, cookies: dict) -> tuple:
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + headers.get("Content-Type", "").encode() + b"\r\n\r\n" + body)
        fields: dict[str, Any] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[name] = part.get_payload(decode=True)
        try:
            request = json.loads(fields["uploadmediarequest"])
            login = self.logins[request["BaseRequest"]["Sid"]]
        except (KeyError, ValueError, TypeError):
            self.errors.append("upload without a valid uploadmediarequest")
            return 200, json.dumps({"BaseResponse": {"Ret": 1}}).encode(), {}
        if fields.get("webwx_data_ticket", b"").decode() != login.data_ticket or cookies.get("webwx_data_ticket") != login.data_ticket:
            self.errors.append("upload without webwx_data_ticket")
        if fields.get("mediatype", b"").decode() not in ("pic", "video", "doc"):
            self.errors.append("upload with an unknown mediatype")
        key = str(request["ClientMediaId"])
        chunk = int(fields.get("chunk", b"0") or 0)
        chunks = int(fields.get("chunks", b"1") or 1)
        buffer = self._chunks.setdefault(key, bytearray())
        buffer += fields.get("filename", b"")
        if chunk + 1 < chunks:
            return self._json({"BaseResponse": {"Ret": 0}, "MediaId": "", "StartPos": len(buffer)})
        data = bytes(self._chunks.pop(key))
        if len(data) != request.get("TotalLen"):
            self.errors.append(f"upload: {len(data)} bytes arrived, TotalLen says {request.get('TotalLen')}")
        media_id = "@crypt_up_" + _hex(8)
        self.uploads[media_id] = data
        return self._json({"BaseResponse": {"Ret": 0, "ErrMsg": ""}, "MediaId": media_id, "StartPos": len(data),
                           "CDNThumbImgHeight": 0, "CDNThumbImgWidth": 0})

    @staticmethod
    def _json(value: Any) -> tuple:
        return 200, json.dumps(value, ensure_ascii=False).encode("utf-8"), {"Content-Type": "text/plain"}

    @contextmanager
    def held(self):
        """Messages pushed inside come in one webwxsync answer."""
        with self._cond:
            yield


class _Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        pass  # a client that hung up (the daemon was killed) is not a test failure


class _Handler(BaseHTTPRequestHandler):
    simulator: WebWxSimulator
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # noqa: A002
        pass

    def _route(self, method: str) -> None:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        cookies = {}
        for header in self.headers.get_all("Cookie") or []:
            for item in header.split(";"):
                name, _, value = item.strip().partition("=")
                if name:
                    cookies[name] = unquote(value)
        try:
            status, data, headers = self.simulator.handle(method, parts.path, parse_qs(parts.query), body,
                                                          self.headers, cookies)
        except Exception as e:  # a bug of the simulator shows in the test, not as a hang
            self.simulator.errors.append(f"simulator error on {parts.path}: {type(e).__name__}: {e}")
            status, data, headers = 500, b"", {}
        self.send_response(status)
        for name, value in headers.items():
            for one in value if isinstance(value, list) else [value]:
                self.send_header(name, one)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._route("GET")

    def do_POST(self) -> None:
        self._route("POST")
