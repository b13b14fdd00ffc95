"""DifyClient against the Dify simulator over loopback (and a raw server for what the
simulator cannot script): endpoints, SSE reading, error kinds, retries, timeouts."""
from __future__ import annotations

import json
import sys
import time

import pytest

from bot.dify import errors
from bot.dify.dify_client import (
    DifyClient,
    DifyEventStream,
    close_clients,
    file_base_url,
    get_client,
)
from sandbox.dify_server import DifyServer
from tests.fakes.dify_fixtures import (  # noqa: F401 - fixtures
    API_KEY,
    RawServer,
    SaturatedListener,
    dify,
    dify_settings,
    unused_port,
)


@pytest.fixture
def client(dify):
    c = DifyClient(dify.base_url, API_KEY)
    c.sleeps = []
    c.sleep = c.sleeps.append  # record backoff instead of sleeping
    yield c
    c.close()


def chat_body(query="hi", **more):
    body = {"inputs": {}, "query": query, "user": "u1"}
    body.update(more)
    return body


# --- endpoints -------------------------------------------------------------------------------

def test_blocking_chat_returns_the_answer_and_sends_the_key(client, dify):
    data = client.chat_messages(chat_body("hello"), stream=False)
    assert data["answer"] == "echo: hello"
    assert data["conversation_id"] in dify.conversations
    [request] = dify.requests_to("/v1/chat-messages")
    assert request["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert request["json"]["response_mode"] == "blocking"


def test_streaming_chat_yields_event_dicts_in_order(client, dify):
    dify.push_answer("hello world", chunk_size=3)
    with client.chat_messages(chat_body(), stream=True) as events:
        got = list(events)
    assert [e["event"] for e in got] == ["message"] * 4 + ["message_end"]
    assert "".join(e["answer"] for e in got if e["event"] == "message") == "hello world"
    assert dify.requests_to("/v1/chat-messages")[0]["json"]["response_mode"] == "streaming"


def test_ping_blocks_and_unknown_events_pass_through_the_reader(client, dify):
    dify.push_events(["ping", {"event": "message", "answer": "a"}, "ping", {"event": "brand_new_event"},
                      {"event": "tts_message", "audio": "AAAA"}, {"event": "message_end", "metadata": {}}])
    with client.chat_messages(chat_body(), stream=True) as events:
        names = [e["event"] for e in events]
    assert names == ["message", "brand_new_event", "tts_message", "message_end"]


def test_error_event_is_raised_as_its_kind(client, dify):
    dify.push_events([{"event": "message", "answer": "par"},
                      {"event": "error", "code": "provider_quota_exceeded", "status": 400, "message": "quota"}])
    seen = []
    with pytest.raises(errors.DifyQuotaError):
        with client.chat_messages(chat_body(), stream=True) as events:
            for event in events:
                seen.append(event["event"])
    assert seen == ["message"]


def test_comments_and_pings_are_skipped_and_a_block_split_over_chunks_joined():
    raw_stream = [
        b"data: {\"event\":\"message\",\"answer\":\"A\"}\n\n",
        b"event: ping\n\n",
        b": a comment\n\n",
        b"data: {\"event\":\"message\",",  # one block split over two chunks
        b"\"answer\":\"B\"}\n\ndata: {\"event\":\"message_end\"}\n\n",
    ]
    with RawServer() as raw:
        raw.push(200, raw_stream, {"Content-Type": "text/event-stream"})
        c = DifyClient(raw.base_url, API_KEY, max_retries=0)
        with c.chat_messages(chat_body(), stream=True) as events:
            got = list(events)
        c.close()
    assert [(e["event"], e.get("answer")) for e in got] == [("message", "A"), ("message", "B"), ("message_end", None)]


@pytest.mark.parametrize("bad", [b"data: {not json\n\n", b"data: [1, 2]\n\n", b"data: \xff\xfe{}\n\n"])
def test_a_block_that_is_no_event_stops_the_stream_with_a_bad_stream_error(bad):
    # Skipping it would lose part of the answer without a word (issue 11).
    raw_stream = [b"data: {\"event\":\"message\",\"answer\":\"A\"}\n\n", bad,
                  b"data: {\"event\":\"message_end\"}\n\n"]
    seen = []
    with RawServer() as raw:
        raw.push(200, raw_stream, {"Content-Type": "text/event-stream"})
        c = DifyClient(raw.base_url, API_KEY, max_retries=0)
        with pytest.raises(errors.DifyBadStream):
            with c.chat_messages(chat_body(), stream=True) as events:
                for event in events:
                    seen.append(event.get("answer"))
        c.close()
    assert seen == ["A"]


def test_cut_stream_raises_stream_cut_after_the_events_that_arrived(client, dify):
    dify.push_events([{"event": "message", "answer": "partial"}, "CUT"])
    seen = []
    with pytest.raises(errors.DifyStreamCut):
        with client.chat_messages(chat_body(), stream=True) as events:
            for event in events:
                seen.append(event.get("answer"))
    assert seen == ["partial"]
    assert len(dify.requests_to("/v1/chat-messages")) == 1  # never sent again


def test_completion_and_workflow_endpoints(dify_settings):
    with DifyServer(api_key=API_KEY, mode="completion") as server:
        c = DifyClient(server.base_url, API_KEY)
        assert c.completion_messages({"inputs": {"query": "q"}, "user": "u"}, stream=False)["answer"] == "echo: q"
        with c.completion_messages({"inputs": {"query": "q"}, "user": "u"}, stream=True) as events:
            assert "".join(e.get("answer", "") for e in events) == "echo: q"
        server.mode = "workflow"
        data = c.workflow_run({"inputs": {"query": "w"}, "user": "u"}, stream=False)
        assert data["data"]["outputs"] == {"text": "echo: w"}
        with c.workflow_run({"inputs": {"query": "w"}, "user": "u"}, stream=True) as events:
            names = [e["event"] for e in events]
        assert names[0] == "workflow_started" and names[-1] == "workflow_finished"
        c.close()


def test_upload_audio_and_tts(client, dify, tmp_path):
    image = tmp_path / "cat.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    record = client.upload_file(str(image), "u1")  # the simulator answers 201
    assert dify.uploads[record["id"]]["user"] == "u1"
    [request] = dify.requests_to("/v1/files/upload")
    assert request["form"] == {"user": "u1"}
    assert request["files"]["file"]["filename"] == "cat.png"
    assert request["files"]["file"]["content_type"] == "image/png"

    audio = tmp_path / "voice.mp3"
    audio.write_bytes(b"ID3" + b"\x00" * 100)
    assert client.audio_to_text(str(audio), "u1") == "transcribed text"
    assert dify.requests_to("/v1/audio-to-text")[0]["files"]["file"]["content_type"] == "audio/mp3"
    wav = tmp_path / "voice.wav"
    wav.write_bytes(b"RIFF" + b"\x00" * 100)
    assert client.audio_to_text(str(wav)) == "transcribed text"
    audio, content_type = client.text_to_audio("hello", "u1")
    assert audio.startswith(b"ID3")
    assert content_type == "audio/mpeg"
    with pytest.raises(errors.DifyBadRequest):
        client.text_to_audio("   ")  # 400 Text is required


def test_non_2xx_of_voice_endpoints_raises(dify, tmp_path):
    c = DifyClient(dify.base_url, "app-wrong", max_retries=0)
    audio = tmp_path / "a.mp3"
    audio.write_bytes(b"ID3")
    with pytest.raises(errors.DifyAuthError):
        c.audio_to_text(str(audio), "u")
    with pytest.raises(errors.DifyAuthError):
        c.text_to_audio("x", "u")
    c.close()


# --- error kinds -----------------------------------------------------------------------------

@pytest.mark.parametrize("status,code,message,kind", [
    (401, "unauthorized", "Access token is invalid", errors.DifyAuthError),
    (403, "forbidden", "The app's API service has been disabled.", errors.DifyAppUnavailable),
    (400, "app_unavailable", "App unavailable", errors.DifyAppUnavailable),
    (400, "not_chat_app", "Please check if your app mode matches the right API route.", errors.DifyAppTypeError),
    (400, "not_workflow_app", "mode mismatch", errors.DifyAppTypeError),
    (400, "not_completion_app", "mode mismatch", errors.DifyAppTypeError),
    (400, "invalid_param", "Agent Chat App does not support blocking mode", errors.DifyAppTypeError),
    (400, "provider_quota_exceeded", "quota", errors.DifyQuotaError),
    (400, "provider_not_initialize", "no credentials", errors.DifyQuotaError),
    (400, "model_currently_not_support", "no model", errors.DifyQuotaError),
    (400, "completion_request_error", "provider said no", errors.DifyModelError),
    (429, "too_many_requests", "Too many requests.", errors.DifyRateLimitError),
    (429, "rate_limit_error", "Rate Limit Error", errors.DifyRateLimitError),
    (404, "not_found", "Conversation Not Exists.", errors.DifyConversationNotFound),
    (404, "not_found", "The requested URL was not found on the server.", errors.DifyNotFoundError),
    (400, "invalid_param", "query is required", errors.DifyBadRequest),
    (413, "file_too_large", "File size exceeded.", errors.DifyBadRequest),
    (500, "internal_server_error", "Internal Server Error, please contact support.", errors.DifyServerError),
    (502, "", "Bad Gateway", errors.DifyServerError),
])
def test_each_error_code_maps_to_its_kind(client, dify, status, code, message, kind):
    client.max_retries = 0
    dify.push_error(status, code, message)
    with pytest.raises(kind) as raised:
        client.chat_messages(chat_body(), stream=False)
    assert type(raised.value) is kind
    assert raised.value.status == status and raised.value.message == message


def test_errors_before_a_stream_are_plain_http_errors(dify):
    c = DifyClient(dify.base_url, "app-wrong")
    with pytest.raises(errors.DifyAuthError):
        c.chat_messages(chat_body(), stream=True)
    c.close()


def test_non_json_error_body_still_classified():
    with RawServer() as raw:
        raw.push(502, b"<html>bad gateway</html>", {"Content-Type": "text/html"})
        c = DifyClient(raw.base_url, API_KEY, max_retries=0)
        with pytest.raises(errors.DifyServerError):
            c.chat_messages(chat_body(), stream=False)
        raw.push(200, b"<html>a web page</html>", {"Content-Type": "text/html"})
        with pytest.raises(errors.DifyBadResponse):
            c.chat_messages(chat_body(), stream=False)
        c.close()


# --- retries -----------------------------------------------------------------------------------

def test_two_503_then_success_is_retried_with_growing_backoff(client, dify):
    dify.push_error(503, "internal_server_error", "busy")
    dify.push_error(503, "internal_server_error", "busy")
    assert client.chat_messages(chat_body("again"), stream=False)["answer"] == "echo: again"
    assert len(dify.requests_to("/v1/chat-messages")) == 3
    assert client.sleeps == [pytest.approx(0.001), pytest.approx(0.002)]


def test_exhausted_retries_raise_the_last_error(client, dify, dify_settings):
    dify_settings["dify_max_retries"] = 2
    for _ in range(3):
        dify.push_error(500, "internal_server_error", "down")
    with pytest.raises(errors.DifyServerError):
        client.chat_messages(chat_body(), stream=False)
    assert len(dify.requests_to("/v1/chat-messages")) == 3


def test_429_honours_retry_after_capped():
    with RawServer() as raw:
        body = json.dumps({"code": "too_many_requests", "message": "slow down", "status": 429}).encode()
        raw.push(429, body, {"Content-Type": "application/json", "Retry-After": "3"})
        raw.push(429, body, {"Content-Type": "application/json", "Retry-After": "3600"})
        busy = json.dumps({"code": "internal_server_error", "message": "busy", "status": 503}).encode()
        raw.push(503, busy, {"Content-Type": "application/json", "Retry-After": "1.5"})
        ok = json.dumps({"answer": "fine", "conversation_id": "c"}).encode()
        raw.push(200, ok, {"Content-Type": "application/json"})
        c = DifyClient(raw.base_url, API_KEY, max_retries=3)
        c.sleeps = []
        c.sleep = c.sleeps.append
        assert c.chat_messages(chat_body(), stream=False)["answer"] == "fine"
        c.close()
    assert c.sleeps == [3.0, DifyClient.retry_after_cap, 1.5]


def test_rate_limit_without_retry_after_uses_backoff(client, dify):
    dify.push_error(429, "too_many_requests", "Too many requests.")
    assert client.chat_messages(chat_body("x"), stream=False)["answer"] == "echo: x"
    assert client.sleeps == [pytest.approx(0.001)]


def test_a_dropped_connection_before_the_answer_is_retried(client, dify):
    dify.push_disconnect()
    assert client.chat_messages(chat_body("after drop"), stream=False)["answer"] == "echo: after drop"
    assert len(dify.requests_to("/v1/chat-messages")) == 2


def test_client_errors_are_not_retried(client, dify):
    dify.push_error(400, "invalid_param", "bad")
    with pytest.raises(errors.DifyBadRequest):
        client.chat_messages(chat_body(), stream=False)
    assert len(dify.requests_to("/v1/chat-messages")) == 1


def test_refused_connection_is_retried_then_raised(dify_settings):
    c = DifyClient(f"http://127.0.0.1:{unused_port()}/v1", API_KEY, max_retries=1)
    c.sleeps = []
    c.sleep = c.sleeps.append
    with pytest.raises(errors.DifyConnectionError):
        c.chat_messages(chat_body(), stream=False)
    assert len(c.sleeps) == 1
    c.close()


def test_read_timeout_is_raised_and_not_retried(client, dify):
    client.read_timeout = 0.3
    dify.push_hang(3)
    started = time.monotonic()
    with pytest.raises(errors.DifyTimeout) as raised:
        client.chat_messages(chat_body(), stream=False)
    assert time.monotonic() - started < 2
    assert not raised.value.retryable
    assert len(dify.requests_to("/v1/chat-messages")) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="a full accept queue drops SYNs on Linux")
def test_connect_timeout_is_retried_then_raised(dify_settings):
    with SaturatedListener() as listener:
        c = DifyClient(listener.base_url, API_KEY, connect_timeout=0.2, max_retries=1)
        c.sleeps = []
        c.sleep = c.sleeps.append
        with pytest.raises(errors.DifyTimeout) as raised:
            c.chat_messages(chat_body(), stream=False)
        c.close()
    assert raised.value.details["phase"] == "connect"
    assert len(c.sleeps) == 1


# --- pooling, URLs, logging -----------------------------------------------------------------------

def test_one_pooled_client_per_base_and_key(dify_settings):
    dify_settings["worker_threads"] = 20
    close_clients()
    a = get_client("http://h.example/v1", "app-1")
    assert get_client("http://h.example/v1/", "app-1") is a
    assert get_client("http://h.example/v1", "app-2") is not a
    dify_settings["dify_api_base"] = "http://h.example/v1"
    dify_settings["dify_api_key"] = "app-1"
    assert get_client() is a
    adapter = a.session.get_adapter("http://h.example/v1")
    assert adapter._pool_maxsize >= 20
    close_clients()


@pytest.mark.parametrize("base,host", [
    ("https://api.dify.ai/v1", "https://api.dify.ai"),
    ("http://127.0.0.1:5001/v1/", "http://127.0.0.1:5001"),
    ("https://v1.example.com/v1", "https://v1.example.com"),
    ("https://example.com/dify/v1", "https://example.com/dify"),
    ("https://example.com/v1beta", "https://example.com/v1beta"),
])
def test_file_base_url_strips_only_the_trailing_v1(base, host):
    assert file_base_url(base) == host


def test_resolve_url(dify_settings):
    c = DifyClient("https://v1.example.com/v1", API_KEY)
    assert c.resolve_url("/files/tools/x.png?sign=1") == "https://v1.example.com/files/tools/x.png?sign=1"
    assert c.resolve_url("files/a.pdf") == "https://v1.example.com/files/a.pdf"
    assert c.resolve_url("https://cdn.example.com/a.png") == "https://cdn.example.com/a.png"
    c.close()


def test_requests_are_logged_with_the_key_masked(client, dify, logs):
    from common.log import is_debug, set_debug

    debug_before = is_debug()
    # The request lines are DEBUG records: made only while the `debug` setting is on.
    set_debug(True)
    try:
        secret = API_KEY
        client.chat_messages(chat_body(), stream=False)
        dify.push_error(400, "invalid_param", "bad")
        with pytest.raises(errors.DifyBadRequest):
            client.chat_messages(chat_body(), stream=False)
    finally:
        set_debug(debug_before)
    text = logs.text()
    assert "POST http://" in text and "/chat-messages" in text  # the DEBUG request line
    assert secret not in text
    assert "key=*****" in text  # a short key is hidden whole


def test_user_messages_never_carry_dify_text():
    secret = "internal detail sk-123 at /srv/app.py line 9"
    for cls in (errors.DifyAuthError, errors.DifyQuotaError, errors.DifyServerError, errors.DifyBadRequest,
                errors.DifyRateLimitError, errors.DifyTimeout, errors.DifyConnectionError, errors.DifyStreamCut,
                errors.DifyWorkflowFailed, errors.DifyModelError, errors.DifyAppUnavailable, errors.DifyNotFoundError):
        error = cls(500, "code", secret)
        for chinese in (True, False):
            text = errors.user_message(error, chinese)
            assert text and secret not in text and "code" not in text
    assert errors.user_message(ValueError(secret), False) == "Something went wrong; please try again later."


def test_a_stream_read_to_its_last_event_leaves_its_connection_for_the_next_call(client, dify):
    # The caller stops at message_end, as the bot does; the terminating chunk is read on
    # close so the kept-alive connection goes back to the pool (no new TCP/TLS handshake).
    for i in range(3):
        with client.chat_messages(chat_body(f"q{i}"), stream=True) as events:
            for event in events:
                if event["event"] == "message_end":
                    break
    assert client.chat_messages(chat_body("last"), stream=False)["answer"] == "echo: last"
    assert len(dify.requests_to("/v1/chat-messages")) == 4
    assert dify.connections_accepted == 1


def test_a_slow_tail_after_the_last_event_is_cut_off_not_waited_for(client, dify):
    dify.push_events([{"event": "message", "answer": "done"}, {"event": "message_end"}, 30,
                      {"event": "tts_message", "audio": ""}])
    started = time.monotonic()
    with client.chat_messages(chat_body(), stream=True) as events:
        for event in events:
            if event["event"] == "message_end":
                break
    # Not waited for: neither the 30 s tail nor the 5 s read timeout of the test settings.
    assert time.monotonic() - started < 3
    # That connection was closed; the next call opens a new one and works.
    assert client.chat_messages(chat_body("next"), stream=False)["answer"] == "echo: next"
    assert dify.connections_accepted == 2


def test_event_stream_can_be_closed_early(client, dify):
    dify.push_answer("x" * 200, chunk_size=1)
    stream = client.chat_messages(chat_body(), stream=True)
    assert isinstance(stream, DifyEventStream)
    first = next(iter(stream))
    stream.close()
    assert first["event"] == "message"


def test_proxy_variables_are_still_honoured(dify, monkeypatch):
    """The proxy variables are read once per client (not per call): a proxy that does not
    exist breaks the call, and NO_PROXY for the Dify host lets it through again."""
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{unused_port()}")
    through_proxy = DifyClient(dify.base_url, API_KEY, max_retries=0)
    try:
        with pytest.raises(errors.DifyError) as failure:
            through_proxy.chat_messages(chat_body(), stream=False)
        assert failure.value.kind == "connection"
    finally:
        through_proxy.close()
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = DifyClient(dify.base_url, API_KEY, max_retries=0)
    try:
        assert direct.chat_messages(chat_body("hello"), stream=False)["answer"] == "echo: hello"
    finally:
        direct.close()


def test_speech_that_trickles_ends_at_dify_answer_timeout(client, dify, dify_settings):
    # Issue 11: one byte every 0.3 s never trips the read timeout; the total deadline does.
    dify_settings["dify_answer_timeout"] = 1
    dify.tts_byte_delay = 0.3
    with pytest.raises(errors.DifyAnswerTimeout):
        client.text_to_audio("hello", "u1")
