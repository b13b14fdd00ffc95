"""The LinkAI client (common/linkai_client.py) in this process against the fake LinkAI
server over real sockets: framing, hostile input, the client id, stopping."""
from __future__ import annotations

import json
import threading

import pytest

from bridge.reply import ReplyType
from common import linkai_client
from tests.e2e.daemon import wait_until
from tests.fakes.linkai_server import DEFAULT_KEY, LinkAIServer
from tests.fakes.recording_channel import RecordingChannel


@pytest.fixture
def server():
    with LinkAIServer() as s:
        yield s


@pytest.fixture
def channel(settings, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where the original kept its client id
    settings["appdata_dir"] = str(tmp_path / "data")
    made = RecordingChannel()
    made.channel_type = "wx"
    yield made
    made.stop()


def client_for(server, channel, **kwargs):
    client = linkai_client.ChatClient(DEFAULT_KEY, server.host, server.port, channel, **kwargs)
    client.start()
    return client


def linkai_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "linkai-client"]


def test_push_reaches_the_session_and_stop_ends_the_client(server, channel):
    before = len(linkai_threads())
    client = client_for(server, channel)
    try:
        server.wait_for("CHANNEL_STATUS")
        server.push_message("wxid_alice", "你好", in_group=False)
        wait_until(lambda: channel.sent, what="the push sent")
        assert channel.sent == [("wxid_alice", ReplyType.TEXT, "你好")]
    finally:
        client.stop()
    wait_until(lambda: len(linkai_threads()) == before, what="the client's thread to end")
    assert all(t.daemon for t in threading.enumerate() if t.name == "linkai-client")


def test_nul_padded_packets_are_read(server, channel):
    client = client_for(server, channel)
    try:
        server.wait_for("CHANNEL_STATUS")
        packet = json.dumps({"type": "PUSH", "data": {"sessionId": "s1", "msgContent": "padded"}}).encode()
        server.send_raw(packet + b"\x00" * 200 + b"\r\n")
        wait_until(lambda: channel.sent, what="the padded push sent")
        assert channel.sent[0][:1] == ("s1",)
    finally:
        client.stop()


def test_an_endless_line_closes_the_connection_and_the_client_comes_back(server, channel, logs):
    client = client_for(server, channel)
    try:
        server.wait_for("CHANNEL_STATUS")
        server.send_raw(b"x" * (linkai_client.MAX_LINE_BYTES + 70000))
        server.wait_for("LOGIN", count=2)
        server.wait_for("CHANNEL_STATUS", count=2)
        assert "without a line end; closing the connection" in logs.text()
        server.push_message("s2", "still here")
        wait_until(lambda: channel.sent, what="the push after the reconnect")
    finally:
        client.stop()


def test_the_originals_client_id_file_is_used_and_the_id_kept_in_appdata(server, channel, tmp_path):
    (tmp_path / "client_config.json").write_text(json.dumps({"client_id": "from-the-original"}), encoding="utf-8")
    client = client_for(server, channel)
    try:
        login = server.wait_for("LOGIN")[0]["data"]
        assert login["clientId"] == "from-the-original"
        server.wait_for("CHANNEL_STATUS")
    finally:
        client.stop()
    (tmp_path / "client_config.json").unlink()
    fresh = client_for(server, channel)
    try:
        server.wait_for("CHANNEL_STATUS", count=2)
        # No id on disk: LinkAI's is taken and kept in appdata_dir for the next start.
        assert "clientId" not in server.messages("LOGIN")[1]["data"]
        saved = json.loads((tmp_path / "data" / linkai_client.CLIENT_ID_FILE).read_text(encoding="utf-8"))
        assert saved == {"client_id": server.client_id}
    finally:
        fresh.stop()


def test_a_platform_that_refuses_the_push_is_logged(server, channel, logs):
    channel.fail_sends = 1
    client = client_for(server, channel)
    try:
        server.wait_for("CHANNEL_STATUS")
        server.push_message("s3", "refused")
        wait_until(lambda: "pushed message to s3 not delivered: platform said no" in logs.text(), what="the log")
        server.push_message("s3", "accepted")
        wait_until(lambda: channel.sent, what="the next push")
    finally:
        client.stop()


def test_a_console_chat_request_is_answered_with_an_error(server, channel):
    client = client_for(server, channel)
    try:
        server.wait_for("CHANNEL_STATUS")
        request = {"type": "CHAT", "requestId": "r-1", "data": {"action": "chat", "payload": {"query": "hi"}}}
        server.send_raw((json.dumps(request) + "\r\n").encode())
        answer = server.wait_for("CHAT")[0]
        assert answer["requestId"] == "r-1"
        assert (answer["data"]["streaming"], answer["data"]["code"]) == (False, 500)
        assert "not supported" in answer["data"]["message"]
        assert channel.sent == []
    finally:
        client.stop()


def test_heartbeats_carry_the_client_id(server, channel):
    client = client_for(server, channel, heartbeat_interval=0.1)
    try:
        beats = server.wait_for("HEARTBEAT", count=2)
        assert all(beat["data"] == {"clientId": server.client_id} for beat in beats)
    finally:
        client.stop()


def test_a_login_left_unanswered_is_given_up_and_tried_again(server, channel, logs):
    server.answer_logins = False
    client = client_for(server, channel, login_timeout=0.2)
    try:
        server.wait_for("LOGIN", count=2)
        assert "no answer to the login within 0.2 s" in logs.text()
        assert server.messages("HEARTBEAT") == []  # no client id yet: nothing to beat for
    finally:
        client.stop()


def test_several_channels_push_to_the_owner_or_the_first_and_report_each(server, settings, tmp_path, monkeypatch):
    from channel.channel_group import ChannelGroup

    monkeypatch.chdir(tmp_path)
    settings["appdata_dir"] = str(tmp_path / "data")
    members = []
    for name in ("wx", "web"):
        member = RecordingChannel()
        member.channel_type = name
        members.append(member)
    group = ChannelGroup(members)
    client = client_for(server, group)
    try:
        statuses = server.wait_for("CHANNEL_STATUS", count=2)
        assert sorted(s["data"]["channelType"] for s in statuses) == ["web", "wx"]
        assert server.messages("LOGIN")[0]["data"]["clientType"] == "wx"
        server.push_message("web:bob", "to the web page")  # a session id of the group's own form
        server.push_message("wxid_alice", "to wechat")  # any other: the first channel
        wait_until(lambda: members[0].sent and members[1].sent, what="both pushes sent")
        assert members[1].sent == [("bob", ReplyType.TEXT, "to the web page")]
        assert members[0].sent == [("wxid_alice", ReplyType.TEXT, "to wechat")]
    finally:
        client.stop()
        for member in members:
            member.stop()


def _reconnect_delays(text: str) -> list[float]:
    return [float(line.split("connecting again in ")[1].split(" s")[0])
            for line in text.splitlines() if "connecting again in " in line]


@pytest.mark.slow
def test_a_server_that_closes_after_each_login_gets_longer_waits(server, channel, logs):
    server.close_after_login = True
    client = client_for(server, channel, reconnect_max=60)
    try:
        server.wait_for("LOGIN", count=3)
        wait_until(lambda: len(_reconnect_delays(logs.text())) >= 2, what="two reconnect delays logged")
        first, second = _reconnect_delays(logs.text())[:2]
        # 1 s, then 2 s (each minus up to 20 % jitter): a login alone does not reset the back-off.
        assert first <= 1.0 < second, (first, second)
        assert "after the login (the back-off is not reset)" in logs.text()
        assert "cannot reach" not in logs.text()
    finally:
        client.stop()


def test_a_login_failing_for_another_reason_is_tried_again(server, channel, logs):
    server.login_code = 500
    client = client_for(server, channel)
    try:
        server.wait_for("LOGIN", count=2)
        assert "login failed (code 500: try later); trying again later" in logs.text()
    finally:
        client.stop()


def test_a_login_refused_for_the_key_is_final(server, channel, logs):
    server.api_keys = {"another-key"}
    client = client_for(server, channel)
    try:
        wait_until(lambda: "[LinkAI] client stopped" in logs.text(), what="the client to stop")
        assert len(server.messages("LOGIN")) == 1
        assert "login refused (code 401" in logs.text()
    finally:
        client.stop()


def test_config_pushes_are_applied_one_at_a_time(server, channel, settings, monkeypatch):
    from common import linkai_settings

    real = linkai_settings.apply_pushed
    running, overlaps, done = [], [], []
    lock = threading.Lock()

    def watched(config):
        with lock:
            running.append(1)
            overlaps.append(len(running))
        try:
            threading.Event().wait(0.3)  # long enough for the second push's thread to arrive
            return real(config)
        finally:
            with lock:
                running.pop()
                done.append(config.get("single_chat_reply_prefix"))

    monkeypatch.setattr(linkai_settings, "apply_pushed", watched)
    client = client_for(server, channel)
    try:
        server.wait_for("CHANNEL_STATUS")
        server.push_config({"enabled": "Y", "single_chat_reply_prefix": "[1] "})
        server.push_config({"enabled": "Y", "single_chat_reply_prefix": "[2] "})
        wait_until(lambda: len(done) == 2, what="both pushes applied")
        assert overlaps == [1, 1]
    finally:
        client.stop()
