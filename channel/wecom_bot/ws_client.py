"""The WeCom AI bot's long connection (reference/wecom-aibot.md §2): one WebSocket to WeCom,
JSON frames both ways.

Written on `websockets` rather than on the official SDK: the SDK (1.0.2) neither handles the
takeover event (two clients then kick each other forever) nor uploads media, and its socket stays
open after a failed login (§7). The protocol is small:

* connect, send `aibot_subscribe` with the bot id and secret, wait for its ack;
* a `ping` every `heartbeat` seconds; two unanswered in a row mean the socket is dead: reconnect;
* requests carry a `req_id`, acks come back with the same `req_id` and no `cmd`; frames of one
  req_id go one at a time, each waiting for its ack (as both official SDKs do); different req_ids
  run in parallel;
* callbacks (`aibot_msg_callback`, `aibot_event_callback`) go to `on_callback`, on the reader
  thread: it must only hand them on;
* reconnect after a drop with exponential back-off and jitter (1 s ... 30 s);
* a wrong bot id or secret (853000) ends the connection for good: retrying cannot help;
* `disconnected_event`: another client subscribed the same bot. WeCom sends new messages there, so
  this client closes and does NOT reconnect, or the two would take the bot from each other forever.
"""
from __future__ import annotations

import itertools
from collections import deque
import json
import os
import random
import threading
import time
from typing import Any, Callable

from common.log import logger

DEFAULT_WS_URL = "wss://openws.work.weixin.qq.com"
ACK_TIMEOUT = 5.0
SUBSCRIBE_TIMEOUT = 10.0
MAX_MISSED_PONGS = 2
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
# A login counts as working (the back-off starts again) once the connection stayed up this long
# or brought a frame after the login: one WeCom closes at once must not be retried every second.
STABLE_AFTER = 30.0
AUTH_FAILED = 853000
MAX_FRAME = 4 * 1024 * 1024

# States, as /healthz and the log show them.
CONNECTING, READY, TAKEN_OVER, AUTH_REFUSED, STOPPED = "connecting", "ready", "taken over", "login refused", "stopped"


class AibotError(Exception):
    """WeCom answered a request with an error code."""

    def __init__(self, errcode: int, errmsg: str, cmd: str = "") -> None:
        super().__init__(f"{cmd or 'request'} refused by WeCom: {errcode} {errmsg}".strip())
        self.errcode = errcode
        self.errmsg = errmsg


class AckTimeout(AibotError):
    def __init__(self, cmd: str, seconds: float) -> None:
        super().__init__(-2, f"no answer within {seconds:g} s", cmd)


class NotConnected(AibotError):
    def __init__(self, cmd: str, state: str) -> None:
        super().__init__(-3, f"not connected ({state})", cmd)


class Pending:
    """One request on its way: resolved by its ack, an error, a timeout or a drop."""

    def __init__(self, cmd: str, req_id: str, text: str, on_done: Callable[["Pending"], None] | None) -> None:
        self.cmd = cmd
        self.req_id = req_id
        self.text = text
        self.on_done = on_done
        self.deadline = 0.0  # set when it is written to the socket
        self.ack: dict | None = None
        self.error: AibotError | None = None
        self._done = threading.Event()

    def resolve(self, ack: dict | None = None, error: AibotError | None = None) -> None:
        if self._done.is_set():
            return
        if error is None and ack is not None:
            errcode = ack.get("errcode", 0)
            if errcode not in (0, None):
                error = AibotError(errcode if isinstance(errcode, int) else -1, str(ack.get("errmsg", "")), self.cmd)
        self.ack, self.error = ack, error
        self._done.set()
        if self.on_done is not None:
            try:
                self.on_done(self)
            except Exception:
                logger.exception(f"[wecom_bot] handling the answer to {self.cmd} failed")

    def wait(self, timeout: float) -> dict:
        """The ack; raises the request's error."""
        if not self._done.wait(timeout):
            raise AckTimeout(self.cmd, timeout)
        if self.error is not None:
            raise self.error
        return self.ack or {}


def new_req_id(cmd: str) -> str:
    # The SDKs' shape, `{cmd}_{ms}_{8 hex}` (§2.1); WeCom treats it as opaque.
    return f"{cmd}_{int(time.time() * 1000)}_{os.urandom(4).hex()}"


def parse_frame(text: str | bytes) -> dict:
    """A frame as a dict. strict=False: WeCom has been seen putting raw control characters
    (newline, tab) inside JSON strings (§2.1)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    frame = json.loads(text, strict=False)
    if not isinstance(frame, dict):
        raise ValueError("a frame that is not a JSON object")
    return frame


class LongConnection:
    def __init__(self, url: str, bot_id: str, secret: str, on_callback: Callable[[dict], None], *,
                 heartbeat: float = 30.0, ack_timeout: float = ACK_TIMEOUT,
                 on_state: Callable[[str, str], None] | None = None) -> None:
        self.url = url
        self.bot_id = bot_id
        self._secret = secret
        self.on_callback = on_callback
        self.heartbeat = float(heartbeat)
        self.ack_timeout = float(ack_timeout)
        self.on_state = on_state
        self.state = CONNECTING
        self.reason = ""
        self.connections = 0  # subscribed sockets so far (1 = the first)
        self._ws: Any = None
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._queues: dict[str, deque[Pending]] = {}  # req_id -> its frames, the first one written
        self._stop = threading.Event()
        self._subscribed_once = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, wait: float = SUBSCRIBE_TIMEOUT + 5) -> str:
        """Start connecting in the background; wait up to `wait` s for the first login.
        Returns the state then: READY, AUTH_REFUSED, or CONNECTING (WeCom not reachable yet:
        the connection keeps trying)."""
        self._thread = threading.Thread(target=self._run, name="wecom-bot-ws", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + wait
        with self._ready:
            while self.state == CONNECTING and not self._subscribed_once.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
            return self.state

    def stop(self) -> None:
        self._stop.set()
        self._set_state(STOPPED, "stopped")
        self._close_socket()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def is_ready(self) -> bool:
        return self.state == READY

    # ------------------------------------------------------------------ requests
    def request(self, cmd: str, body: dict | None = None, req_id: str | None = None,
                timeout: float | None = None) -> dict:
        """Send one request and wait for its ack. Returns the ack; raises AibotError (the
        error code WeCom gave), AckTimeout or NotConnected. While the socket is being mended,
        waits for it up to the ack timeout."""
        timeout = self.ack_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._ready:
            while self.state == CONNECTING and not self._stop.is_set():
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._ready.wait(left)
        pending = self.send(cmd, body, req_id)
        # The queue of its req_id may hold earlier frames: each gets its own ack time.
        return pending.wait(max(timeout, deadline - time.monotonic()) + self.ack_timeout * self._queued(pending.req_id))

    def send(self, cmd: str, body: dict | None = None, req_id: str | None = None,
             on_done: Callable[[Pending], None] | None = None) -> Pending:
        """Queue one request without waiting: `on_done` runs (on the reader thread, so it must
        be quick) when it is acked, refused, timed out or dropped. Frames of one req_id are
        written one at a time, each after the ack of the one before (the official SDKs do so,
        and an ack names only the req_id, so two at once could not be told apart)."""
        req_id = req_id or new_req_id(cmd)
        frame: dict[str, Any] = {"cmd": cmd, "headers": {"req_id": req_id}}
        if body is not None:
            frame["body"] = body
        pending = Pending(cmd, req_id, json.dumps(frame, ensure_ascii=False), on_done)
        with self._lock:
            ws = self._ws if self.state == READY else None
            if ws is None:
                state = self.state
            else:
                queue = self._queues.setdefault(req_id, deque())
                queue.append(pending)
                first = len(queue) == 1
        if ws is None:
            pending.resolve(error=NotConnected(cmd, state))
            return pending
        if first:
            self._write(ws, pending)
        return pending

    def _queued(self, req_id: str) -> int:
        with self._lock:
            return max(0, len(self._queues.get(req_id, ())) - 1)

    def _write(self, ws, pending: Pending) -> None:
        pending.deadline = time.monotonic() + self.ack_timeout
        try:
            ws.send(pending.text)
        except Exception as e:
            self._finish(pending.req_id, pending, error=NotConnected(pending.cmd, f"send failed: {type(e).__name__}"))

    def _finish(self, req_id: str, pending: Pending | None, ack: dict | None = None,
                error: AibotError | None = None) -> None:
        """The head of req_id's queue is answered: resolve it and write the next one."""
        with self._lock:
            queue = self._queues.get(req_id)
            if not queue or (pending is not None and queue[0] is not pending):
                return
            head = queue.popleft()
            following = queue[0] if queue else None
            if not queue:
                del self._queues[req_id]
            ws = self._ws
        head.resolve(ack, error)
        if following is not None:
            if ws is None:
                self._finish(req_id, following, error=NotConnected(following.cmd, "the connection dropped"))
            else:
                self._write(ws, following)

    def _expire(self) -> float | None:
        """Times out the heads whose ack is late; returns the next head's deadline."""
        now = time.monotonic()
        with self._lock:
            heads = [queue[0] for queue in self._queues.values() if queue]
        late = [p for p in heads if p.deadline and p.deadline <= now]
        for pending in late:
            self._finish(pending.req_id, pending, error=AckTimeout(pending.cmd, self.ack_timeout))
        upcoming = [p.deadline for p in heads if p.deadline and p.deadline > now]
        return min(upcoming) if upcoming else None

    # ------------------------------------------------------------------ the connection
    def _run(self) -> None:
        delays = self._backoff()
        while not self._stop.is_set():
            try:
                outcome = self._session()
            except Exception as e:  # a bug must not end the connection for good
                logger.exception(f"[wecom_bot] connection failed: {e}")
                outcome = "error"
            if self._stop.is_set() or self.state in (TAKEN_OVER, AUTH_REFUSED):
                return
            if outcome == "stable":
                delays = self._backoff()  # it worked for a while: start the back-off again
            delay = next(delays)
            self._set_state(CONNECTING, f"reconnecting in {delay:.1f} s")
            logger.warning(f"[wecom_bot] connection to WeCom lost, reconnecting in {delay:.1f} s")
            self._stop.wait(delay)

    @staticmethod
    def _backoff():
        for n in itertools.count():
            base = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** n)
            yield base * random.uniform(0.5, 1.0)  # jitter: many daemons do not retry in step

    def _session(self) -> str:
        """One socket: connect, subscribe, read until it ends. Returns "stable" when the login
        worked and the connection then brought a frame or stayed up STABLE_AFTER s, "brief" when
        it ended before, else "failed"."""
        from websockets.sync.client import connect

        try:
            ws = connect(self.url, open_timeout=10, close_timeout=2, ping_interval=None,
                         max_size=MAX_FRAME, user_agent_header="dify-on-wechat")
        except Exception as e:
            logger.warning(f"[wecom_bot] cannot connect to {self.url}: {type(e).__name__}: {e}")
            return "failed"
        with self._lock:
            self._ws = ws
        try:
            if not self._subscribe(ws):
                return "failed"
            since = time.monotonic()
            self._frames_read = 0
            self._read(ws)
            return "stable" if self._frames_read or time.monotonic() - since >= STABLE_AFTER else "brief"
        finally:
            with self._lock:
                if self._ws is ws:
                    self._ws = None
                queues, self._queues = self._queues, {}
            for queue in queues.values():
                for pending in queue:
                    pending.resolve(error=NotConnected(pending.cmd, "the connection dropped"))
            try:
                ws.close()
            except Exception:
                pass

    def _subscribe(self, ws) -> bool:
        req_id = new_req_id("aibot_subscribe")
        ws.send(json.dumps({"cmd": "aibot_subscribe", "headers": {"req_id": req_id},
                            "body": {"bot_id": self.bot_id, "secret": self._secret}}))
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                logger.warning(f"[wecom_bot] WeCom did not answer the login within {SUBSCRIBE_TIMEOUT:g} s")
                return False
            try:
                frame = parse_frame(ws.recv(timeout=left))
            except TimeoutError:
                continue
            except ValueError:
                continue
            except Exception as e:
                logger.warning(f"[wecom_bot] connection closed during login: {type(e).__name__}: {e}")
                return False
            if frame.get("cmd") or _req_id(frame) != req_id:
                continue  # nothing else is expected before the login's answer
            errcode = frame.get("errcode", 0)
            if errcode in (0, None):
                with self._ready:
                    self.connections += 1
                    self.state, self.reason = READY, "subscribed"
                    self._subscribed_once.set()
                    self._ready.notify_all()
                logger.info(f"[wecom_bot] connected to WeCom as bot {self.bot_id} (connection {self.connections})")
                self._notify_state()
                return True
            message = (f"WeCom refused the bot's login ({errcode} {frame.get('errmsg', '')}): check wecom_bot_id "
                       f"and wecom_bot_secret (the long-connection Secret of the AI bot, not the callback Token)")
            if errcode == AUTH_FAILED:
                logger.error(f"[wecom_bot] {message}; not retrying")
                self._set_state(AUTH_REFUSED, message)
            else:
                logger.error(f"[wecom_bot] {message}")
            return False

    def _read(self, ws) -> None:
        missed = 0
        next_ping = time.monotonic() + self.heartbeat
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_ping:
                if missed >= MAX_MISSED_PONGS:
                    logger.warning(f"[wecom_bot] {missed} heartbeats unanswered: the connection is dead")
                    return
                missed += 1
                try:
                    ws.send(json.dumps({"cmd": "ping", "headers": {"req_id": new_req_id("ping")}}))
                except Exception:
                    return
                next_ping = now + self.heartbeat
                continue
            due = self._expire()
            wait = next_ping - now if due is None else min(next_ping, due) - now
            # A request written while recv() waits is not in `due`: waking at least this often
            # times it out on time, and frees the frames queued behind it.
            wait = min(wait, self.ack_timeout / 4)
            try:
                raw = ws.recv(timeout=max(0.01, wait))
            except TimeoutError:
                continue
            except Exception as e:
                if not self._stop.is_set():
                    logger.warning(f"[wecom_bot] connection closed: {type(e).__name__}: {e}")
                return
            try:
                frame = parse_frame(raw)
            except ValueError:
                logger.warning(f"[wecom_bot] a frame that is not JSON ignored: {str(raw)[:200]!r}")
                continue
            self._frames_read += 1
            cmd = frame.get("cmd")
            if not cmd:
                req_id = _req_id(frame)
                if isinstance(req_id, str) and req_id.startswith("ping_"):
                    missed = 0
                    continue
                self._on_ack(req_id, frame)
                continue
            if cmd == "aibot_event_callback" and _event_type(frame) == "disconnected_event":
                self._taken_over()
                return
            try:
                self.on_callback(frame)
            except Exception:
                logger.exception(f"[wecom_bot] a {cmd} frame could not be handled")

    def _on_ack(self, req_id: Any, frame: dict) -> None:
        if not isinstance(req_id, str):
            # Validation errors come back without the req_id (§2.1): the request then times out.
            logger.warning(f"[wecom_bot] WeCom answered an error without naming the request: "
                           f"{frame.get('errcode')} {str(frame.get('errmsg', ''))[:200]}")
            return
        self._finish(req_id, None, ack=frame)

    def _taken_over(self) -> None:
        message = (f"another client logged in as WeCom AI bot {self.bot_id} and took its messages; this daemon "
                   f"stopped connecting so the two do not take the bot from each other forever. Stop the other "
                   f"client (or give it another bot), then restart this daemon")
        logger.error(f"[wecom_bot] {message}")
        self._set_state(TAKEN_OVER, message)
        self._close_socket()

    def _close_socket(self) -> None:
        with self._lock:
            ws = self._ws
        if ws is not None:
            try:
                ws.close()
            except Exception:
                pass

    def _set_state(self, state: str, reason: str) -> None:
        with self._ready:
            if self.state in (TAKEN_OVER, AUTH_REFUSED, STOPPED) and state != STOPPED:
                return  # final states stay
            if self.state == STOPPED:
                return
            self.state, self.reason = state, reason
            self._ready.notify_all()
        self._notify_state()

    def _notify_state(self) -> None:
        if self.on_state is not None:
            try:
                self.on_state(self.state, self.reason)
            except Exception:
                logger.exception("[wecom_bot] state listener failed")


def _req_id(frame: dict) -> Any:
    headers = frame.get("headers")
    return headers.get("req_id") if isinstance(headers, dict) else None  # a malformed frame has none


def _event_type(frame: dict) -> str:
    body = frame.get("body") if isinstance(frame.get("body"), dict) else {}
    event = body.get("event") if isinstance(body.get("event"), dict) else {}
    return str(event.get("eventtype") or "")
