"""common/wechat_api.py against the platform simulator (tests/fakes/wechat_platform) and two
broken servers: JSON calls go through urllib3, uploads and downloads through requests."""
from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from common.wechat_api import TOKEN_ERRORS, WechatApi, WechatApiError
from tests.e2e.daemon import free_port
from tests.fakes.wechat_platform import WeChatPlatformSimulator

CORP, SECRET, AGENT = "wwApiTest0000001", "api-secret", 1000002


@pytest.fixture
def sim():
    platform = WeChatPlatformSimulator(wecom_apps={CORP: {SECRET: AGENT}}, member_limits=()).start()
    yield platform
    platform.stop()


def api_for(base: str) -> WechatApi:
    return WechatApi(base, ("gettoken", {"corpid": CORP, "corpsecret": SECRET}), label="test")


def text(user: str, content: str) -> dict:
    return {"touser": user, "msgtype": "text", "agentid": AGENT, "text": {"content": content}}


def test_a_json_call_is_sent_with_the_token_and_its_errcode_raised(sim):
    api = api_for(sim.base_url)
    assert api.call("message/send", text("u1", "你好 & <hi>"))["errcode"] == 0
    [call] = sim.calls("message/send")
    assert call.body["text"]["content"] == "你好 & <hi>" and call.errcode == 0
    with pytest.raises(WechatApiError) as refused:
        api.call("message/send", {"touser": "u1", "msgtype": "hologram", "agentid": AGENT})
    assert refused.value.errcode not in (None, 0) and refused.value.path == "message/send"


def test_a_refused_token_is_fetched_again_once(sim):
    api = api_for(sim.base_url)
    api.call("message/send", text("u1", "first"))
    sim.expire_tokens()
    api.call("message/send", text("u1", "second"))
    assert len(sim.calls("gettoken")) == 2
    first, refused, taken = [c.errcode for c in sim.calls("message/send")]
    assert (first, taken) == (0, 0) and refused in TOKEN_ERRORS


class _BrokenApi(BaseHTTPRequestHandler):
    """Gives tokens; answers calls with an HTML 502, or (path /cgi-bin/drop/...) closes the
    connection without an answer."""

    def _answer(self) -> None:
        if self.path.startswith("/cgi-bin/gettoken"):
            body, status = b'{"errcode": 0, "access_token": "t", "expires_in": 7200}', 200
        elif self.path.startswith("/cgi-bin/drop/"):
            self.close_connection = True
            return
        else:
            body, status = b"<html>bad gateway</html>", 502
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args) -> None:
        pass


def test_an_answer_that_is_not_json_and_a_call_without_answer_are_clear_errors():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _BrokenApi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = api_for(f"http://127.0.0.1:{server.server_port}")
        with pytest.raises(WechatApiError) as html:
            api.call("message/send", text("u1", "x"))
        assert "HTTP 502, not JSON" in str(html.value) and "bad gateway" in str(html.value)
        with pytest.raises(WechatApiError) as dropped:
            api.call("drop/message/send", text("u1", "x"))
        assert "not reachable" in str(dropped.value) and dropped.value.errcode is None
    finally:
        server.shutdown()
        server.server_close()
    with pytest.raises(WechatApiError) as down:
        api_for(f"http://127.0.0.1:{free_port()}").call("message/send", text("u1", "x"))
    assert "could not be fetched" in str(down.value) and down.value.errcode is None
