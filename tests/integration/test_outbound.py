"""Outbound calls (issue 11, defects 4 and 6) against the Dify simulator over loopback:
a Dify answer has a total deadline however slowly it trickles; downloads of links from answers
refuse internal addresses (also behind a name or a redirect), end at download_timeout, stop at
their byte cap, and never take more than half the workers."""
from __future__ import annotations

import socket
import threading
import time

import pytest

from bot.dify.dify_bot import DifyBot
from bot.dify.errors import user_message, DifyAnswerTimeout
from bridge.reply import ReplyType
from common import fetch
from tests.fakes.dify_fixtures import (  # noqa: F401 - fixtures
    DeliveryChannel,
    dify,
    dify_settings,
    make_context,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 64


@pytest.fixture
def outside(dify, dify_settings):
    """Settings where the simulator is NOT the configured Dify host (it stands for any server)."""
    dify_settings["dify_api_base"] = "https://api.dify.ai/v1"
    dify_settings["allowed_internal_hosts"] = []
    dify_settings["download_timeout"] = 10
    return dify_settings


def fetched_paths(server):
    return [r["path"] for r in server.requests if r["method"] == "GET"]


# --- internal addresses ---------------------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1:{port}/files/secret.png",
    "http://localhost:{port}/files/secret.png",  # a name that resolves to loopback
    "http://[::1]:{port}/files/secret.png",
    "http://[::ffff:127.0.0.1]:{port}/files/secret.png",
    "http://0.0.0.0:{port}/files/secret.png",
    "http://10.1.2.3/x", "http://192.168.0.1/x", "http://172.16.0.1/x", "http://100.64.0.1/x",
    "http://169.254.169.254/latest/meta-data/", "http://224.0.0.1/x", "http://240.0.0.1/x",
])
def test_internal_addresses_are_refused_before_any_connection(outside, dify, url):
    dify.add_file("/files/secret.png", PNG, "image/png")
    with pytest.raises(fetch.FetchRefused) as refused:
        fetch.fetch_bytes(url.format(port=dify.port), 1024)
    assert "allowed_internal_hosts" in str(refused.value)
    assert fetched_paths(dify) == []


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/x", "gopher://127.0.0.1/", "/relative"])
def test_only_http_and_https_are_fetched(outside, url):
    with pytest.raises(fetch.FetchRefused):
        fetch.fetch_bytes(url, 1024)


@pytest.mark.parametrize("target", ["http://127.0.0.2:{port}/files/secret.png", "http://169.254.169.254/latest/",
                                    "http://[::1]:{port}/files/secret.png"])
def test_a_redirect_to_an_internal_address_is_refused(outside, dify, target):
    # 127.0.0.1 is allowed (the "public" side here); where it redirects to is checked again.
    outside["allowed_internal_hosts"] = ["127.0.0.1"]
    dify.add_file("/files/secret.png", PNG, "image/png")
    dify.add_redirect("/go", target.format(port=dify.port))
    with pytest.raises(fetch.FetchRefused):
        fetch.fetch_bytes(f"http://127.0.0.1:{dify.port}/go", 1024)
    assert fetched_paths(dify) == ["/go"]


def test_allowed_hosts_names_addresses_and_networks_work_and_redirects_are_followed(outside, dify):
    dify.add_file("/files/ok.png", PNG, "image/png")
    dify.add_redirect("/go", "/files/ok.png")
    for allowed in (["localhost"], ["LOCALHOST."], ["127.0.0.0/8", "::1"]):
        outside["allowed_internal_hosts"] = allowed
        data, content_type = fetch.fetch_bytes(f"http://localhost:{dify.port}/go", 1024)
        assert (data, content_type) == (PNG, "image/png")


def test_the_dify_api_host_is_allowed_without_a_setting(dify, dify_settings):
    dify_settings["allowed_internal_hosts"] = []
    dify.add_file("/files/ok.png", PNG, "image/png")
    assert fetch.fetch_bytes(dify.host_url + "/files/ok.png", 1024)[0] == PNG


def test_a_link_http_cannot_send_is_a_fetch_error(dify, dify_settings):
    with pytest.raises(fetch.FetchError):
        fetch.fetch_bytes(dify.host_url + "/files/a b\x01.png", 1024)
    assert fetch.download_slots_in_use() == 0


def test_too_many_redirects(outside, dify):
    outside["allowed_internal_hosts"] = ["127.0.0.1"]
    for i in range(7):
        dify.add_redirect(f"/r{i}", f"/r{i + 1}")
    with pytest.raises(fetch.FetchError, match="more than 5 redirects"):
        fetch.fetch_bytes(f"http://127.0.0.1:{dify.port}/r0", 1024)


def test_the_checked_address_is_the_one_connected_to(outside, dify, monkeypatch):
    # A rebinding name: loopback (allowed by address) for the check, then somewhere else.
    # The download must use the first answer and never ask again.
    outside["allowed_internal_hosts"] = ["127.0.0.1"]
    dify.add_file("/files/ok.png", PNG, "image/png")
    real = socket.getaddrinfo
    asked = []

    def resolver(host, port, *args, **kwargs):
        if host == "rebind.test":
            asked.append(host)
            address = "127.0.0.1" if len(asked) == 1 else "192.0.2.1"  # TEST-NET: nothing answers
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    data, _ = fetch.fetch_bytes(f"http://rebind.test:{dify.port}/files/ok.png", 1024)
    assert data == PNG and asked == ["rebind.test"]
    [request] = [r for r in dify.requests if r["path"] == "/files/ok.png"]
    assert request["headers"]["host"] == f"rebind.test:{dify.port}"


# --- size and time --------------------------------------------------------------------------------

@pytest.mark.parametrize("declare_length", [True, False])
def test_a_huge_file_stops_at_the_byte_cap(dify, dify_settings, declare_length):
    dify.add_huge_file("/files/huge.bin", 200 * 1024 * 1024, declare_length=declare_length)
    with pytest.raises(fetch.FetchTooLarge):
        fetch.fetch_bytes(dify.host_url + "/files/huge.bin", 1024 * 1024)


def test_a_slow_file_ends_at_download_timeout(dify, dify_settings, tmp_path):
    dify_settings["download_timeout"] = 1
    # One byte every 0.3 s: every read is well within any read timeout, the whole takes 30 s.
    dify.add_file("/files/slow.png", PNG[:100], "image/png", byte_delay=0.3)
    target = tmp_path / "slow.png"
    with pytest.raises(fetch.FetchTimeout, match="download_timeout"):
        fetch.fetch_to_file(dify.host_url + "/files/slow.png", str(target), 1024)
    assert not target.exists()  # no partial file left behind
    assert fetch.download_slots_in_use() == 0


def test_past_half_the_workers_a_download_fails_at_once(dify, dify_settings):
    dify_settings["worker_threads"] = 4  # two download slots
    dify_settings["download_timeout"] = 30
    dify.add_file("/files/slow.png", PNG, "image/png", byte_delay=1)
    dify.add_file("/files/ok.png", PNG, "image/png")
    started = threading.Barrier(3)
    results = []

    def slow():
        started.wait()
        try:
            fetch.fetch_bytes(dify.host_url + "/files/slow.png", 1024)
        except fetch.FetchError as e:
            results.append(e)

    threads = [threading.Thread(target=slow) for _ in range(2)]
    for t in threads:
        t.start()
    started.wait()
    deadline = time.monotonic() + 10
    while fetch.download_slots_in_use() < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    with pytest.raises(fetch.FetchBusy):
        fetch.fetch_bytes(dify.host_url + "/files/ok.png", 1024)
    dify.stop()  # ends the slow downloads
    for t in threads:
        t.join(10)
    assert fetch.download_slots_in_use() == 0


# --- Dify answers ---------------------------------------------------------------------------------

def test_a_trickling_stream_ends_at_the_answer_deadline_with_a_clear_error(dify, dify_settings):
    dify_settings["dify_answer_timeout"] = 1
    dify.push_trickle(None, every=0.2)  # pings only: the read timeout (5 s) never fires
    context = make_context("hello")
    reply = DifyBot().reply("hello", context)
    assert (reply.type, reply.content) == (ReplyType.TEXT, user_message(DifyAnswerTimeout(), False))
    assert "dify_answer_timeout" in reply.content


def test_text_that_arrived_before_the_deadline_is_kept(dify, dify_settings):
    dify_settings["dify_answer_timeout"] = 1
    dify.push_trickle("la ", every=0.2)
    reply = DifyBot().reply("sing", make_context("sing"))
    assert reply.content.startswith("la la ")
    assert reply.content.endswith("(The answer was cut off.)")


def test_a_blocking_answer_that_trickles_ends_at_the_deadline(dify, dify_settings):
    dify_settings["dify_answer_timeout"] = 1
    dify_settings["dify_response_mode"] = "blocking"
    dify.push_answer("slow", latency=3)  # within the read timeout (5 s), past the answer deadline
    reply = DifyBot().reply("hello", make_context("hello"))
    assert reply.content == user_message(DifyAnswerTimeout(), False)


def test_an_answer_linking_to_an_internal_address_sends_the_link_not_the_file(dify, dify_settings):
    # The configured Dify host is "localhost"; the answer points at 127.0.0.1, another host.
    dify_settings["dify_api_base"] = f"http://localhost:{dify.port}/v1"
    dify_settings["allowed_internal_hosts"] = []
    dify.add_file("/files/secret.png", PNG, "image/png")
    dify.add_file("/files/ok.png", PNG, "image/png")
    secret = f"http://127.0.0.1:{dify.port}/files/secret.png"
    dify.push_answer(f"![a]({secret})\n\n![b](/files/ok.png)")
    channel = DeliveryChannel()
    reply = DifyBot().reply("q", make_context("q", channel=channel))
    [first] = channel.delivered
    assert (first.type, first.content) == (ReplyType.TEXT, f"图片链接：{secret}")
    assert reply.type == ReplyType.IMAGE and reply.content.getvalue() == PNG  # the Dify host's own file
    assert "/files/secret.png" not in fetched_paths(dify)


# --- the whole pipeline ---------------------------------------------------------------------------

def test_eight_slow_downloads_do_not_stop_another_user_being_answered(dify, dify_settings):
    from bridge.bridge import Bridge
    from tests.fakes.recording_channel import RecordingChannel, make_msg

    dify_settings["single_chat_prefix"] = [""]
    dify_settings["worker_threads"] = 8
    dify_settings["download_timeout"] = 60
    # One byte every 2 s: no read ever times out, the whole image takes minutes.
    dify.add_file("/files/slow.png", PNG, "image/png", byte_delay=2)
    for _ in range(8):
        dify.push_answer("![chart](/files/slow.png)")
    Bridge().reset_bot()
    channel = RecordingChannel()
    try:
        for n in range(8):
            channel.receive(make_msg(f"chart {n}", sender=f"user-{n}"))
        until = time.monotonic() + 20
        while len(dify.requests_to("/v1/chat-messages")) < 8 and time.monotonic() < until:
            time.sleep(0.02)
        channel.receive(make_msg("hello", sender="someone-else"))
        until = time.monotonic() + 20
        while not any(r == "someone-else" for r, _, _ in channel.sent) and time.monotonic() < until:
            time.sleep(0.02)
        answered = [(t, c) for r, t, c in channel.sent if r == "someone-else"]
        assert answered == [(ReplyType.TEXT, "echo: hello")]
        # The downloads past half the workers did not wait: their link went out as text.
        busy = [c for r, t, c in channel.sent if r.startswith("user-")]
        assert len(busy) == 4 and all(c == f"图片链接：{dify.host_url}/files/slow.png" for c in busy)
    finally:
        dify.stop()  # ends the slow downloads
        channel.wait_idle(30)
        channel.stop()
        Bridge().reset_bot()
    assert sorted(r for r, _, _ in channel.sent if r.startswith("user-")) == [f"user-{n}" for n in range(8)]


# --- https: connected by address, verified by name --------------------------------------------------

@pytest.fixture
def tls_server(tmp_path):
    """An HTTPS file server on 127.0.0.1 whose certificate names only "localhost"."""
    import http.server
    import ssl

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(context)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield httpd.server_address[1], str(ca_file)
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_https_is_verified_against_the_name_while_connecting_to_the_checked_address(outside, tls_server, monkeypatch):
    port, ca_file = tls_server
    monkeypatch.setattr(fetch, "_ca_certs", lambda: ca_file)  # trust the test CA instead of certifi's
    outside["allowed_internal_hosts"] = ["localhost", "127.0.0.1"]
    assert fetch.fetch_bytes(f"https://localhost:{port}/x.png", 1024) == (PNG, "image/png")
    # The certificate does not name 127.0.0.1: refused although that is where it connects.
    with pytest.raises(fetch.FetchError, match="localhost"):
        fetch.fetch_bytes(f"https://127.0.0.1:{port}/x.png", 1024)
