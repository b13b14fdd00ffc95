"""The wxy channel's parts without a daemon: endpoint parsing, discovery against the fake's
hosties endpoint (and broken ones), and payload -> ChatMessage translation."""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest

from bridge.context import ContextType
from channel.wechaty import puppet
from channel.wechaty.wechaty_message import Malformed, Unsupported, WechatyMessage, facts_of
from tests.fakes.wechaty import FakePuppet


@pytest.fixture(scope="module")
def fake():
    server = FakePuppet(token="tok-1").start()
    yield server
    server.stop()


@pytest.mark.parametrize("text, host, port", [
    ("127.0.0.1:8788", "127.0.0.1", 8788), ("puppet.example.com", "puppet.example.com", puppet.DEFAULT_PORT),
    ("grpc://10.0.0.2:9001/", "10.0.0.2", 9001), ("[::1]:7000", "::1", 7000)])
def test_endpoints_are_parsed(text, host, port):
    assert puppet.parse_endpoint(text) == puppet.Endpoint(host, port)


@pytest.mark.parametrize("text", [":8788", "host:port", "host:70000"])
def test_bad_endpoints_are_refused(text):
    with pytest.raises(ValueError):
        puppet.parse_endpoint(text)


def test_discovery_finds_the_service_of_a_token(fake):
    assert puppet.discover(fake.hosties_url, "tok-1") == puppet.Endpoint("127.0.0.1", fake.port)


def test_discovery_of_a_token_without_a_service_says_so(fake):
    with pytest.raises(puppet.DiscoveryError, match="no running puppet service for this token"):
        puppet.discover(fake.hosties_url, "tok-unknown")


def test_discovery_that_is_down_or_answers_nonsense_says_so():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    with pytest.raises(puppet.DiscoveryError, match="not reachable"):
        puppet.discover(f"http://127.0.0.1:{closed}/v0/hosties", "tok", timeout=2)

    class Nonsense(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b"<html>502</html>" if "html" in self.path else b"[1, 2]"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Nonsense)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with pytest.raises(puppet.DiscoveryError, match="did not answer JSON"):
            puppet.discover(base, "html")
        with pytest.raises(puppet.DiscoveryError, match="not an object"):
            puppet.discover(base, "list")
    finally:
        server.shutdown()
        server.server_close()


def test_a_missing_client_names_the_requirements_file(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "wechaty_grpc", None)
    with pytest.raises(puppet.MissingDependency, match="pip install -r requirements-wxy.txt"):
        puppet.load_stubs()


def payload(**fields):
    base = dict(id="m1", type=6, text="hi", timestamp=1700000000, from_id="wxid_a", to_id="wxid_bot", room_id="",
                mention_ids=[], filename="")
    base.update(fields)
    return SimpleNamespace(**base)


def test_a_private_text_is_a_conversation_with_its_talker():
    msg = WechatyMessage(facts_of(payload(), from_name="Alice", self_id="wxid_bot", self_name="Bot"))
    assert (msg.ctype, msg.content, msg.other_user_id, msg.other_user_nickname) == (ContextType.TEXT, "hi", "wxid_a",
                                                                                     "Alice")
    assert not msg.is_group and not msg.my_msg and msg.create_time == 1700000000


def test_a_room_message_mentions_the_bot_by_id_or_by_a_pasted_at():
    by_id = WechatyMessage(facts_of(payload(room_id="r1", to_id="", mention_ids=["wxid_bot"], text="hey"),
                                    room_topic="Team", self_id="wxid_bot", self_name="Bot"))
    assert by_id.is_group and by_id.is_at and by_id.other_user_id == "r1" and by_id.actual_user_id == "wxid_a"
    pasted = WechatyMessage(facts_of(payload(room_id="r1", text="@Bot\u2005hey"), self_id="wxid_bot", self_name="Bot"))
    assert pasted.is_at
    other = WechatyMessage(facts_of(payload(room_id="r1", text="@Bob hey", mention_ids=["wxid_b"]),
                                    self_id="wxid_bot", self_name="Bot"))
    assert not other.is_at


def test_media_name_a_file_and_survive_a_record_round_trip():
    msg = WechatyMessage(facts_of(payload(type=5, text=""), self_id="wxid_bot"))
    assert msg.ctype == ContextType.IMAGE and msg.content.endswith(".jpg")
    again = WechatyMessage.from_record(msg.to_record(), None)
    assert (again.msg_id, again.content, again.ctype) == ("m1", msg.content, ContextType.IMAGE)


@pytest.mark.parametrize("fields, error", [
    (dict(id=""), Malformed), (dict(from_id=""), Malformed), (dict(to_id="", room_id=""), Malformed),
    (dict(type=14), Unsupported), (dict(text="  "), Unsupported)])
def test_payloads_that_cannot_be_messages_are_refused(fields, error):
    with pytest.raises(error):
        WechatyMessage(facts_of(payload(**fields)))
