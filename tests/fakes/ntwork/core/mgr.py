"""The process-wide bridge between the native callbacks and the WeWork objects.

wcprobe reports every hooked client by a numeric client id, but a WeWork object only learns its pid
(from open/attach). The client's first notification, MT_READY_MSG, carries that pid; the manager uses
it to pair the two, and from then on routes the client's traffic to its WeWork by client id.
"""
import json
import threading

from ntwork import conf
from ntwork.const import notify_type
from ntwork.exception import WeWorkBindError, WeWorkVersionNotMatchError
from ntwork.simulator import SIM
from ntwork.utils.logger import get_logger
from ntwork.utils.singleton import Singleton
from ntwork.utils.xdg import get_helper_file
from ntwork.wc import wcprobe

log = get_logger("WeWorkManager")


class _Roster:
    """WeWork objects waiting for their READY, and the ones already paired, by client id."""

    def __init__(self):
        self._lock = threading.Lock()
        self.waiting = []
        self.paired = {}

    def enlist(self, wework):
        with self._lock:
            self.waiting.append(wework)

    def pair(self, client_id, pid):
        """Move the waiting object that opened `pid` to `paired`; None if there is none (or the client
        id is already taken)."""
        with self._lock:
            if client_id in self.paired:
                return None
            match = next((w for w in self.waiting if w.pid == pid), None)
            if match is not None:
                self.waiting.remove(match)
                self.paired[client_id] = match
            return match

    def lookup(self, client_id):
        with self._lock:
            return self.paired.get(client_id)

    def clear(self):
        with self._lock:
            self.waiting.clear()
            self.paired.clear()


class WeWorkMgr(metaclass=Singleton):
    # Class-level, not per object: a test may swap the singleton for a fresh one and back, while
    # wcprobe keeps calling the callbacks of whichever manager registered last. Both must see the
    # same roster.
    _roster = _Roster()

    def __init__(self):
        self._prepare_native_side(conf.DEFAULT_WEWORK_EXE_PATH, conf.DEFAULT_WEWORK_VERSION)
        wcprobe.init_callback(self._client_accepted, self._client_message, self._client_closed)

    def _prepare_native_side(self, exe_path, version):
        if version is None:
            version = wcprobe.get_install_wework_version()
        helper = get_helper_file(version)
        # Upstream checks that `helper` exists; the scenario decides that here.
        if not SIM.version_supported(version):
            raise WeWorkVersionNotMatchError()
        log.info("using helper for WeCom %s", version)
        wcprobe.init_env(helper, exe_path or "")

    def append_instance(self, wework):
        self._roster.enlist(wework)
        log.debug("instance registered, waiting for its client")

    # --- native callbacks (run on the hook's delivery thread) ---------------------------------------
    def _client_accepted(self, client_id):
        log.debug("client %d connected", client_id)

    def _client_message(self, client_id, raw):
        message = json.loads(raw)
        if message["type"] != notify_type.MT_READY_MSG:
            target = self._roster.lookup(client_id)
            if target is None:
                raise KeyError(client_id)  # traffic from a client nobody owns
            target.on_recv(message)
            return
        wework = self._roster.pair(client_id, message["data"]["pid"])
        if wework is None:
            # Raised, not logged: the simulator retries READY for a moment, because WeWork.open
            # stores the pid only after wcprobe.open has returned.
            raise WeWorkBindError()
        wework.bind_client_id(client_id)

    def _client_closed(self, client_id):
        log.debug("client %d disconnected", client_id)
        wework = self._roster.lookup(client_id)
        if wework is not None:
            wework.on_close()

    @classmethod
    def _sim_forget_instances(cls):
        """Simulator hook (SIM.reset): drop every WeWork of earlier tests."""
        cls._roster.clear()
