"""`python app.py` with `channel_type: "wx,web"`: personal WeChat (against the iLink simulator) and the
web channel in one daemon, sharing the Dify simulator.

One daemon serves the module (the tests run in file order on the same data folder): the web page
shows the wx login QR while it waits (behind web_password), a new one after an expiry, none after
the login; questions on both channels are answered on their own; a kill -9 with messages in both
inboxes answers each once, on its own channel, after the restart.
"""
from __future__ import annotations

import os
import signal
import socket
import time
from urllib.parse import quote

import httpx
import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.daemon import Daemon, free_port, run_app, user_lines, wait_healthy, wait_until, write_config
from tests.fakes.ilink import IlinkSimulator

pytestmark = pytest.mark.slow

PASSWORD = "s3cret-pass"
AUTH = {"Authorization": f"Bearer {PASSWORD}"}
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class Env:
    def __init__(self, folder, sim: IlinkSimulator, dify: DifyServer) -> None:
        self.folder = folder
        self.sim = sim
        self.dify = dify
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.daemon: Daemon | None = None

    def config(self, **extra) -> str:
        settings = dict(
            channel_type="wx,web", web_port=self.port, web_host="127.0.0.1", web_password=PASSWORD,
            wx_ilink_api_base=self.sim.entry_url, wx_ilink_cdn_base=self.sim.cdn_url,
            wx_ilink_poll_timeout=2, wx_ilink_retry_delay=0.2,
            bot_type="", model="dify", dify_api_base=self.dify.base_url, dify_api_key="app-test",
            allowed_internal_hosts=["127.0.0.1"], shutdown_timeout=2,
        )
        settings.update(extra)
        return write_config(self.folder, **settings)

    def start(self, **extra) -> Daemon:
        self.daemon = Daemon(self.folder, "--config", self.config(**extra))
        wait_healthy(self.base, daemon=self.daemon)
        return self.daemon

    def log(self) -> str:
        try:
            with open(os.path.join(str(self.folder), "run.log"), encoding="utf-8") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def login_png(self) -> bytes:
        with open(os.path.join(str(self.folder), "tmp", "login.png"), "rb") as f:
            return f.read()

    def status(self) -> dict:
        r = httpx.get(self.base + "/login/status", headers=AUTH, timeout=10)
        assert r.status_code == 200, r.text
        return r.json()

    def qr(self) -> httpx.Response:
        return httpx.get(self.base + "/login/qr/wx", headers=AUTH, timeout=10)

    def ask_web(self, user: str, text: str, msg_id: str) -> None:
        r = httpx.post(self.base + "/message", json={"user_id": user, "message": text, "msg_id": msg_id},
                       headers=AUTH, timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "success", r.text

    def web_answers(self, user: str) -> list[str]:
        r = httpx.get(self.base + "/history/" + quote(user, safe=""), headers=AUTH, timeout=10)
        assert r.status_code == 200, r.text
        return [m["content"] for m in r.json()["messages"] if m["role"] == "bot"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    sim = IlinkSimulator(hold=0.3).start()
    with DifyServer(api_key="app-test", mode="chat") as dify:
        environment = Env(tmp_path_factory.mktemp("multi"), sim, dify)
        try:
            yield environment
        finally:
            if environment.daemon is not None:
                environment.daemon.kill()
            sim.stop()


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM) or not os.path.exists(CHROMEDRIVER):
        pytest.skip(f"the page test needs {CHROMIUM} and {CHROMEDRIVER}")
    import shutil
    import tempfile

    os.environ["SE_OFFLINE"] = "true"  # selenium must never download a browser or driver
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=420,860"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def page_qr(driver) -> tuple[str | None, int]:
    """(the QR the page shows, as "<channel>:<serial>", or None when hidden; its picture's width)."""
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "login-qr")
    if not box.is_displayed():
        return None, 0
    img = driver.find_element(By.ID, "login-qr-img")
    return img.get_attribute("data-qr"), int(driver.execute_script("return arguments[0].naturalWidth", img) or 0)


def test_the_web_page_shows_the_wx_login_qr_until_the_login(env, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    sim = env.sim
    env.start()
    first = sim.wait_qr(timeout=20)
    shown = wait_until(lambda: env.status()["logins"], what="the QR on the login board")
    assert shown[0]["channel"] == "wx"
    r = env.qr()
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    assert r.headers["cache-control"] == "no-store"
    assert r.content == env.login_png()  # the QR the terminal shows and tmp/login.png holds
    # It logs in whoever scans it: only for clients that give the web password.
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {PASSWORD}"}):
        for path in ("/login/status", "/login/qr/wx"):
            refused = httpx.get(env.base + path, headers=headers, timeout=10)
            assert refused.status_code == 401, (path, headers, refused.status_code)
            assert refused.headers["content-type"].startswith("application/json")
            assert not refused.content.startswith(b"\x89PNG")
    # The page: it asks for the password (the chat is protected), then shows the QR.
    browser.get(f"{env.base}/chat?user=pat")
    WebDriverWait(browser, 10).until(lambda d: d.find_element(By.ID, "login").is_displayed())
    assert page_qr(browser)[0] is None  # nothing before the password
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login-form button").click()
    serial = env.status()["logins"][0]["qr"]
    WebDriverWait(browser, 15).until(lambda d: page_qr(d)[0] == f"wx:{serial}")
    assert page_qr(browser)[1] > 0  # the picture loaded (CSP allows the blob: URL)

    sim.set_status(first, "expired")  # the QR ran out: a new one, on the page too
    second = sim.wait_qr(after=1)
    wait_until(lambda: env.status()["logins"] and env.status()["logins"][0]["qr"] != serial, what="the new QR")
    new_serial = env.status()["logins"][0]["qr"]
    renewed = env.qr().content
    assert renewed != r.content
    wait_until(lambda: renewed == env.login_png(), what="tmp/login.png to be the new QR")
    WebDriverWait(browser, 15).until(lambda d: page_qr(d)[0] == f"wx:{new_serial}")
    assert page_qr(browser)[1] > 0

    sim.confirm(second)
    wait_until(lambda: "[wx] ready, handling messages" in env.log(), what="the wx login")
    assert env.status()["logins"] == []
    assert env.qr().status_code == 404
    WebDriverWait(browser, 15).until(lambda d: page_qr(d)[0] is None)
    # A login credential while it lived: its link never reached the log.
    assert first not in env.log() and second not in env.log()


def test_after_the_login_the_routes_still_want_the_password_and_show_no_qr(env):
    for path in ("/login/status", "/login/qr/wx"):
        assert httpx.get(env.base + path, timeout=10).status_code == 401
    assert env.status() == {"logins": [], "watch": True}
    assert env.qr().status_code == 404


def test_a_question_on_each_channel_is_answered_on_its_own_channel(env):
    sim, dify = env.sim, env.dify
    # The same id on both platforms (a web page may choose any): two users, two conversations.
    sim.push_text("amy@im.wechat", "asked on wechat")
    sim.wait_sent("amy@im.wechat")
    env.ask_web("amy@im.wechat", "asked on the web", "m-amy-1")
    wait_until(lambda: env.web_answers("amy@im.wechat"), what="the web answer")
    time.sleep(0.5)  # nothing else arrives on either side
    assert sim.texts_to("amy@im.wechat") == ["echo: asked on wechat"]
    assert env.web_answers("amy@im.wechat") == ["echo: asked on the web"]
    wechat, web = [r["json"] for r in dify.requests_to("/v1/chat-messages")
                   if r["json"]["query"] in ("asked on wechat", "asked on the web")]
    assert wechat["query"] == "asked on wechat"
    # The web question did not join the WeChat user's Dify conversation.
    assert not web.get("conversation_id")
    # Each goes on in its own conversation.
    sim.push_text("amy@im.wechat", "again on wechat")
    sim.wait_sent("amy@im.wechat", 2)
    follow_up = [r["json"] for r in dify.requests_to("/v1/chat-messages") if r["json"]["query"] == "again on wechat"]
    assert follow_up[0]["conversation_id"]


def test_a_kill_with_messages_in_both_inboxes_answers_each_once_on_its_own_channel(env):
    sim, dify = env.sim, env.dify
    asked = len(dify.requests_to("/v1/chat-messages"))
    dify.push_answer("never sent 1", latency=30)
    dify.push_answer("never sent 2", latency=30)
    kept = sim.push_text("ben@im.wechat", "kept on wechat")
    env.ask_web("ben@im.wechat", "kept on the web", "m-ben-1")  # 200: in the store
    polls = len(sim.polls)
    wait_until(lambda: sim.deliveries.get(str(kept["message_id"])) and len(sim.polls) > polls + 1,
               what="the wx message to be taken and the cursor to pass it")
    wait_until(lambda: len(dify.requests_to("/v1/chat-messages")) >= asked + 2, what="Dify to be asked twice")
    env.daemon.proc.send_signal(signal.SIGKILL)
    env.daemon.wait(10)
    assert sim.texts_to("ben@im.wechat") == [] and env.daemon.proc.returncode == -signal.SIGKILL

    env.start()
    sim.wait_sent("ben@im.wechat", timeout=20)
    wait_until(lambda: env.web_answers("ben@im.wechat"), what="the web answer after the restart")
    time.sleep(1.0)  # a second answer would come now
    assert sim.texts_to("ben@im.wechat") == ["echo: kept on wechat"]
    assert env.web_answers("ben@im.wechat") == ["echo: kept on the web"]
    assert "using the saved login" in env.log()


def test_a_stop_closes_both_channels(env):
    env.daemon.proc.send_signal(signal.SIGTERM)
    assert env.daemon.wait(20) == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(env.base + "/healthz", timeout=2)
    # The WeChat login is free again: a single wx daemon on the same data folder starts.
    single = Daemon(env.folder, "--config", env.config(channel_type="wx"))
    try:
        wait_until(lambda: env.log().count("using the saved login") >= 2, what="the single wx daemon to start")
        assert single.proc.poll() is None
    finally:
        single.proc.send_signal(signal.SIGTERM)
        assert single.wait(20) == 0


@pytest.mark.parametrize("channel_type, said", [
    ("wx,wx", "names the channel 'wx' twice"),
    (["wx", "weixin"], "names the channel 'wx' twice (as 'wx' and 'weixin')"),
    ("terminal, wx", "terminal and wx would both read this terminal's input"),
    ("web,", "has an empty channel name"),
    ([], "is an empty list"),
    ("web,gewechat", "the gewechat service has shut down"),
])
def test_a_channel_list_that_cannot_run_stops_start_up_naming_why(tmp_path, channel_type, said):
    result = run_app(tmp_path, "--config", write_config(tmp_path, channel_type=channel_type))
    assert result.returncode == 2, result.stderr
    [line] = user_lines(result.stderr)
    assert line.startswith("config error: setting 'channel_type'") and said in line, line


def test_two_channels_on_one_port_stop_start_up(tmp_path):
    config = write_config(tmp_path, channel_type=["web", "wechatmp"], web_port=9899, wechatmp_port=9899)
    result = run_app(tmp_path, "--config", config)
    assert result.returncode == 2
    [line] = user_lines(result.stderr)
    assert "channels 'web' and 'wechatmp' both listen on port 9899 (web_port, wechatmp_port)" in line


def test_an_unknown_name_in_the_list_stops_start_up(tmp_path):
    result = run_app(tmp_path, "--config", write_config(tmp_path, channel_type="web,nosuch"))
    assert result.returncode == 1
    [line] = user_lines(result.stderr)
    assert line.startswith("start-up failed: unknown channel_type 'nosuch'; valid names:")


def test_a_channel_that_fails_at_start_up_stops_the_others(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        closed = free_port()
        config = write_config(tmp_path, channel_type=["wx", "web"], web_host="127.0.0.1", web_port=port,
                              wx_ilink_api_base=f"http://127.0.0.1:{closed}", wx_ilink_retry_delay=0.2)
        result = run_app(tmp_path, "--config", config)
    assert result.returncode == 1, result.stderr
    [line] = user_lines(result.stderr)
    assert line == f"start-up failed: port {port} on 127.0.0.1 is already in use; free it or choose another port"


def test_terminal_and_web_side_by_side_and_the_end_of_input_ends_both(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    daemon = Daemon(tmp_path, "--config", write_config(tmp_path, channel_type=["terminal", "web"], web_port=port,
                                                       web_host="127.0.0.1"))
    try:
        wait_healthy(base, daemon=daemon)
        daemon.ask("from the terminal")
        daemon.wait_for("echo: from the terminal")
        r = httpx.post(base + "/message", json={"user_id": "tess", "message": "from the web", "msg_id": "t1"},
                       timeout=10)
        assert r.status_code == 200, r.text
        answers = wait_until(lambda: [m["content"] for m in httpx.get(base + "/history/tess", timeout=10).json()
                                      ["messages"] if m["role"] == "bot"], what="the web answer")
        assert answers == ["echo: from the web"]
        assert "echo: from the web\n" not in "".join(daemon.stdout)  # not on the terminal
        daemon.proc.stdin.close()  # the terminal's input ends: the daemon stops, the web channel too
        assert daemon.wait(20) == 0
        with pytest.raises(httpx.ConnectError):
            httpx.get(base + "/healthz", timeout=2)
    finally:
        daemon.kill()
