"""A fake WeChatFerry service: the RPC the real one (the spy injected into PC WeChat) serves, on
Linux, for the `wcf` channel's tests.

The wire is the real one: two nng Pair1 sockets over TCP, the command socket on `port` (one
protobuf `Request` in, one `Response` out, the `func` codes of wcf.proto) and the message socket
on `port + 1`, opened when a client asks for messages (FUNC_ENABLE_RECV_TXT), on which every
received WeChat message goes out as a `Response` holding a `WxMsg`. The channel talks to it
through the real `wcferry` package; nothing here knows that.

The protobuf classes come from the installed `wcferry` package (a test dependency): they are
the service's own message definitions.

What it models: the login state and the logged-in account, contacts and rooms (room members are
read the way the real service serves them, through FUNC_EXEC_DB_QUERY on MicroMsg.db with the
RoomData blob), pushed messages (text, image, voice, file, group with the @ list in the xml),
the attachment calls (FUNC_DOWNLOAD_ATTACH writes the file where the message's `extra` says,
FUNC_DECRYPT_IMAGE turns WeChat's XOR-ed .dat into the picture, FUNC_GET_AUDIO_MSG writes the
voice as MP3), and the sends it records. Errors on demand: a refused send, raw bytes on the
message socket, the service going away.
"""
from __future__ import annotations

import os
import re
import socket
import threading
import time
from dataclasses import dataclass

import pynng
from wcferry import wcf_pb2 as pb

DAT_KEY = 0x5A  # the byte WeChat's .dat pictures are XOR-ed with (it differs per install)


def free_port_pair() -> int:
    """A port p with p and p + 1 free on 127.0.0.1."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


@dataclass
class Sent:
    func: str  # text / image / file
    receiver: str
    text: str = ""
    aters: str = ""
    path: str = ""
    data: bytes = b""


class WcfService:
    def __init__(self, folder: str, *, self_wxid: str = "wxid_bot", name: str = "小助手", logged_in: bool = True,
                 echo_sends: bool = True):
        self.folder = str(folder)
        self.files_dir = os.path.join(self.folder, "WeChat Files")
        os.makedirs(self.files_dir, exist_ok=True)
        self.port = free_port_pair()
        self.self_wxid = self_wxid
        self.name = name
        self.logged_in = logged_in
        # The real service reports what the account sends (through it or from the phone) as
        # received messages of its own (is_self), before it answers the send.
        self.echo_sends = echo_sends
        self.contacts: dict[str, str] = {}  # wxid (people and rooms) -> name
        self.rooms: dict[str, dict[str, str]] = {}  # room id -> {member wxid: display name in the room}
        self.sent: list[Sent] = []
        self.pushed: list = []  # the WxMsg pushed, in order
        self.calls: list[str] = []  # function names, in order
        self.queries: list[str] = []  # the SQL of FUNC_EXEC_DB_QUERY, in order
        self.errors: list[str] = []
        self.receiving = False
        self._attachments: dict[int, tuple[str, bytes]] = {}  # msg id -> (path to write, bytes)
        self._voices: dict[int, bytes] = {}
        self._send_failures: list[tuple[str | None, int]] = []  # (receiver or None, status)
        self._next_id = 1000
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._cmd: pynng.Pair1 | None = None
        self._msg: pynng.Pair1 | None = None
        self._running = False

    # ------------------------------------------------------------------ lifecycle
    @property
    def host(self) -> str:
        return "127.0.0.1"

    def start(self) -> "WcfService":
        self._cmd = pynng.Pair1(recv_timeout=200)
        self._cmd.listen(f"tcp://127.0.0.1:{self.port}")
        self._running = True
        threading.Thread(target=self._serve, name="fake-wcf", daemon=True).start()
        return self

    def stop(self) -> None:
        """The service goes away (WeChat quit, the spy unloaded): both sockets close."""
        self._running = False
        self.receiving = False
        for sock in (self._cmd, self._msg):
            if sock is not None:
                sock.close()
        self._cmd = self._msg = None

    # ------------------------------------------------------------------ directory
    def add_contact(self, wxid: str, name: str) -> None:
        self.contacts[wxid] = name

    def add_room(self, roomid: str, name: str, members: dict[str, str]) -> None:
        self.contacts[roomid] = name
        self.rooms[roomid] = dict(members)
        self.rooms[roomid].setdefault(self.self_wxid, self.name)

    # ------------------------------------------------------------------ error injection
    def fail_next_send(self, status: int = -1, receiver: str | None = None) -> None:
        self._send_failures.append((receiver, status))

    def push_raw(self, data: bytes) -> None:
        """Bytes on the message socket that are no Response."""
        self._wait_receiving()
        self._msg.send(data)

    # ------------------------------------------------------------------ messages in
    def new_id(self) -> int:
        with self._lock:
            self._next_id += 1
            return self._next_id

    def push(self, **fields) -> pb.WxMsg:
        """One WxMsg on the message socket (fields of wcf.proto's WxMsg)."""
        fields.setdefault("id", self.new_id())
        fields.setdefault("ts", int(time.time()))
        msg = pb.WxMsg(**fields)
        self._wait_receiving()
        rsp = pb.Response(func=pb.FUNC_ENABLE_RECV_TXT, wxmsg=msg)
        self._msg.send(rsp.SerializeToString())
        self.pushed.append(msg)
        return msg

    def push_text(self, sender: str, content: str, *, roomid: str = "", at: list[str] | None = None,
                  msg_id: int | None = None) -> pb.WxMsg:
        xml = "<msgsource><silence>0</silence></msgsource>"
        if roomid:
            members = len(self.rooms.get(roomid, {}))
            atlist = f"<atuserlist><![CDATA[,{','.join(at)}]]></atuserlist>" if at else ""
            xml = f"<msgsource>{atlist}<silence>0</silence><membercount>{members}</membercount></msgsource>"
        fields = dict(type=1, sender=sender, roomid=roomid or sender, is_group=bool(roomid), content=content, xml=xml)
        if msg_id is not None:
            fields["id"] = msg_id
        return self.push(**fields)

    def push_image(self, sender: str, data: bytes, *, roomid: str = "", missing: bool = False) -> pb.WxMsg:
        """A picture; its .dat appears at `extra` once downloaded (never, when `missing`)."""
        msg_id = self.new_id()
        dat = os.path.join(self.files_dir, "MsgAttach", f"{msg_id}.dat")
        thumb = os.path.join(self.files_dir, "MsgAttach", f"{msg_id}_t.dat")
        if not missing:
            self._attachments[msg_id] = (dat, bytes(b ^ DAT_KEY for b in data))
        return self.push(id=msg_id, type=3, sender=sender, roomid=roomid or sender, is_group=bool(roomid),
                         content=f'<?xml version="1.0"?><msg><img length="{len(data)}" md5="x" /></msg>',
                         xml="<msgsource />", thumb=thumb, extra=dat)

    def push_voice(self, sender: str, audio: bytes) -> pb.WxMsg:
        msg_id = self.new_id()
        self._voices[msg_id] = audio
        return self.push(id=msg_id, type=34, sender=sender, roomid=sender,
                         content=f'<msg><voicemsg endflag="1" length="{len(audio)}" voicelength="2000" /></msg>',
                         xml="<msgsource />")

    def push_file(self, sender: str, name: str, data: bytes, *, declared: int | None = None) -> pb.WxMsg:
        msg_id = self.new_id()
        path = os.path.join(self.files_dir, "File", f"{msg_id}-{name}")
        self._attachments[msg_id] = (path, data)
        size = len(data) if declared is None else declared
        ext = os.path.splitext(name)[1].lstrip(".")
        content = (f'<?xml version="1.0"?><msg><appmsg appid="" sdkver="0"><title>{name}</title><des></des>'
                   f'<type>6</type><appattach><totallen>{size}</totallen><fileext>{ext}</fileext></appattach>'
                   f'</appmsg><fromusername>{sender}</fromusername></msg>')
        return self.push(id=msg_id, type=49, sender=sender, roomid=sender, content=content, xml="<msgsource />",
                         extra=path)

    def _wait_receiving(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while not (self.receiving and self._msg is not None):
            if time.monotonic() > deadline:
                raise AssertionError("nobody asked the fake WeChatFerry for messages")
            time.sleep(0.02)

    # ------------------------------------------------------------------ what was sent
    def sent_to(self, receiver: str) -> list[Sent]:
        with self._lock:
            return [s for s in self.sent if s.receiver == receiver]

    def texts_to(self, receiver: str) -> list[str]:
        return [s.text for s in self.sent_to(receiver) if s.func == "text"]

    def wait_sent(self, receiver: str, count: int = 1, timeout: float = 20.0) -> list[Sent]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                got = [s for s in self.sent if s.receiver == receiver]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{receiver} got {len(got)} of {count} messages: {got}; errors {self.errors}")
                self._changed.wait(min(left, 0.2))

    # ------------------------------------------------------------------ the command socket
    def _serve(self) -> None:
        while self._running:
            sock = self._cmd
            if sock is None:
                return
            try:
                data = sock.recv()
            except pynng.Timeout:
                continue
            except pynng.NNGException:
                return
            req = pb.Request()
            try:
                req.ParseFromString(data)
                rsp = self._answer(req)
            except Exception as e:  # the real service logs and answers nothing
                self.errors.append(f"{type(e).__name__}: {e}")
                continue
            rsp.func = req.func
            try:
                sock.send(rsp.SerializeToString())
            except pynng.NNGException:
                return

    def _answer(self, req: pb.Request) -> pb.Response:
        name = pb.Functions.Name(req.func)
        self.calls.append(name)
        handler = getattr(self, "_" + name.lower(), None)
        if handler is None:
            self.errors.append(f"unexpected call {name}")
            return pb.Response(status=-1)
        return handler(req)

    def _func_is_login(self, req):
        return pb.Response(status=1 if self.logged_in else 0)

    def _func_get_self_wxid(self, req):
        return pb.Response(str=self.self_wxid if self.logged_in else "")

    def _func_get_user_info(self, req):
        return pb.Response(ui=pb.UserInfo(wxid=self.self_wxid, name=self.name, mobile="", home=self.files_dir))

    def _func_refresh_qrcode(self, req):
        return pb.Response(str="" if self.logged_in else "http://weixin.qq.com/x/fake")

    def _func_get_contacts(self, req):
        contacts = [pb.RpcContact(wxid=w, code=w, name=n) for w, n in self.contacts.items()]
        return pb.Response(contacts=pb.RpcContacts(contacts=contacts))

    def _func_exec_db_query(self, req):
        sql, rows = req.query.sql.strip(), []
        self.queries.append(sql)
        if req.query.db == "MicroMsg.db" and re.fullmatch(r"SELECT UserName, NickName FROM Contact;", sql):
            everyone = {**self.contacts, **{w: n for m in self.rooms.values() for w, n in m.items()}}
            for wxid, name in everyone.items():
                rows.append(pb.DbRow(fields=[pb.DbField(type=3, column="UserName", content=wxid.encode()),
                                             pb.DbField(type=3, column="NickName", content=name.encode())]))
        elif m := re.fullmatch(r"SELECT NickName FROM Contact WHERE UserName = '([^']*)';", sql):
            if m.group(1) in self.contacts:
                rows.append(pb.DbRow(fields=[pb.DbField(type=3, column="NickName",
                                                        content=self.contacts[m.group(1)].encode())]))
        elif m := re.fullmatch(r"SELECT RoomData FROM ChatRoom WHERE ChatRoomName = '([^']*)';", sql):
            members = self.rooms.get(m.group(1))
            if members is not None:
                blob = pb.RoomData(members=[pb.RoomData.RoomMember(wxid=w, name=n) for w, n in members.items()])
                rows.append(pb.DbRow(fields=[pb.DbField(type=4, column="RoomData",
                                                        content=blob.SerializeToString())]))
        else:
            self.errors.append(f"unexpected query {req.query.db}: {sql}")
        return pb.Response(rows=pb.DbRows(rows=rows))

    def _func_enable_recv_txt(self, req):
        if self._msg is None:
            self._msg = pynng.Pair1(send_timeout=2000)
            self._msg.listen(f"tcp://127.0.0.1:{self.port + 1}")
        self.receiving = True
        return pb.Response(status=0)

    def _func_disable_recv_txt(self, req):
        self.receiving = False
        return pb.Response(status=0)

    def _refused(self, receiver: str) -> int:
        for n, (who, status) in enumerate(self._send_failures):
            if who in (None, receiver):
                del self._send_failures[n]
                return status
        return 0

    def _record(self, sent: Sent) -> None:
        with self._changed:
            self.sent.append(sent)
            self._changed.notify_all()

    def _func_send_txt(self, req):
        status = self._refused(req.txt.receiver)
        if status == 0:
            self._record(Sent("text", req.txt.receiver, text=req.txt.msg, aters=req.txt.aters))
            self._echo(type=1, roomid=req.txt.receiver, content=req.txt.msg)
        return pb.Response(status=status)

    def _echo(self, **fields) -> None:
        if not (self.echo_sends and self.receiving and self._msg is not None):
            return
        room = fields["roomid"]
        self.push(sender=self.self_wxid, is_self=True, is_group=room.endswith("@chatroom"),
                  xml="<msgsource><silence>0</silence></msgsource>", **fields)

    def push_own(self, receiver: str, content: str) -> pb.WxMsg:
        """A text the account itself sent from the phone or the PC, to a person or a room."""
        return self.push(type=1, sender=self.self_wxid, roomid=receiver, is_self=True,
                         is_group=receiver.endswith("@chatroom"), content=content,
                         xml="<msgsource><silence>0</silence></msgsource>")

    def _send_path(self, req, kind: str):
        status = self._refused(req.file.receiver)
        if status == 0:
            try:  # read now: the sender may delete its copy once the service has it
                with open(req.file.path, "rb") as f:
                    data = f.read()
            except OSError as e:
                self.errors.append(f"{kind} {req.file.path}: {e}")
                return pb.Response(status=-1)
            self._record(Sent(kind, req.file.receiver, path=req.file.path, data=data))
            if kind == "image":
                self._echo(type=3, roomid=req.file.receiver, content="<msg><img /></msg>", extra=req.file.path)
        return pb.Response(status=status)

    def _func_send_img(self, req):
        return self._send_path(req, "image")

    def _func_send_file(self, req):
        return self._send_path(req, "file")

    def _func_download_attach(self, req):
        known = self._attachments.get(req.att.id)
        if known is None:
            return pb.Response(status=-1)
        path, data = known
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        return pb.Response(status=0)

    def _func_decrypt_image(self, req):
        src, dst = req.dec.src, req.dec.dst
        if not os.path.isfile(src):
            return pb.Response(str="")
        with open(src, "rb") as f:
            plain = bytes(b ^ DAT_KEY for b in f.read())
        ext = ".png" if plain.startswith(b"\x89PNG") else ".jpg"
        os.makedirs(dst, exist_ok=True)
        path = os.path.join(dst, os.path.splitext(os.path.basename(src))[0] + ext)
        with open(path, "wb") as f:
            f.write(plain)
        return pb.Response(str=path)

    def _func_get_audio_msg(self, req):
        audio = self._voices.get(req.am.id)
        if audio is None or not os.path.isdir(req.am.dir):
            return pb.Response(str="")
        path = os.path.join(req.am.dir, f"{req.am.id}.mp3")
        with open(path, "wb") as f:
            f.write(audio)
        return pb.Response(str=path)
