"""QR login to the iLink bot API (reference/personal-wechat.md §1.3).

A QR is fetched and shown three ways: drawn in the terminal (stdout), saved as tmp/login.png, and
put on the process's login board (channel/login_qr.py) while it lives, which the web channel's
page shows when it runs in the same daemon.
Its link is a login credential while it lives, so the log only says that a QR was shown and
where the PNG is (reference §1.8: never log tokens or QR values). When a token was issued
before, the QR is asked for with it (`local_token_list`, as the official client does). Its
status is then long-polled until the phone confirms:

* `wait` / `scaned`: keep polling (the scan is logged once);
* `expired`: a new QR, up to `refreshes` times;
* `need_verifycode`: the phone shows a code, which the user types in the terminal; polled again
  with it. `verify_code_blocked`: too many wrong codes, a new QR;
* `scaned_but_redirect`: keep polling at `redirect_host`;
* `binded_redirect`: this WeChat has the bot bound already: the login of the token sent in
  `local_token_list` goes on (the reference describes no token in this answer); without one,
  a new QR;
* `confirmed`: the bot token, the bot's id, the API host to use from now on, the user's id.
"""
from __future__ import annotations

import io
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from channel.login_qr import LOGIN_QRS
from channel.wechat.ilink_api import IlinkClient, IlinkError
from common.log import logger
from common.tmp_dir import TmpDir

LOGIN_PNG = "login.png"


@dataclass
class Credentials:
    token: str = field(repr=False)  # a credential: never in a log line
    base_url: str
    bot_id: str
    user_id: str

    def to_record(self) -> dict:
        return {"token": self.token, "base_url": self.base_url, "bot_id": self.bot_id, "user_id": self.user_id}

    @classmethod
    def from_record(cls, record: object) -> "Credentials | None":
        if not isinstance(record, dict) or not isinstance(record.get("token"), str) or not record["token"]:
            return None
        return cls(record["token"], str(record.get("base_url") or ""), str(record.get("bot_id") or ""),
                   str(record.get("user_id") or ""))


def _credentials(answer: dict, fallback_base: str) -> Credentials | None:
    token = answer.get("bot_token")
    if not isinstance(token, str) or not token:
        return None
    return Credentials(token, str(answer.get("baseurl") or fallback_base), str(answer.get("ilink_bot_id") or ""),
                       str(answer.get("ilink_user_id") or ""))


def login_png_name(channel: str) -> str:
    """tmp/login.png; when this daemon runs more than one channel that logs in by QR (`wx` and
    `wxy`), tmp/login-<channel>.png, so that one QR does not overwrite the other."""
    return LOGIN_PNG if len(LOGIN_QRS.channels()) <= 1 else f"login-{channel}.png"


def show_qr(content: str, channel: str = "wx") -> tuple[str, bytes]:
    """Draw the QR in the terminal and save it as tmp/login.png (see login_png_name); returns the
    PNG's path and bytes (empty when it could not be made)."""
    import qrcode

    try:
        qr = qrcode.QRCode(border=1)
        qr.add_data(content)
        qr.make(fit=True)
        qr.print_ascii(out=sys.stdout, invert=True)
        sys.stdout.flush()
    except Exception as e:  # a console that cannot draw it still has the PNG and the link
        logger.warning(f"[wx] the QR could not be drawn in the terminal: {e}")
    png = b""
    path = login_png_name(channel)
    try:
        picture = io.BytesIO()
        qrcode.make(content).save(picture)
        png = picture.getvalue()
        path = os.path.join(TmpDir().path(), path)
        with open(path, "wb") as f:
            f.write(png)
    except Exception as e:
        logger.warning(f"[wx] the QR could not be saved as {path}: {e}")
    return path, png


def read_code_from_terminal() -> str:
    line = sys.stdin.readline() if sys.stdin is not None else ""
    return line.strip()


class QrLogin:
    def __init__(self, client: IlinkClient, *, wait: float, timeout: float, refreshes: int = 10,
                 stop: threading.Event | None = None, read_code: Callable[[], str] = read_code_from_terminal,
                 previous: Credentials | None = None, channel: str = "wx") -> None:
        self.client = client
        self.channel = channel  # the name its QR is shown under on the web page (channel/login_qr.py)
        # The last login (dropped when WeChat called its token stale): its token goes in
        # local_token_list, and it is the login that goes on after `binded_redirect`.
        self.previous = previous
        self.wait = wait
        self.timeout = timeout
        self.refreshes = refreshes
        self.stop = stop or threading.Event()
        self.read_code = read_code

    def run(self) -> Credentials | None:
        """Credentials once a QR is confirmed; None when none was within `timeout` s or after
        `refreshes` new QRs (or on stop)."""
        deadline = time.monotonic() + self.timeout
        for shown in range(self.refreshes + 1):
            if self.stop.is_set() or time.monotonic() >= deadline:
                return None
            try:
                qr = self.client.get_qrcode([self.previous.token] if self.previous else None)
            except IlinkError as e:
                logger.error(f"[wx] no login QR from WeChat: {e}")
                self.stop.wait(min(5.0, max(0.0, deadline - time.monotonic())))
                continue
            link = str(qr.get("qrcode_img_content") or qr["qrcode"])
            path, png = show_qr(link, self.channel)
            if png:
                LOGIN_QRS.show(self.channel, png)
            logger.info(f"[wx] scan the QR with WeChat to log in (shown in the terminal, saved as {path})")
            try:
                creds = self._poll(qr["qrcode"], deadline)
            finally:
                # Expired, replaced, confirmed or given up: a page must not show it any more.
                LOGIN_QRS.withdraw(self.channel)
            if creds is not None:
                return creds
            if shown < self.refreshes:
                logger.info("[wx] showing a new login QR")
        logger.error(f"[wx] no login after {self.refreshes + 1} QR codes")
        return None

    def _poll(self, qrcode: str, deadline: float) -> Credentials | None:
        host: str | None = None
        code = ""
        scanned = False
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                answer = self.client.qrcode_status(qrcode, self.wait, host, code)
            except IlinkError as e:
                logger.warning(f"[wx] login status not read: {e}")
                self.stop.wait(1.0)
                continue
            code = ""
            status = answer.get("status")
            if status == "confirmed":
                creds = _credentials(answer, host or self.client.api_base)
                if creds is None:
                    logger.error("[wx] the login was confirmed but WeChat sent no bot token; a new QR follows")
                    return None
                logger.info(f"[wx] logged in as bot {creds.bot_id} for WeChat user {creds.user_id}")
                return creds
            if status == "scaned":
                if not scanned:
                    logger.info("[wx] QR scanned; confirm the login on the phone")
                    scanned = True
            elif status == "expired":
                logger.info("[wx] the login QR expired")
                return None
            elif status == "need_verifycode":
                logger.warning("[wx] WeChat asks for the verification code shown on the phone: type it in this "
                               "terminal and press Enter")
                code = self.read_code()
                if not code:
                    logger.error("[wx] no verification code was typed; a new QR follows")
                    return None
                continue
            elif status == "verify_code_blocked":
                logger.error("[wx] too many wrong verification codes; a new QR follows")
                return None
            elif status == "scaned_but_redirect":
                redirect = answer.get("redirect_host")
                if isinstance(redirect, str) and redirect:
                    host = redirect
                    logger.info(f"[wx] the login goes on at {redirect}")
            elif status == "binded_redirect":
                if self.previous is not None:
                    logger.info(f"[wx] this WeChat has the bot bound already; the login of bot "
                                f"{self.previous.bot_id} goes on")
                    return self.previous
                logger.warning("[wx] this WeChat has the bot bound already, but no earlier login is known here; "
                               "a new QR follows")
                return None
            elif status != "wait":
                logger.debug(f"[wx] login status {status!r}")
            self.stop.wait(0.2)
        return None
