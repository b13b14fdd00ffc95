"""The web channel's login routes show the QR of every channel that logs in by QR, not only iLink's:
`python app.py` with the web channel next to `wx` on the legacy web-WeChat protocol (against the
web-WeChat simulator) and next to `wxy` (against the fake puppet service). While the QR waits, the
route serves the same picture as tmp/login.png; after the login it is gone.
(The iLink path, the page itself and the password checks are in test_multichannel_process.py.)
"""
from __future__ import annotations

import os

import httpx
import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, free_port, wait_healthy, wait_until, write_config
from tests.fakes.webwx import WebWxSimulator
from tests.fakes.wechaty import FakePuppet

pytestmark = pytest.mark.slow

PASSWORD = "s3cret-pass"
AUTH = {"Authorization": f"Bearer {PASSWORD}"}


def status(base: str) -> dict:
    r = httpx.get(base + "/login/status", headers=AUTH, timeout=10)
    assert r.status_code == 200, r.text
    return r.json()


def waiting(base: str) -> list[str]:
    return [entry["channel"] for entry in status(base)["logins"]]


def login_png(folder, name: str = "login.png") -> bytes:
    with open(os.path.join(str(folder), "tmp", name), "rb") as f:
        return f.read()


def start(folder, dify: DifyServer, **settings) -> tuple[Daemon, str]:
    port = free_port()
    config = write_config(folder, web_port=port, web_host="127.0.0.1", web_password=PASSWORD,
                          bot_type="", model="dify", dify_api_base=dify.base_url, dify_api_key="app-test",
                          allowed_internal_hosts=["127.0.0.1"], shutdown_timeout=2, **settings)
    daemon = Daemon(folder, "--config", config)
    base = f"http://127.0.0.1:{port}"
    wait_healthy(base, daemon=daemon)
    return daemon, base


def test_the_web_wechat_qr_is_on_the_web_page_until_the_login(tmp_path):
    sim = WebWxSimulator(hold=0.3).start()
    daemon = None
    try:
        with DifyServer(api_key="app-test", mode="chat") as dify:
            daemon, base = start(tmp_path, dify, channel_type="wx,web", wx_protocol="itchat",
                                 itchat_base_url=sim.base_url, itchat_poll_timeout=2, itchat_retry_delay=0.2)
            uuid = sim.wait_qr(timeout=20)
            wait_until(lambda: waiting(base) == ["wx"], 20, "the web-WeChat QR on the login route")
            r = httpx.get(base + "/login/qr/wx", headers=AUTH, timeout=10)
            assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"
            assert r.content == login_png(tmp_path)
            assert httpx.get(base + "/login/qr/wx", timeout=10).status_code == 401
            sim.scan(uuid)
            sim.confirm(uuid)
            wait_until(lambda: waiting(base) == [], 20, "the QR gone after the login")
            assert httpx.get(base + "/login/qr/wx", headers=AUTH, timeout=10).status_code == 404
    finally:
        if daemon is not None:
            daemon.kill()
        sim.stop()


def test_the_wechaty_qr_is_on_the_web_page_until_the_login(tmp_path):
    fake = FakePuppet().start()
    daemon = None
    try:
        with DifyServer(api_key="app-test", mode="chat") as dify:
            daemon, base = start(tmp_path, dify, channel_type=["wxy", "web"],
                                 wechaty_puppet_service_token=fake.token,
                                 wechaty_puppet_service_endpoint=fake.endpoint, wechaty_retry_delay=0.2)
            fake.wait_streams(1)
            wait_until(lambda: waiting(base) == ["wxy"], 20, "the wechaty QR on the login route")
            r = httpx.get(base + "/login/qr/wxy", headers=AUTH, timeout=10)
            assert r.status_code == 200 and r.content == login_png(tmp_path)
            fake.login()
            wait_until(lambda: waiting(base) == [], 20, "the QR gone after the login")
            assert httpx.get(base + "/login/qr/wxy", headers=AUTH, timeout=10).status_code == 404
    finally:
        if daemon is not None:
            daemon.kill()
        fake.stop()


def test_two_qr_channels_in_one_daemon_save_their_qrs_under_their_own_names(tmp_path):
    sim = WebWxSimulator(hold=0.3).start()
    fake = FakePuppet().start()
    daemon = None
    try:
        with DifyServer(api_key="app-test", mode="chat") as dify:
            daemon, base = start(tmp_path, dify, channel_type=["wx", "wxy", "web"], wx_protocol="itchat",
                                 itchat_base_url=sim.base_url, itchat_poll_timeout=2, itchat_retry_delay=0.2,
                                 wechaty_puppet_service_token=fake.token,
                                 wechaty_puppet_service_endpoint=fake.endpoint, wechaty_retry_delay=0.2)
            wait_until(lambda: waiting(base) == ["wx", "wxy"], 20, "both QRs on the login route")
            for channel in ("wx", "wxy"):
                r = httpx.get(base + f"/login/qr/{channel}", headers=AUTH, timeout=10)
                assert r.status_code == 200 and r.content == login_png(tmp_path, f"login-{channel}.png")
            assert login_png(tmp_path, "login-wx.png") != login_png(tmp_path, "login-wxy.png")
            assert not os.path.exists(os.path.join(str(tmp_path), "tmp", "login.png"))
    finally:
        if daemon is not None:
            daemon.kill()
        sim.stop()
        fake.stop()
