"""Plugins written in the style of the ecosystem's popular ones (tests/fakes/plugin_dirs), each
loaded by a real `python app.py` and handling its command: scheduled messages (the terminal,
lib.itchat, and channel.wework.run against the ntwork simulator), a link summariser and an API
lookup (against a local HTTP server), a game, an admin tool, a plugin calling openai 0.27 at
module level (against the OpenAI simulator), and one importing a package that is not installed."""
from __future__ import annotations

import json
import os
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.e2e.daemon import Daemon, plugins_dir, write_config
from tests.e2e.test_wework_process import PRIVATE, ALICE, ALICE_NAME, start, stop, wait_ready
from tests.fakes.openai_server import OpenAIServer

pytestmark = pytest.mark.slow

PLUGINS = ("timer_task", "link_digest", "api_lookup", "guess_game", "admin_tool", "openai_chat", "needs_package")
PAGE = "<html><head><title>端口的故事</title></head><body><p></p><p>第一段：港口很忙。</p><p>第二段</p></body></html>"


class _Site(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        parts = urlsplit(self.path)
        if parts.path == "/page.html":
            body, kind = PAGE.encode("utf-8"), "text/html; charset=utf-8"
        elif parts.path == "/weather":
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            if query.get("token") != "t-1":
                answer = {"code": 403, "msg": "bad token"}
            else:
                answer = {"code": 200, "data": {"weather": "晴", "temp": 21}}
            body, kind = json.dumps(answer, ensure_ascii=False).encode("utf-8"), "application/json"
        else:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def wait_line(daemon: Daemon, predicate, timeout: float = 20) -> str:
    """The next line of the daemon's stdout for which ``predicate`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = daemon.lines.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            continue
        if predicate(line):
            return line
    raise AssertionError(f"no such line within {timeout} s; stdout so far: {''.join(daemon.stdout)!r}")


@pytest.fixture
def site():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Site)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_ecosystem_style_plugins_in_the_terminal(tmp_path, site):
    with OpenAIServer(stream=False) as openai_server:
        config = write_config(tmp_path, open_ai_api_base=openai_server.base_url, open_ai_api_key="sk-test")
        plugins = plugins_dir(tmp_path, PLUGINS)
        with open(os.path.join(plugins, "config.json"), "w", encoding="utf-8") as f:
            json.dump({"ApiLookup": {"api_base": site, "token": "t-1"}, "GuessGame": {"secret": 37}}, f)
        daemon = Daemon(tmp_path, "--cmd", "--config", config, "--plugins-dir", plugins)
        try:
            daemon.ask("$timer 0 喝水时间到")
            # The timer may fire before the acknowledgement is printed: either order.
            wanted = {"scheduled in 0 s", "喝水时间到"}
            while wanted:
                wanted.discard(wait_line(daemon, lambda l: l in wanted))
            daemon.ask("$itchat hi")
            daemon.wait_for(
                "itchat failed: lib.itchat.send needs the personal WeChat channel (channel_type 'wx', itchat), "
                "which this program does not have yet; the channel now is 'terminal'"
            )
            daemon.ask(f"$总结 {site}/page.html")
            daemon.wait_for("端口的故事")
            daemon.wait_for("第一段：港口很忙。")
            daemon.ask(f"$总结 {site}/missing.html")
            daemon.wait_for("链接打不开")
            daemon.ask("$天气 北京")
            daemon.wait_for("北京：晴，21℃")
            daemon.ask("$猜数字")
            daemon.wait_for("猜一个 1 到 100 的数")
            for guess, answer in (("50", "大了"), ("20", "小了"), ("37", "猜对了！用了 3 次")):
                daemon.ask(guess)
                daemon.wait_for(answer)
            daemon.ask("$插件")
            # PluginManager().plugins, highest priority first (bundled ones included; NeedsPackage never loaded).
            line = wait_line(daemon, lambda l: l.startswith("GODCMD:"))
            names = [item.split(":")[0] for item in line.split()]
            assert names.index("OPENAICHAT") < names.index("TIMERTASK") < names.index("LINKDIGEST") < names.index("APILOOKUP")
            assert names.index("GUESSGAME") < names.index("ADMINTOOL") and "NEEDSPACKAGE" not in names
            assert "ROLE:0:off" in line and "DUNGEON:0:off" in line
            daemon.ask("$设置 color 蓝")
            daemon.wait_for("color=蓝")
            daemon.ask("$gpt 你好")
            daemon.wait_for("gpt: echo: 你好 (messages: 1)")
            assert openai_server.chat_requests()[-1].headers["authorization"] == "Bearer sk-test"
            daemon.wait_for_log(
                "plugin folder needs_package cannot be imported, skipped: it needs the Python package "
                "'surely_not_installed_pkg', which is not installed: pip install surely_not_installed_pkg"
            )
        finally:
            daemon.kill()
    with open(os.path.join(str(tmp_path), "run.log"), encoding="utf-8") as f:
        log = f.read()
    assert "Traceback" not in log


def test_a_plugin_with_a_bad_setting_is_disabled_in_plugins_json(tmp_path):
    config = write_config(tmp_path)
    plugins = plugins_dir(tmp_path, ("api_lookup", "counter"))
    daemon = Daemon(tmp_path, "--cmd", "--config", config, "--plugins-dir", plugins)
    try:
        daemon.ask("count")
        daemon.wait_for("count=1")
        daemon.wait_for_log("plugin APILOOKUP failed to start and is disabled: [ApiLookup] api_base is not configured")
    finally:
        daemon.kill()
    with open(os.path.join(plugins, "plugins.json"), encoding="utf-8") as f:
        entries = json.load(f)["plugins"]
    assert entries["ApiLookup"]["enabled"] is False and entries["Counter"]["enabled"] is True


def test_timer_plugin_sends_through_the_shared_wework_client(tmp_path):
    from sandbox.dify_server import DifyServer

    with DifyServer(api_key="app-test", mode="chat") as dify:
        daemon, ctl = start(tmp_path, dify, plugins=("timer_task",))
        try:
            wait_ready(daemon)
            ctl.inject(ctl.text(PRIVATE, ALICE, ALICE_NAME, "$timer 0 开会了"))
            ctl.wait_for_call("send_text", lambda c: c["data"]["content"] == "scheduled in 0 s")  # either order
            sent = ctl.wait_for_call("send_text", lambda c: c["data"]["content"] == "开会了")
            assert sent["data"]["conversation_id"] == PRIVATE
            ctl.inject(ctl.text(PRIVATE, ALICE, ALICE_NAME, "$itchat hi"))
            ctl.wait_for_call("send_text", lambda c: "for WeCom use channel.wework.run.wework" in c["data"]["content"])
            assert stop(daemon) == 0
        finally:
            daemon.kill()
