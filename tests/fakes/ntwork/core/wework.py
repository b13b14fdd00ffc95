"""`ntwork.core.wework.WeWork`: one hooked WeCom client, as ntwork 0.1.3 exposes it.

Outbound, every call becomes a JSON envelope {"type", "data"[, "extend"]} handed to wcprobe.send.
Queries put a fresh id in "extend" and block until a reply echoing it comes back through on_recv;
plain sends return wcprobe's bool straight away. Inbound notifications are emitted to handlers keyed
by str(type), then to MT_ALL.

Simulator additions (marked where they happen): calls that never reach the wire (refused for lack of
login, wait_login, get_login_info) are recorded, handler errors are reported to the simulator, and
query waits are capped by the scenario's `sync_timeout` so a simulated timeout is short.
"""
import json
import threading

from ntwork.const import notify_type, send_type
from ntwork.core.mgr import WeWorkMgr
from ntwork.exception import WeWorkNotLoginError
from ntwork.simulator import SIM as _SIM
from ntwork.utils import generate_guid, logger
from ntwork.wc import wcprobe

log = logger.get_logger("WeWorkInstance")

_QUIT = notify_type.MT_RECV_WEWORK_QUIT_MSG


class EventEmitter:
    """Stand-in for the pyee emitter upstream exposes as `event_emitter`: synchronous, in order of
    registration, on the emitting thread. Only the calls third-party code is known to use."""

    def __init__(self):
        self._lock = threading.Lock()
        self._handlers = {}

    def on(self, event, f=None):
        if f is None:  # decorator form
            return lambda func: self.on(event, func)
        with self._lock:
            self._handlers.setdefault(event, []).append(f)
        return f

    add_listener = on

    def remove_listener(self, event, f):
        with self._lock:
            bucket = self._handlers.get(event)
            if bucket and f in bucket:
                bucket.remove(f)

    def remove_all_listeners(self, event=None):
        with self._lock:
            if event is None:
                self._handlers = {}
            else:
                self._handlers.pop(event, None)

    def listeners(self, event):
        with self._lock:
            return list(self._handlers.get(event, ()))

    def event_names(self):
        with self._lock:
            return set(self._handlers)

    def emit(self, event, *args, **kwargs):
        # Snapshot first: a handler may register further handlers while we iterate.
        targets = self.listeners(event)
        for handler in targets:
            handler(*args, **kwargs)
        return len(targets) > 0


def _shielded(handler):
    """Run `handler` so that its exception is logged instead of unwinding into the delivery thread
    (one broken handler must not starve the others or kill the hook's thread)."""
    label = getattr(handler, "__name__", None) or repr(handler)

    def run(*args, **kwargs):
        try:
            handler(*args, **kwargs)
        except Exception as exc:
            log.error("handler %s failed and was skipped: %r", label, exc)
            _SIM.note_callback_error(label, exc)  # simulator addition

    return run


class _PendingQuery:
    """One query waiting for the reply that carries its id."""

    __slots__ = ("msg_type", "request", "_arrived", "_reply")

    def __init__(self, msg_type, request):
        self.msg_type = msg_type
        self.request = request
        self._arrived = threading.Event()
        self._reply = None

    def resolve(self, message):
        self._reply = message
        self._arrived.set()

    def outcome(self, timeout):
        """The reply's "data", or None if nothing arrived within `timeout` seconds."""
        self._arrived.wait(timeout)
        return None if self._reply is None else self._reply["data"]


class WeWork:
    # Class-level defaults, shadowed per object once set.
    client_id: int = 0
    pid: int = 0
    status: bool = False        # paired with a hooked client (READY seen, connection open)
    login_status: bool = False  # MT_USER_LOGIN_MSG seen and no logout/quit since

    def __init__(self):
        # Must stay free of wire traffic: callers build this object at import time.
        self.__wait_login_event = threading.Event()
        self.__req_data_cache = {}  # extend id -> _PendingQuery
        self.__login_info = {}
        self.event_emitter = EventEmitter()
        WeWorkMgr().append_instance(self)

    def __repr__(self):
        return f"WeWorkInstance(pid: {self.pid}, client_id: {self.client_id})"

    # --- handler registration -----------------------------------------------------------------------
    def on(self, msg_type, f):
        ids = msg_type if isinstance(msg_type, (list, tuple)) else (msg_type,)
        for one in ids:
            self.event_emitter.on(str(one), _shielded(f))

    def msg_register(self, msg_type):
        """Decorator: `@wework.msg_register(id_or_ids)`; gives the function back untouched."""
        def register(f):
            self.on(msg_type, f)
            return f
        return register

    # --- called by the manager ----------------------------------------------------------------------
    def bind_client_id(self, client_id):
        self.client_id = client_id
        self.status = True

    def on_close(self):
        self.login_status = False
        self.status = False
        # Quit handlers take only the instance; MT_ALL still gets a (synthetic) message.
        self.event_emitter.emit(str(_QUIT), self)
        self.event_emitter.emit(str(notify_type.MT_ALL), self, {"type": _QUIT, "data": {}})

    def on_recv(self, message):
        log.debug("received %s", message)
        kind = message["type"]
        if kind == notify_type.MT_USER_LOGIN_MSG:
            self.__note_login(message.get("data", {}))
        elif kind == notify_type.MT_USER_LOGOUT_MSG:
            self.login_status = False
            log.info("logged out (pid %d)", self.pid)

        # A reply to one of our queries goes to its waiter only; everything else is broadcast.
        pending = self.__req_data_cache.pop(message.get("extend"), None)
        if pending is not None:
            pending.resolve(message)
            return
        self.event_emitter.emit(str(kind), self, message)
        self.event_emitter.emit(str(notify_type.MT_ALL), self, message)

    def __note_login(self, info):
        self.login_status = True
        # Store the info before releasing wait_login(), so a waiter never reads the stale value.
        self.__login_info = info
        self.__wait_login_event.set()
        # Indexing (not .get) is deliberate: like upstream, a login payload without "username"
        # fails here, before any handler sees the notification.
        log.info("logged in as %s", info["username"])

    # --- lifecycle ----------------------------------------------------------------------------------
    def open(self, smart=False):
        self.pid = wcprobe.open(smart)
        log.info("WeCom opened, pid %d", self.pid)
        return self.pid != 0

    def attach(self, pid):
        self.pid = pid
        log.info("attaching to WeCom pid %d", pid)
        return wcprobe.attach(pid)

    def detach(self):
        log.info("detaching from WeCom pid %d", self.pid)
        return wcprobe.detach(self.pid)

    def wait_login(self, timeout=None):
        """Block until the first login (or `timeout`); deliberately returns nothing either way."""
        log.info("waiting for the user to log in")
        self.__wait_login_event.wait(timeout)
        _SIM.record("wait_login", None, {"timeout": timeout}, None,  # simulator addition
                    logged_in=self.login_status)

    def get_login_info(self):
        _SIM.record("get_login_info", None, {}, self.__login_info)  # simulator addition
        return self.__login_info

    # --- transport ----------------------------------------------------------------------------------
    def __send(self, msg_type, data=None, extend=None):
        if not self.login_status:
            _SIM.record_not_logged_in(msg_type, data)  # simulator addition
            raise WeWorkNotLoginError()
        envelope = {"type": msg_type, "data": data if data is not None else {}}
        if extend is not None:
            envelope["extend"] = extend
        log.debug("to client %d (pid %d): %s", self.client_id, self.pid, envelope)
        return wcprobe.send(self.client_id, json.dumps(envelope))

    def __send_sync(self, msg_type, data=None, timeout=10):
        query = _PendingQuery(msg_type, data)
        query_id = self.__fresh_query_id()
        # Registered before sending: the reply may arrive while wcprobe.send is still running.
        # (If sending raises, the entry stays behind, as upstream's does.)
        self.__req_data_cache[query_id] = query
        self.__send(msg_type, data, query_id)
        return query.outcome(_SIM.sync_wait(timeout))  # simulator addition: capped wait

    def __fresh_query_id(self):
        # generate_guid is clock-based and can repeat within one tick.
        candidate = generate_guid("req")
        while candidate in self.__req_data_cache:
            candidate = generate_guid("req")
        return candidate

    def __ask(self, msg_type, **fields):
        return self.__send_sync(msg_type, fields)

    def __tell(self, msg_type, **fields):
        return self.__send(msg_type, fields)

    # --- queries: reply "data" or None on timeout ----------------------------------------------------
    def get_self_info(self):
        return self.__ask(send_type.MT_GET_SELF_MSG)

    def get_inner_contacts(self, page_num=1, page_size=500):
        return self.__ask(send_type.MT_GET_INNER_CONTACTS_MSG, page_num=page_num, page_size=page_size)

    def get_external_contacts(self, page_num=1, page_size=500):
        return self.__ask(send_type.MT_GET_EXTERNAL_CONTACTS_MSG, page_num=page_num, page_size=page_size)

    def get_contact_detail(self, user_id):
        return self.__ask(send_type.MT_GET_CONTACT_DETAIL_MSG, user_id=user_id)

    def get_rooms(self, page_num=1, page_size=500):
        return self.__ask(send_type.MT_GET_ROOMS_MSG, page_num=page_num, page_size=page_size)

    def get_room_members(self, conversation_id, page_num=1, page_size=500):
        return self.__ask(send_type.MT_GET_ROOM_MEMBERS_MSG, conversation_id=conversation_id,
                          page_num=page_num, page_size=page_size)

    def c2c_cdn_download(self, file_id, aes_key, file_size, file_type, save_path):
        return self.__ask(send_type.MT_C2CCDN_DOWNLOAD_MSG, file_id=file_id, aes_key=aes_key,
                          file_size=file_size, file_type=file_type, save_path=save_path)

    def wx_cdn_download(self, url, auth_key, size, save_path):
        # No aes_key parameter in 0.1.3 (callers needing it use __send_sync directly).
        return self.__ask(send_type.MT_WXCDN_DOWNLOAD_MSG, url=url, auth_key=auth_key, size=size,
                          save_path=save_path)

    # --- sends: wcprobe's bool, nothing waits for delivery ---------------------------------------------
    def send_text(self, conversation_id, content):
        return self.__tell(send_type.MT_SEND_TEXT_MSG, conversation_id=conversation_id, content=content)

    def send_room_at_msg(self, conversation_id, content, at_list):
        return self.__tell(send_type.MT_SEND_ROOM_AT_MSG, conversation_id=conversation_id,
                           content=content, at_list=at_list)

    def send_card(self, conversation_id, user_id):
        return self.__tell(send_type.MT_SEND_CARD_MSG, conversation_id=conversation_id, user_id=user_id)

    def send_link_card(self, conversation_id, title, desc, url, image_url):
        return self.__tell(send_type.MT_SEND_LINK_MSG, conversation_id=conversation_id, title=title,
                           desc=desc, url=url, image_url=image_url)

    # Media go out as a path the WeCom process reads later, under the wire key "file".
    def send_image(self, conversation_id, file_path):
        return self.__tell(send_type.MT_SEND_IMAGE_MSG, conversation_id=conversation_id, file=file_path)

    def send_file(self, conversation_id, file_path):
        return self.__tell(send_type.MT_SEND_FILE_MSG, conversation_id=conversation_id, file=file_path)

    def send_video(self, conversation_id, file_path):
        return self.__tell(send_type.MT_SEND_VIDEO_MSG, conversation_id=conversation_id, file=file_path)

    def send_gif(self, conversation_id, file_path):
        return self.__tell(send_type.MT_SEND_GIF_MSG, conversation_id=conversation_id, file=file_path)
