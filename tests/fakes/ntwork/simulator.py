"""The simulated WeCom client behind the fake `wcprobe`, and its control surface for tests.

NOT part of the real ntwork: only tests import this module (`ntwork.simulator.SIM`); production code
only does `import ntwork` and uses the real API.

In-process:   SIM.configure(**scenario), SIM.inject(type, data), SIM.crash(), SIM.logout(),
              SIM.login(), SIM.calls, SIM.wait_idle(), SIM.wait_for_call(...), SIM.reset().
Cross-process: with NTWORK_SIM_DIR set at import, the scenario comes from $NTWORK_SIM_DIR/scenario.json,
              each call record is appended to $NTWORK_SIM_DIR/calls.jsonl, and command files
              $NTWORK_SIM_DIR/inbox/<seq>.json are executed in name order and deleted
              (see tests/fakes/ntwork_control.py).

Every record is {"t": unix time, "method": name, "type": wire type or None, "data": request data,
"result": what the caller got} plus, sometimes, "error" or "logged_in". Real API calls use the WeWork
method names (send_text, get_rooms, c2c_cdn_download, open, wait_login, get_login_info, exit_, ...; a
raw `_WeWork__send_sync(11171, ...)` is recorded as wx_cdn_download); simulator events are named
"sim.<event>" (sim.import, sim.inject, sim.crash, sim.logout, sim.login, sim.configure,
sim.callback_error, sim.inbox_error).
"""
from __future__ import annotations

import base64
import copy
import itertools
import json
import logging
import os
import queue
import struct
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Optional

from ntwork.const import notify_type as nt
from ntwork.const import send_type as st

log = logging.getLogger("ntwork.simulator")

SIM_DIR_ENV = "NTWORK_SIM_DIR"

SYNC_METHODS = {
    st.MT_GET_SELF_MSG: "get_self_info",
    st.MT_GET_INNER_CONTACTS_MSG: "get_inner_contacts",
    st.MT_GET_EXTERNAL_CONTACTS_MSG: "get_external_contacts",
    st.MT_GET_ROOMS_MSG: "get_rooms",
    st.MT_GET_CONTACT_DETAIL_MSG: "get_contact_detail",
    st.MT_GET_ROOM_MEMBERS_MSG: "get_room_members",
    st.MT_C2CCDN_DOWNLOAD_MSG: "c2c_cdn_download",
    st.MT_WXCDN_DOWNLOAD_MSG: "wx_cdn_download",
}
ASYNC_METHODS = {
    st.MT_SEND_TEXT_MSG: "send_text",
    st.MT_SEND_ROOM_AT_MSG: "send_room_at_msg",
    st.MT_SEND_CARD_MSG: "send_card",
    st.MT_SEND_LINK_MSG: "send_link_card",
    st.MT_SEND_IMAGE_MSG: "send_image",
    st.MT_SEND_FILE_MSG: "send_file",
    st.MT_SEND_VIDEO_MSG: "send_video",
    st.MT_SEND_GIF_MSG: "send_gif",
}
METHOD_BY_TYPE = {**SYNC_METHODS, **ASYNC_METHODS}
TYPE_BY_METHOD = {name: t for t, name in METHOD_BY_TYPE.items()}

DEFAULT_LOGIN_INFO = {"user_id": "1688854420437671", "username": "Bot", "nickname": ""}

DEFAULT_SCENARIO: dict = {
    # dict delivered with MT_USER_LOGIN_MSG and answered by get_self_info
    "login_info": DEFAULT_LOGIN_INFO,
    # seconds between open()/attach() and READY+LOGIN; None = the user never logs in
    "login_delay": 0.05,
    # seconds after login during which get_rooms / get_*_contacts answer "not ready" (see not_ready)
    "data_ready_after": 0.0,
    # list of contact dicts (answered as {"contact_list": page}) or a dict answered as is
    "external_contacts": [],
    "inner_contacts": [],
    # list of {"conversation_id": "R:…", "nickname": …} (answered as {"room_list": page}) or a dict
    "rooms": [],
    # {conversation_id: list of {"user_id", "room_nickname", "username"} or a dict answered as is}
    "room_members": {},
    # {method: n}: the first n calls fail (sync: reply data None at once; async/open/attach: False/0)
    "fail": {},
    # {method: n}: the first n sync calls get no reply (the caller waits sync_timeout, gets None)
    "timeout": {},
    # cap on every sync wait (seconds; the real default is 10); None = no cap
    "sync_timeout": 0.5,
    # {method: [bool, ...]}: results of async sends, consumed in order, then True
    "send_results": {},
    # {file_id or url: base64 text or a file path (in-process also bytes)} for 11170/11171 downloads
    "cdn_files": {},
    # replies while data is not ready; default rooms {"page_num", "page_size"} (no room_list), contacts {}
    "not_ready": {},
    # what get_install_wework_version() answers, and whether ntwork "has a helper" for it
    "installed_version": "4.0.8.6027",
    "version_match": True,
}
SCENARIO_KEYS = frozenset(DEFAULT_SCENARIO)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


@dataclass
class _Client:
    client_id: int
    pid: int
    smart: bool
    connected: bool = True
    ready: bool = False
    logged_in: bool = False


def _page(items: list, data: dict) -> list:
    try:
        num = max(int(data.get("page_num") or 1), 1)
        size = max(int(data.get("page_size") or 500), 1)
    except (TypeError, ValueError):
        num, size = 1, 500
    return copy.deepcopy(items[(num - 1) * size:num * size])


def _listing(value: Any, key: str, data: dict) -> dict:
    if isinstance(value, dict):
        return copy.deepcopy(value)
    return {key: _page(list(value or []), data)}


def make_png(width: int = 8, height: int = 8, rgb: tuple = (200, 60, 60)) -> bytes:
    """A valid solid-colour PNG (stdlib only)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


_SILK_CACHE: dict = {}


def make_silk(seconds: float = 0.5, rate: int = 24000, freq: float = 440.0) -> bytes:
    """A valid SILK voice file (Tencent variant, 0x02-prefixed, as WeChat/WeCom clients store voice)
    encoded with pilk from a sine tone."""
    key = (seconds, rate, freq)
    if key not in _SILK_CACHE:
        import array
        import math
        import sys

        import pilk

        samples = array.array("h", (int(8000 * math.sin(2 * math.pi * freq * i / rate))
                                    for i in range(int(seconds * rate))))
        if sys.byteorder == "big":  # pilk wants little-endian 16-bit PCM
            samples.byteswap()
        folder = tempfile.mkdtemp(prefix="ntwork-sim-")
        pcm, silk = os.path.join(folder, "tone.pcm"), os.path.join(folder, "tone.silk")
        try:
            with open(pcm, "wb") as f:
                f.write(samples.tobytes())
            pilk.encode(pcm, silk, pcm_rate=rate, tencent=True)
            with open(silk, "rb") as f:
                _SILK_CACHE[key] = f.read()
        finally:
            for path in (pcm, silk):
                if os.path.exists(path):
                    os.remove(path)
            os.rmdir(folder)
    return _SILK_CACHE[key]


def _decode_cdn_value(value: Any) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        if os.path.isfile(value):
            with open(value, "rb") as f:
                return f.read()
        try:
            return base64.b64decode(value, validate=True)
        except Exception as exc:
            raise ValueError(f"cdn_files value is neither an existing file nor base64: {value[:40]!r}") from exc
    raise ValueError(f"cdn_files value must be base64 text, a path or bytes, not {type(value).__name__}")


class Simulator:
    """One simulated PC WeCom installation (one account) that any number of hooked clients talk to."""

    def __init__(self, sim_dir: Optional[str] = None):
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._queue: "queue.Queue[tuple]" = queue.Queue()
        self._thread: Optional[threading.Thread] = None
        self._timers: dict = {}
        self._generation = 0
        self._callbacks: Optional[tuple] = None
        self._ids = itertools.count(1)
        self.calls: list = []
        self.callback_errors: list = []
        self.sim_dir = sim_dir
        self._calls_path = os.path.join(sim_dir, "calls.jsonl") if sim_dir else None
        self._inbox = os.path.join(sim_dir, "inbox") if sim_dir else None
        self._watcher: Optional[threading.Thread] = None
        self._closed = threading.Event()
        self._reset_state()
        if sim_dir:
            os.makedirs(self._inbox, exist_ok=True)
            scenario_path = os.path.join(sim_dir, "scenario.json")
            if os.path.exists(scenario_path):
                with open(scenario_path, encoding="utf-8") as f:
                    self.configure(**json.load(f))
            self._watcher = threading.Thread(target=self._watch_inbox, name="ntwork-sim-inbox", daemon=True)
            self._watcher.start()

    # ------------------------------------------------------------------ state / scenario
    def _reset_state(self) -> None:
        self.scenario = copy.deepcopy(DEFAULT_SCENARIO)
        self._fail: dict = {}
        self._timeout: dict = {}
        self._send_results: dict = {}
        self._cdn: dict = {}
        self._kinds: dict = {}  # file_id/url -> "voice" | "image" | "file" | "video", learnt from injects
        self._clients: dict = {}
        self._login_time: Optional[float] = None
        self.exited = False

    @staticmethod
    def _method_key(key: Any) -> str:
        if isinstance(key, int) or (isinstance(key, str) and key.isdigit()):
            return METHOD_BY_TYPE.get(int(key), str(key))
        return str(key)

    def configure(self, **scenario: Any) -> None:
        """Set scenario keys (others keep their value). Counters (fail, timeout, send_results) restart
        from the given values."""
        unknown = set(scenario) - SCENARIO_KEYS
        if unknown:
            raise ValueError(f"unknown ntwork simulator scenario keys: {sorted(unknown)}; known: {sorted(SCENARIO_KEYS)}")
        with self._lock:
            for key, value in scenario.items():
                if key == "cdn_files":
                    self._cdn.update({k: _decode_cdn_value(v) for k, v in (value or {}).items()})
                    value = {k: (v if isinstance(v, str) else f"<{len(v)} bytes>") for k, v in (value or {}).items()}
                elif key == "fail":
                    self._fail = {self._method_key(k): int(v) for k, v in (value or {}).items()}
                elif key == "timeout":
                    self._timeout = {self._method_key(k): int(v) for k, v in (value or {}).items()}
                elif key == "send_results":
                    self._send_results = {self._method_key(k): [bool(x) for x in v] for k, v in (value or {}).items()}
                elif key == "login_info" and not isinstance(value, dict):
                    raise ValueError("login_info must be a dict")
                self.scenario[key] = copy.deepcopy(value)

    def reset(self) -> None:
        """Back to the default scenario: no clients, no calls, pending deliveries dropped, and the
        ntwork manager forgets every WeWork instance (create a new one per test)."""
        with self._lock:
            self._generation += 1
            for token, timer in list(self._timers.items()):
                timer.cancel()
                self._pending -= 1
            self._timers.clear()
            self._idle.notify_all()
            self._reset_state()
            self.calls.clear()
            self.callback_errors.clear()
        try:
            from ntwork.core.mgr import WeWorkMgr
            WeWorkMgr._sim_forget_instances()
        except ImportError:  # pragma: no cover
            pass

    def installed_version(self) -> str:
        return str(self.scenario["installed_version"])

    def version_supported(self, version: str) -> bool:
        return bool(self.scenario["version_match"])

    # ------------------------------------------------------------------ recording
    def record(self, method: str, type_: Optional[int], data: Any, result: Any, **extra: Any) -> dict:
        rec = {"t": time.time(), "method": method, "type": type_, "data": copy.deepcopy(data),
               "result": copy.deepcopy(result)}
        rec.update(extra)
        with self._lock:
            self.calls.append(rec)
            if self._calls_path:
                line = json.dumps(rec, ensure_ascii=False, default=repr)
                if not line.isascii() and not _encodable(line):
                    line = json.dumps(rec, default=repr)  # a lone surrogate: kept as its JSON escape
                with open(self._calls_path, "a", encoding="utf-8") as f:
                    f.write(line + "\n")
                    f.flush()
        return rec

    def record_not_logged_in(self, msg_type: int, data: Any) -> None:
        self.record(METHOD_BY_TYPE.get(msg_type, str(msg_type)), msg_type, data or {}, None,
                    error="WeWorkNotLoginError")

    def note_import(self, log_levels: dict) -> None:
        self.log_levels = log_levels
        self.record("sim.import", None, {"log_levels": log_levels, "sim_dir": self.sim_dir,
                                         "pid": os.getpid()}, None)

    def note_callback_error(self, name: str, exc: BaseException) -> None:
        self.callback_errors.append((name, exc))
        self.record("sim.callback_error", None, {"function": name, "error": f"{type(exc).__name__}: {exc}"}, None)

    def calls_of(self, method: str) -> list:
        with self._lock:
            return [c for c in self.calls if c["method"] == method]

    def wait_for_call(self, method: str, predicate: Optional[Callable[[dict], bool]] = None,
                      timeout: float = 5.0, since: int = 0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                found = [c for c in self.calls[since:] if c["method"] == method and (predicate is None or predicate(c))]
            if found:
                return found[0]
            if time.monotonic() > deadline:
                raise AssertionError(f"no {method!r} call within {timeout} s; calls: {[c['method'] for c in self.calls]}")
            time.sleep(0.01)

    def sync_wait(self, timeout: Optional[float]) -> Optional[float]:
        cap = self.scenario.get("sync_timeout")
        if cap is None:
            return timeout
        return cap if timeout is None else min(timeout, cap)

    # ------------------------------------------------------------------ delivery thread
    def set_callbacks(self, accept_cb, recv_cb, close_cb) -> None:
        with self._lock:
            self._callbacks = (accept_cb, recv_cb, close_cb)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="ntwork-sim-callback", daemon=True)
                self._thread.start()

    def _enqueue(self, kind: str, payload: Any = None) -> None:
        with self._lock:
            self._pending += 1
            self._queue.put((self._generation, kind, payload))
        self._ensure_thread()

    def _schedule(self, delay: float, kind: str, payload: Any = None) -> None:
        token = object()

        def fire():
            with self._lock:
                if self._timers.pop(token, None) is None:
                    return
                self._queue.put((self._generation, kind, payload))  # the pending count carries over
            self._ensure_thread()

        timer = threading.Timer(max(delay, 0.0), fire)
        timer.daemon = True
        with self._lock:
            self._pending += 1
            self._timers[token] = timer
        timer.start()

    def _run(self) -> None:
        while True:
            generation, kind, payload = self._queue.get()
            if kind == "stop":
                with self._lock:
                    self._pending -= 1
                    self._idle.notify_all()
                return
            try:
                if generation == self._generation:
                    self._process(kind, payload)
            except Exception as exc:  # a native thread must survive a Python error
                log.exception("ntwork simulator: delivery of %s failed", kind)
                self.note_callback_error(kind, exc)
            finally:
                with self._lock:
                    self._pending -= 1
                    self._idle.notify_all()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until every scheduled login and injected event has been delivered (handlers done)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def _deliver(self, client_id: int, message: dict) -> None:
        if self._callbacks is None:
            return
        self._callbacks[1](client_id, json.dumps(message, ensure_ascii=False))

    def _process(self, kind: str, payload: Any) -> None:
        if kind == "connect":
            self._process("ready", payload)
            self._process("login", payload)
        elif kind == "ready":
            client: _Client = payload
            if not client.connected:
                return
            if self._callbacks:
                self._callbacks[0](client.client_id)
            # WeWork.open stores the pid only after wcprobe.open returns: tolerate that tiny window
            # like a real hook whose READY always comes later; a bind that keeps failing is reported.
            deadline = time.monotonic() + 1.0
            while True:
                try:
                    self._deliver(client.client_id, {"type": nt.MT_READY_MSG, "data": {"pid": client.pid}})
                    break
                except Exception as exc:
                    if type(exc).__name__ != "WeWorkBindError" or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            client.ready = True
        elif kind == "login":
            client = payload
            if not (client.connected and client.ready):
                return
            client.logged_in = True
            self._login_time = time.monotonic()
            self._deliver(client.client_id, {"type": nt.MT_USER_LOGIN_MSG,
                                             "data": copy.deepcopy(self.scenario["login_info"])})
        elif kind == "relogin":
            for client in self._live_clients(ready=True):
                client.logged_in = True
                self._login_time = time.monotonic()
                self._deliver(client.client_id, {"type": nt.MT_USER_LOGIN_MSG,
                                                 "data": copy.deepcopy(self.scenario["login_info"])})
        elif kind == "message":
            targets = self._live_clients(logged_in=True)
            if not targets:
                self.record("sim.dropped", payload.get("type"), payload.get("data"), None,
                            error="no logged-in client to deliver to")
            for client in targets:
                self._deliver(client.client_id, payload)
        elif kind == "logout":
            for client in self._live_clients(logged_in=True):
                client.logged_in = False
                self._deliver(client.client_id, {"type": nt.MT_USER_LOGOUT_MSG, "data": {}})
        elif kind == "close":
            self._close(payload)

    def _live_clients(self, ready: bool = False, logged_in: bool = False) -> list:
        with self._lock:
            return [c for c in self._clients.values()
                    if c.connected and (not ready or c.ready) and (not logged_in or c.logged_in)]

    def _close(self, clients: Optional[list]) -> None:
        with self._lock:
            targets = [c for c in (clients if clients is not None else self._clients.values()) if c.connected]
            for c in targets:
                c.connected = c.ready = c.logged_in = False
        for c in targets:
            if self._callbacks:
                self._callbacks[2](c.client_id)

    # ------------------------------------------------------------------ wire (called by wcprobe)
    def _consume(self, counters: dict, method: str) -> bool:
        with self._lock:
            left = counters.get(method, 0)
            if left > 0:
                counters[method] = left - 1
                return True
            return False

    def _new_client(self, smart: bool, pid: Optional[int] = None) -> _Client:
        n = next(self._ids)
        client = _Client(client_id=n, pid=pid if pid else 20000 + n, smart=smart)
        self._clients[client.client_id] = client
        delay = self.scenario.get("login_delay")
        if delay is not None:
            # READY then LOGIN, both from the callback thread, after the configured delay
            self._schedule(max(float(delay), 0.01), "connect", client)
        return client

    def wire_open(self, smart: bool) -> int:
        with self._lock:
            pid = 0 if self._consume(self._fail, "open") else self._new_client(bool(smart)).pid
        self.record("open", None, {"smart": smart}, pid)
        return pid

    def wire_attach(self, pid: int) -> bool:
        with self._lock:
            ok = not self._consume(self._fail, "attach")
            if ok:
                self._new_client(True, pid=int(pid))
        self.record("attach", None, {"pid": pid}, ok)
        return ok

    def wire_detach(self, pid: int) -> bool:
        with self._lock:
            clients = [c for c in self._clients.values() if c.pid == pid and c.connected]
        if clients:
            self._enqueue("close", clients)
        self.record("detach", None, {"pid": pid}, bool(clients))
        return bool(clients)

    def wire_exit(self) -> bool:
        with self._lock:
            self.exited = True
        self.record("exit_", None, {}, True)
        self._close(None)  # synchronously: once exit_() returns, login_status is False
        return True

    def wire_send(self, client_id: int, payload: str) -> bool:
        message = json.loads(payload)
        msg_type = message.get("type")
        data = message.get("data") or {}
        extend = message.get("extend")
        method = METHOD_BY_TYPE.get(msg_type, str(msg_type))
        with self._lock:
            client = self._clients.get(client_id)
            connected = bool(client and client.connected)
        if extend is None:
            if not connected:
                result, error = False, "client not connected"
            elif self._consume(self._fail, method):
                result, error = False, "fail"
            else:
                with self._lock:
                    results = self._send_results.get(method)
                    result = results.pop(0) if results else True
                error = None
            self.record(method, msg_type, data, result, **({"error": error} if error else {}))
            return result
        # a sync request: answer through the receive callback, from this thread, before returning
        # (so a sync call made inside a handler on the callback thread cannot deadlock)
        if not connected:
            self.record(method, msg_type, data, None, error="client not connected")
            return False
        if self._consume(self._timeout, method):
            self.record(method, msg_type, data, None, error="timeout")
            return True
        if self._consume(self._fail, method):
            reply, error = None, "fail"
        elif msg_type not in SYNC_METHODS:
            self.record(method, msg_type, data, None, error="unknown request type (no reply)")
            return True
        else:
            reply, error = self._answer(method, data)
        self.record(method, msg_type, data, reply, **({"error": error} if error else {}))
        self._deliver(client_id, {"type": msg_type, "data": reply, "extend": extend})
        return True

    # ------------------------------------------------------------------ the model
    def _data_ready(self) -> bool:
        after = float(self.scenario.get("data_ready_after") or 0)
        return self._login_time is None or time.monotonic() - self._login_time >= after

    def _not_ready(self, method: str, data: dict) -> dict:
        override = self.scenario.get("not_ready") or {}
        if method in override:
            return copy.deepcopy(override[method])
        if method == "get_rooms":
            return {"page_num": data.get("page_num", 1), "page_size": data.get("page_size", 500)}
        return {}

    def _answer(self, method: str, data: dict) -> tuple:
        s = self.scenario
        if method == "get_self_info":
            return copy.deepcopy(s["login_info"]), None
        if method in ("get_rooms", "get_external_contacts", "get_inner_contacts") and not self._data_ready():
            return self._not_ready(method, data), "data not ready"
        if method == "get_rooms":
            return _listing(s["rooms"], "room_list", data), None
        if method == "get_external_contacts":
            return _listing(s["external_contacts"], "contact_list", data), None
        if method == "get_inner_contacts":
            return _listing(s["inner_contacts"], "contact_list", data), None
        if method == "get_room_members":
            members = (s["room_members"] or {}).get(data.get("conversation_id"), [])
            return _listing(members, "member_list", data), None
        if method == "get_contact_detail":
            for source in (s["external_contacts"], s["inner_contacts"]):
                items = source if isinstance(source, list) else next(
                    (v for v in source.values() if isinstance(v, list)), [])
                for item in items:
                    if isinstance(item, dict) and item.get("user_id") == data.get("user_id"):
                        return copy.deepcopy(item), None
            return {}, "unknown user_id"
        if method in ("c2c_cdn_download", "wx_cdn_download"):
            return self._download(method, data)
        return {}, None  # pragma: no cover

    def _download(self, method: str, data: dict) -> tuple:
        key = data.get("file_id") if method == "c2c_cdn_download" else data.get("url")
        save_path = data.get("save_path")
        content = self._cdn.get(key)
        if content is None:
            kind = self._kinds.get(key)
            if kind is None:
                image = data.get("file_type") == 2 if method == "c2c_cdn_download" else True
                kind = "image" if image else "file"
            if kind == "voice":
                content = make_silk()
            elif kind == "image":
                content = make_png()
            else:
                content = f"ntwork simulator {kind} {key}\n".encode()
        if not save_path or not os.path.isabs(save_path) or not os.path.isdir(os.path.dirname(save_path)):
            return None, f"save_path must be an absolute path in an existing folder: {save_path!r}"
        with open(save_path, "wb") as f:
            f.write(content)
        return {"save_path": save_path, "file_size": len(content)}, None

    # ------------------------------------------------------------------ control
    def inject(self, msg_type: Any, data: Optional[dict] = None) -> None:
        """Deliver an inbound notification on the callback thread (after earlier ones). Accepts
        `inject(11041, {...})` or a whole message `inject({"type": 11041, "data": {...}})`."""
        message = dict(msg_type) if isinstance(msg_type, dict) else {"type": int(msg_type), "data": data or {}}
        message = json.loads(json.dumps(message))  # the wire is JSON: fail here, not in a handler
        data = message.get("data")
        # hostile payloads (tests/data/hostile/ntwork) may carry data that is no object: delivered as is
        cdn = (data.get("cdn") or {}) if isinstance(data, dict) else {}
        kind = {nt.MT_RECV_VOICE_MSG: "voice", nt.MT_RECV_IMAGE_MSG: "image", nt.MT_RECV_FILE_MSG: "file",
                nt.MT_RECV_VIDEO_MSG: "video"}.get(message["type"])
        if kind and isinstance(cdn, dict):
            with self._lock:
                for key in ("file_id", "url"):
                    if cdn.get(key):
                        self._kinds[cdn[key]] = kind
        self.record("sim.inject", message["type"], message.get("data"), None)
        self._enqueue("message", message)

    def crash(self) -> None:
        """The WeCom process dies: every hook connection closes (on_close on the callback thread)."""
        self.record("sim.crash", None, {}, None)
        self._enqueue("close", None)

    def logout(self) -> None:
        self.record("sim.logout", None, {}, None)
        self._enqueue("logout")

    def login(self) -> None:
        """The user logs in again (after logout): MT_USER_LOGIN_MSG to every connected client."""
        self.record("sim.login", None, {}, None)
        self._enqueue("relogin")

    @property
    def logged_in(self) -> bool:
        return bool(self._live_clients(logged_in=True))

    def close(self) -> None:
        """Stop the simulator's threads (tests call this when unloading the package)."""
        self._closed.set()
        with self._lock:
            for timer in self._timers.values():
                timer.cancel()
                self._pending -= 1
            self._timers.clear()
            if self._thread is not None and self._thread.is_alive():
                self._pending += 1
                self._queue.put((self._generation, "stop", None))

    # ------------------------------------------------------------------ cross-process inbox
    def _watch_inbox(self) -> None:
        while not self._closed.is_set():
            try:
                names = sorted(n for n in os.listdir(self._inbox) if n.endswith(".json"))
            except OSError:
                names = []
            for name in names:
                path = os.path.join(self._inbox, name)
                try:
                    with open(path, encoding="utf-8") as f:
                        command = json.load(f)
                    os.remove(path)
                except (OSError, ValueError) as exc:
                    self.record("sim.inbox_error", None, {"file": name}, None, error=repr(exc))
                    try:
                        os.remove(path)
                    except OSError:
                        pass
                    continue
                try:
                    self.execute(command)
                except Exception as exc:
                    self.record("sim.inbox_error", None, {"file": name, "command": command}, None, error=repr(exc))
            self._closed.wait(0.02)

    def execute(self, command: dict) -> None:
        """Run one inbox command: {"inject": {"type", "data"}}, {"crash": true}, {"logout": true},
        {"login": true} or {"configure": {scenario keys}}."""
        known = {"inject", "crash", "logout", "login", "configure"}
        unknown = set(command) - known
        if unknown:
            raise ValueError(f"unknown inbox command(s) {sorted(unknown)}")
        if "configure" in command:
            self.configure(**command["configure"])
            self.record("sim.configure", None, command["configure"], None)
        if "inject" in command:
            self.inject(command["inject"])
        if command.get("logout"):
            self.logout()
        if command.get("login"):
            self.login()
        if command.get("crash"):
            self.crash()


SIM = Simulator(os.environ.get(SIM_DIR_ENV) or None)
