"""The LinkAI client: the LinkAI console pushes settings and messages into the running daemon.

app.py calls ``start(channel)`` in a thread at start-up when ``use_linkai`` is on. With a
``linkai_api_key`` the client connects to ``linkai_client_host:linkai_client_port`` (JSON
lines over TCP), logs in with the key, reports this daemon's settings and the channel's
status, then applies the settings LinkAI pushes (common/linkai_settings.py) and sends the
messages it pushes to the named session through the channel (with several channels, see
push_target). A lost connection is opened again, waiting 1 s, 2 s, 4 s ... up to
``linkai_client_reconnect_max`` between attempts; the wait starts again at 1 s only after a
connection stayed up STABLE_CONNECTION seconds past its login. A login refused with 401/403
(the key) is final; any other failed login is tried again. app.py's stop closes the client.

What comes from the ``linkai`` package and what does not: the protocol is the SDK's (its
login packet, its handling of LOGIN / CONFIG / PUSH messages, its channel-status and
local-config packets, PushMsg and the on_message / on_config callbacks). Its connection
handling is replaced, because as shipped (0.2.0) it cannot run inside this daemon: its
threads are not daemon threads and never end (the process could not exit), connect and
receive have no timeout, the heartbeat loop spins without sleeping while it is connected
without a client id (a first login not answered yet, or refused), retries are at a fixed interval and end after 120
failures, it accepts only LinkAI's domains (no loopback for a test server), it keeps its
client id in ./client_config.json and its logger writes to stdout (the terminal channel's
conversation). The SDK's private helpers used here are pinned by requirements.txt.

Start-up never waits for any of this: everything runs on the client's own daemon thread.
"""
from __future__ import annotations

import json
import logging
import os
import random
import socket
import threading
import time
from typing import Any

from linkai import LinkAIClient, PushMsg

from common.log import logger

CONNECT_TIMEOUT = 10.0  # seconds to open the TCP connection
HEARTBEAT_INTERVAL = 30.0  # the SDK's default
LOGIN_TIMEOUT = 30.0  # a server that takes the connection but never answers the login is left
RECONNECT_FIRST = 1.0
MAX_LINE_BYTES = 1024 * 1024  # a LinkAI message is a few KB; a longer line is a broken or hostile server
CLIENT_ID_FILE = "linkai_client.json"  # in appdata_dir
LEGACY_CLIENT_ID_FILE = "client_config.json"  # where the original (the SDK) kept it: the working folder
FINAL_LOGIN_CODES = (401, 403)  # the key is wrong or not allowed: asking again cannot help
# A connection counts as good (the back-off starts again at RECONNECT_FIRST) only once it
# has stayed up this long after a login: a server that logs in and closes at once is
# otherwise reconnected to every second, sending the key and the settings each time.
STABLE_CONNECTION = 60.0

# The running client, as in the original (its channels import it to report logins).
chat_client = None  # type: ChatClient | None


class _ToProjectLog(logging.Handler):
    """The SDK's log records go to the project's logger (console and run.log), not stdout."""

    def emit(self, record: logging.LogRecord) -> None:
        record.msg = f"[LinkAI] {record.getMessage()}"
        record.args = None
        logger.handle(record)


def _route_sdk_log() -> None:
    sdk_log = logging.getLogger("linkai")
    for handler in list(sdk_log.handlers):
        sdk_log.removeHandler(handler)
    sdk_log.addHandler(_ToProjectLog())
    sdk_log.propagate = False


_route_sdk_log()


def start(channel: Any) -> None:
    """Called in a thread at start-up; never raises, so start-up never stops here."""
    global chat_client
    try:
        from config import conf

        settings = conf()
        if not settings.get("use_linkai", False) or not str(settings.get("linkai_api_key") or "").strip():
            logger.info("[LinkAI] client not started: use_linkai is off or linkai_api_key is empty")
            return
        client = ChatClient(
            api_key=str(settings.get("linkai_api_key")).strip(),
            host=settings.get("linkai_client_host"),
            port=int(settings.get("linkai_client_port")),
            channel=channel,
            reconnect_max=float(settings.get("linkai_client_reconnect_max")),
        )
        chat_client = client
        client.start()
    except Exception:  # noqa: BLE001 - a side feature must not take the daemon down
        logger.exception("[LinkAI] client start failed")


def stop() -> None:
    """Close the connection (the daemon is stopping)."""
    client = chat_client
    if client is not None:
        client.stop()


class ChatClient(LinkAIClient):
    """The SDK's client with this daemon's connection handling, settings and channel."""

    def __init__(self, api_key: str, host: str, port: int, channel: Any, reconnect_max: float = 60.0,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL, login_timeout: float = LOGIN_TIMEOUT,
                 stable_after: float = STABLE_CONNECTION):
        self._channel = channel
        self._stopping = threading.Event()
        self._reconnect_max = max(RECONNECT_FIRST, reconnect_max)
        self._refused = False
        self._login_answered = False
        self._login_timeout = login_timeout
        self._stable_after = stable_after
        self._logged_in_at: float | None = None
        self.logins = 0  # successful logins, for the log and for tests through the log
        self._config_lock = threading.Lock()  # one pushed config applied at a time
        # LinkAI knows one client type: with several channels (a ChannelGroup, whose
        # channel_type is "a,b"), the first one's, which is also where pushes go by default.
        super().__init__(api_key, host, client_type=member_channels(channel)[0].channel_type,
                         heartbeat_interval=heartbeat_interval, port=port)
        self.config = _local_report()

    # --- SDK hooks replaced (see the module's doc string)
    def check_host(self) -> None:
        pass  # config.py checks linkai_client_host (LinkAI's domains or loopback) at load

    def fetch_client_id(self) -> str | None:
        for path in (_client_id_path(), os.path.join(os.getcwd(), LEGACY_CLIENT_ID_FILE)):
            client_id = _read_client_id(path)
            if client_id:
                return client_id
        return os.environ.get("CLOUD_CLIENT_ID") or None

    def save_client_id(self, client_id: str) -> None:
        from common.utils import write_json_atomic

        try:
            write_json_atomic(_client_id_path(), {"client_id": client_id})
        except OSError as e:
            logger.warning(f"[LinkAI] client id not saved ({e}); LinkAI will see a new client after a restart")

    def start(self) -> None:
        threading.Thread(target=self._run, name="linkai-client", daemon=True).start()

    def stop(self) -> None:
        self.need_connect = False
        self._stopping.set()
        self._close()

    # --- callbacks
    def on_message(self, push_msg: PushMsg) -> None:
        channel, session_id = push_target(self._channel, push_msg.session_id)
        deliver_push(channel, session_id, push_msg.msg_content, push_msg.is_group)

    def on_config(self, config: dict) -> None:
        if not self.client_id:
            return
        from common.linkai_settings import apply_pushed

        # The SDK runs each CONFIG message on a thread of its own: two pushes in a row must
        # not interleave (the later one's values could be half overwritten by the earlier).
        with self._config_lock:
            apply_pushed(config)

    def on_chat(self, data: dict, send_chunk_fn: Any) -> None:
        # The console's agent chat is a newer LinkAI feature the original never had. Raising
        # makes the SDK answer it with an error; its default would answer "success" with nothing.
        raise NotImplementedError("chat from the LinkAI console is not supported by this daemon")

    # --- the connection
    def _run(self) -> None:
        failures = 0
        while self.need_connect and not self._stopping.is_set():
            self._logged_in_at = None
            try:
                self._open()
                self._read_until_closed()
            except OSError as e:
                if self._stopping.is_set():
                    break
                if self.connected:
                    logger.warning(f"[LinkAI] connection to {self.host}:{self.port} lost{self._soon_after_login()}: {e}")
                else:
                    logger.warning(f"[LinkAI] cannot reach {self.host}:{self.port}: {e}")
            except Exception as e:  # e.g. the SDK writing to a socket another thread closed: the loop must live on
                if self._stopping.is_set():
                    break
                logger.warning(f"[LinkAI] connection to {self.host}:{self.port} failed: {type(e).__name__}: {e}")
            finally:
                self._close()
            if self._refused or not self.need_connect or self._stopping.is_set():
                break
            logged_in_at = self._logged_in_at
            stable = logged_in_at is not None and time.monotonic() - logged_in_at >= self._stable_after
            failures = 0 if stable else failures + 1
            delay = _backoff(failures, self._reconnect_max)
            logger.info(f"[LinkAI] connecting again in {delay:.1f} s")
            if self._stopping.wait(delay):
                break
        logger.info("[LinkAI] client stopped")

    def _soon_after_login(self) -> str:
        logged_in_at = self._logged_in_at
        if logged_in_at is not None and time.monotonic() - logged_in_at < self._stable_after:
            return f" {time.monotonic() - logged_in_at:.1f} s after the login (the back-off is not reset)"
        return ""

    def _open(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT)
        # Woken at least every heartbeat interval to send one (and to see a login left unanswered).
        sock.settimeout(min(self.heartbeat_interval, self._login_timeout))
        self.socket = sock
        self.connected = True
        self._login_answered = False
        logger.info(f"[LinkAI] connected to {self.host}:{self.port}, logging in")
        self._send_login()

    def _close(self) -> None:
        self.connected = False
        sock, self.socket = self.socket, None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked on another thread; close alone may not
            except OSError:
                pass
            try:
                sock.close()
            except OSError:
                pass

    def _read_until_closed(self) -> None:
        buffer = b""
        last_beat = opened = time.monotonic()
        sock = self.socket
        # self.socket changes when a message handled here closed the connection (a refused login).
        while not self._stopping.is_set() and self.need_connect and self.socket is sock:
            try:
                data = sock.recv(65536)
            except socket.timeout:
                data = None
            except OSError:
                if self.socket is not sock:
                    return
                raise
            if data == b"":
                logger.warning(f"[LinkAI] the server closed the connection{self._soon_after_login()}")
                return
            if data:
                buffer = self._take_lines(buffer + data)
                if len(buffer) > MAX_LINE_BYTES:
                    logger.warning(f"[LinkAI] the server sent more than {MAX_LINE_BYTES} bytes without a line end; "
                                   f"closing the connection")
                    return
            if not self._login_answered and time.monotonic() - opened >= self._login_timeout:
                logger.warning(f"[LinkAI] no answer to the login within {self._login_timeout:g} s")
                return
            if self.client_id and time.monotonic() - last_beat >= self.heartbeat_interval:
                self._send_package({"type": "HEARTBEAT", "data": {"clientId": self.client_id}})
                last_beat = time.monotonic()

    def _take_lines(self, buffer: bytes) -> bytes:
        """Handle each complete line of `buffer`; return what is left. A line may end in
        NUL padding (the server's fixed-size packets, which the SDK also accepts)."""
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            text = line.strip(b"\x00\r\n\t ").split(b"\x00", 1)[0]
            if text:
                self._handle_line(text)
        return buffer

    def _handle_line(self, line: bytes) -> None:
        try:
            message = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            logger.warning(f"[LinkAI] a message that is not JSON was skipped ({len(line)} bytes)")
            return
        if not isinstance(message, dict) or not isinstance(message.get("data", {}), (dict, type(None))):
            logger.warning("[LinkAI] a message that is not a JSON object with a data object was skipped")
            return
        if message.get("type") == "LOGIN":
            self._on_login(message)
            return
        if message.get("type") in ("CONFIG", "PUSH") and not isinstance(message.get("data"), dict):
            logger.warning(f"[LinkAI] a {message.get('type')} message without data was skipped")
            return
        try:
            self._dispatch_msg(message)
        except Exception as e:  # noqa: BLE001 - one odd message must not end the connection
            logger.warning(f"[LinkAI] a {str(message.get('type'))[:40]} message could not be handled: {e}")

    def _on_login(self, message: dict) -> None:
        self._login_answered = True
        code = message.get("code")
        if code == 200:
            data = message.get("data") if isinstance(message.get("data"), dict) else {}
            if not self.client_id and not data.get("clientId"):
                logger.warning("[LinkAI] login answered without a client id; connecting again")
                self._close()
                return
            self._dispatch_msg(message)  # the SDK keeps the client id and reports our settings
            self.logins += 1
            self._logged_in_at = time.monotonic()
            types = [member.channel_type for member in member_channels(self._channel)]
            for channel_type in types:
                self.send_channel_status(channel_type, "connected")
            logger.info(f"[LinkAI] logged in ({self.logins}), channel {', '.join(types)} reported connected")
            logger.info("[LinkAI] settings and messages can be pushed from https://link-ai.tech/console/clients")
        elif code == 409:
            logger.info("[LinkAI] the server says this client needs no connection; LinkAI client stopped")
            self.need_connect = False
            self._close()
        elif code in FINAL_LOGIN_CODES:
            detail = message.get("message") or message.get("msg") or ""
            logger.error(f"[LinkAI] login refused (code {code}{': ' + str(detail)[:200] if detail else ''}): "
                         f"check linkai_api_key; the LinkAI client does not try again until the next start")
            self._refused = True
            self._close()
        else:
            # Anything else (a 500, a rate limit, a code this client does not know) may pass:
            # the connection is closed and opened again after the back-off.
            detail = message.get("message") or message.get("msg") or ""
            logger.warning(f"[LinkAI] login failed (code {str(code)[:40]}{': ' + str(detail)[:200] if detail else ''}); "
                           f"trying again later")
            self._close()


def member_channels(channel: Any) -> list:
    """The channels behind `channel`: the members of a ChannelGroup (several channels in one
    daemon), else the channel itself."""
    members = getattr(channel, "channels", None)
    return list(members) if isinstance(members, list) and members else [channel]


def push_target(channel: Any, session_id: Any) -> tuple[Any, Any]:
    """Which channel sends a pushed message, and to whom. One channel: that one. Several: a
    session id in the group's own form "<channel>:<id>" (each member's session ids carry its
    name) goes to that member, to <id>; any other goes to the first member that can send
    (the order of channel_type), which is also the client type reported to LinkAI."""
    members = member_channels(channel)
    if len(members) == 1:
        return members[0], session_id
    if isinstance(session_id, str) and ":" in session_id:
        name, rest = session_id.split(":", 1)
        for member in members:
            if member.channel_type == name and rest:
                return member, rest
    senders = [member for member in members if callable(getattr(member, "send", None))]
    return (senders or members)[0], session_id


def deliver_push(channel: Any, session_id: Any, content: Any, is_group: Any = False) -> bool:
    """Send a message pushed by LinkAI to `session_id` through the channel, as a reply
    the channel sends on its own (no question came first)."""
    from bridge.context import Context, ContextType
    from bridge.reply import Reply, ReplyType

    if not isinstance(session_id, str) or not session_id.strip():
        logger.warning("[LinkAI] a pushed message without a session id was skipped")
        return False
    if not isinstance(content, str) or not content.strip():
        logger.warning(f"[LinkAI] a pushed message for {session_id[:64]} without text was skipped")
        return False
    context = Context(ContextType.TEXT, content)
    context["receiver"] = session_id
    context["session_id"] = session_id
    context["isgroup"] = bool(is_group)
    try:
        channel.send(Reply(ReplyType.TEXT, content), context)
    except Exception as e:  # noqa: BLE001 - the platform refused: say so, keep the client running
        logger.error(f"[LinkAI] pushed message to {session_id[:64]} not delivered: {e}")
        return False
    logger.info(f"[LinkAI] pushed message delivered to {session_id[:64]}")
    return True


def _backoff(failures: int, longest: float) -> float:
    """1 s, 2 s, 4 s ... at most `longest`, each with up to 20 % jitter (many daemons that lost
    LinkAI at once do not all come back in the same second)."""
    delay = min(longest, RECONNECT_FIRST * (2 ** min(max(failures - 1, 0), 16)))
    return delay * random.uniform(0.8, 1.0)


def _client_id_path() -> str:
    from config import get_appdata_dir

    return os.path.join(get_appdata_dir(), CLIENT_ID_FILE)


def _read_client_id(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    value = data.get("client_id") if isinstance(data, dict) else None
    return value if isinstance(value, str) and value else None


def _local_report() -> dict:
    from common.linkai_settings import local_report

    return local_report()
