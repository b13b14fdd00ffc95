"""The Dify simulator (sandbox/dify_server.py) against a real HTTP client, as the bot will use it."""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from sandbox.dify_server import DifyServer

KEY = "app-test"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture
def server():
    with DifyServer(api_key=KEY, mode="chat") as s:
        yield s


def post(server, path, body=None, *, headers=AUTH, timeout=5, **kwargs):
    return requests.post(server.base_url + path, json=body, headers=headers, timeout=timeout, **kwargs)


def chat_body(query="hello", user="alice", **more):
    return {"query": query, "user": user, "inputs": {}, **more}


def parse_sse(raw: bytes) -> list:
    """Blocks of an SSE body: a dict per `data:` block, "ping" per keep-alive block."""
    blocks = []
    for block in raw.decode("utf-8").split("\n\n"):
        if not block.strip():
            continue
        data = [line[len("data: "):] for line in block.split("\n") if line.startswith("data: ")]
        if data:
            blocks.append(json.loads("\n".join(data)))
        else:
            assert block.strip() == "event: ping", block
            blocks.append("ping")
    return blocks


def stream(server, path, body):
    r = post(server, path, {**body, "response_mode": "streaming"}, stream=True)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    return parse_sse(r.content)


def names(blocks):
    return [b if b == "ping" else b["event"] for b in blocks]


# -- transport and auth --------------------------------------------------------------------------------

def test_welcome_needs_no_auth(server):
    r = requests.get(server.base_url + "/", timeout=5)
    assert r.status_code == 200
    assert r.json()["welcome"] == "Dify OpenAPI"
    assert server.base_url == server.host_url + "/v1"


@pytest.mark.parametrize("header, message", [
    (None, "Authorization header must be provided and start with 'Bearer'"),
    ("Bearer", "Authorization header must be provided and start with 'Bearer'"),
    ("Basic app-test", "Authorization scheme must be 'Bearer'"),
    ("Bearer app-wrong", "Access token is invalid"),
])
def test_auth_errors(server, header, message):
    headers = {} if header is None else {"Authorization": header}
    r = post(server, "/chat-messages", chat_body(), headers=headers)
    assert r.status_code == 401
    assert r.json() == {"code": "unauthorized", "message": message, "status": 401}
    assert not server.conversations


def test_bearer_scheme_is_case_insensitive(server):
    r = post(server, "/chat-messages", chat_body(), headers={"Authorization": f"bearer  {KEY}"})
    assert r.status_code == 200


def test_unknown_path_and_bad_json(server):
    r = post(server, "/nope", {})
    assert r.status_code == 404 and r.json()["code"] == "not_found"
    r = requests.post(server.base_url + "/chat-messages", data=b"{not json", timeout=5,
                      headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 400
    assert r.json() == {"code": "bad_request", "message": "Invalid JSON payload received or JSON payload is empty.",
                        "status": 400}


def test_requests_are_recorded(server):
    post(server, "/chat-messages", chat_body("hi"))
    [req] = server.requests_to("/v1/chat-messages")
    assert req["method"] == "POST"
    assert req["json"]["query"] == "hi"
    assert req["headers"]["authorization"] == f"Bearer {KEY}"
    requests.get(server.base_url + "/conversations?user=alice&limit=5", headers=AUTH, timeout=5)
    assert server.requests_to("/v1/conversations")[0]["query"] == {"user": "alice", "limit": "5"}


# -- chat-messages ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("body, message", [
    (chat_body(query=""), "query is required"),
    ({"query": "x", "inputs": {}}, "Arg user must be provided."),
])
def test_chat_validation(server, body, message):
    r = post(server, "/chat-messages", body)
    assert r.status_code == 400
    assert r.json()["code"] == "invalid_param" and r.json()["message"] == message


@pytest.mark.parametrize("mode", ["chat", "advanced-chat"])
def test_chat_blocking(server, mode):
    server.mode = mode
    r = post(server, "/chat-messages", chat_body("hello"))
    assert r.status_code == 200
    body = r.json()
    assert body["answer"] == "echo: hello"
    assert body["event"] == "message" and body["mode"] == mode
    assert body["id"] == body["message_id"] and body["task_id"]
    assert body["metadata"]["usage"]["total_tokens"] > 0
    assert server.conversations[body["conversation_id"]] == {
        "user": "alice", "inputs": {}, "turns": [("hello", "echo: hello")]}


def test_conversation_keeps_first_inputs_and_is_per_user(server):
    first = post(server, "/chat-messages", chat_body("one", inputs={"room": "a"})).json()
    cid = first["conversation_id"]
    post(server, "/chat-messages", chat_body("two", conversation_id=cid, inputs={"room": "b"}))
    assert server.conversations[cid]["inputs"] == {"room": "a"}
    assert server.conversations[cid]["turns"] == [("one", "echo: one"), ("two", "echo: two")]
    for user, conversation_id in (("bob", cid), ("alice", "00000000-0000-0000-0000-000000000000")):
        r = post(server, "/chat-messages", chat_body("x", user=user, conversation_id=conversation_id))
        assert r.status_code == 404
        assert r.json() == {"code": "not_found", "message": "Conversation Not Exists.", "status": 404}


def test_forget_conversation_and_scripts_survive_a_404(server):
    cid = post(server, "/chat-messages", chat_body("one")).json()["conversation_id"]
    server.forget_conversation(cid)
    server.push_answer("fresh")
    assert post(server, "/chat-messages", chat_body("two", conversation_id=cid)).status_code == 404
    r = post(server, "/chat-messages", chat_body("two"))  # the client's retry without the stale id
    assert r.json()["answer"] == "fresh" and r.json()["conversation_id"] != cid


def test_chat_streaming_sequence(server):
    blocks = stream(server, "/chat-messages", chat_body("hello"))
    assert names(blocks) == ["message"] * 3 + ["message_end"]
    assert "".join(b["answer"] for b in blocks[:-1]) == "echo: hello"
    assert [b["answer"] for b in blocks[:2]] == ["echo", ": he"]  # chunks of 4 characters
    cid = blocks[0]["conversation_id"]
    for b in blocks:
        assert b["conversation_id"] == cid and b["task_id"] and b["created_at"] and b["id"] == b["message_id"]
    assert "usage" in blocks[-1]["metadata"]
    assert server.conversations[cid]["turns"] == [("hello", "echo: hello")]


def test_agent_streaming_sequence_and_blocking_refused(server):
    server.mode = "agent-chat"
    r = post(server, "/chat-messages", chat_body())
    assert r.status_code == 400
    assert r.json() == {"code": "invalid_param", "message": "Agent Chat App does not support blocking mode", "status": 400}
    blocks = stream(server, "/chat-messages", chat_body("hello"))
    assert names(blocks) == ["ping", "agent_thought"] + ["agent_message"] * 3 + ["message_end"]
    assert blocks[1]["position"] == 1 and blocks[1]["thought"] == ""
    assert "".join(b["answer"] for b in blocks if b != "ping" and b["event"] == "agent_message") == "echo: hello"


def test_chatflow_streaming_sequence(server):
    server.mode = "advanced-chat"
    blocks = stream(server, "/chat-messages", chat_body("hello"))
    assert names(blocks) == ["ping", "workflow_started", "node_started"] + ["message"] * 3 + [
        "node_finished", "workflow_finished", "message_end"]
    assert blocks[-2]["data"]["status"] == "succeeded"
    assert all(b["conversation_id"] and b["task_id"] for b in blocks[1:])


def test_chatflow_failed_workflow(server):
    server.mode = "advanced-chat"
    server.push_workflow({}, status="failed", error="boom")
    r = post(server, "/chat-messages", chat_body())
    assert r.status_code == 400 and r.json()["message"] == "Run failed: boom"
    server.push_workflow({}, status="failed", error="boom")
    blocks = stream(server, "/chat-messages", chat_body())
    assert names(blocks)[-3:] == ["node_finished", "workflow_finished", "error"]
    assert blocks[-2]["data"]["status"] == "failed"
    assert blocks[-1]["code"] == "invalid_param" and blocks[-1]["status"] == 400 and "task_id" not in blocks[-1]


def test_wrong_endpoint_for_mode(server):
    server.mode = "workflow"
    assert post(server, "/chat-messages", chat_body()).json()["code"] == "not_chat_app"
    assert post(server, "/completion-messages", {"inputs": {}, "user": "u"}).json()["code"] == "app_unavailable"
    server.mode = "chat"
    r = post(server, "/workflows/run", {"inputs": {}, "user": "u"})
    assert r.status_code == 400 and r.json()["code"] == "not_workflow_app"


def test_sandbox_answers(server):
    server.answers_for_sandbox = True
    first = post(server, "/chat-messages", chat_body("你好")).json()
    second = post(server, "/chat-messages", chat_body("again", conversation_id=first["conversation_id"])).json()
    assert "你好" in first["answer"] and "sandbox" in first["answer"] and "沙盒" in first["answer"]
    assert "1" in first["answer"] and "2" in second["answer"]


# -- scripting -------------------------------------------------------------------------------------------

def test_push_answer_fifo_then_default(server):
    server.push_answer("first")
    server.push_answer("second", chunk_size=100)
    assert post(server, "/chat-messages", chat_body()).json()["answer"] == "first"
    blocks = stream(server, "/chat-messages", chat_body())
    assert [b["answer"] for b in blocks[:-1]] == ["second"]
    assert post(server, "/chat-messages", chat_body("q")).json()["answer"] == "echo: q"


def test_push_answer_latency(server):
    server.push_answer("slow", latency=0.3)
    started = time.monotonic()
    assert post(server, "/chat-messages", chat_body()).json()["answer"] == "slow"
    assert time.monotonic() - started >= 0.3


def test_push_events_fills_envelope(server):
    server.push_events([
        "ping",
        {"event": "message", "answer": "Hel"},
        {"event": "message_file", "id": "f1", "type": "image", "belongs_to": "assistant", "url": "/files/tools/x.png"},
        {"event": "message", "answer": "lo"},
        {"event": "message_end", "metadata": {"usage": {}}},
    ], delay=0.01)
    blocks = stream(server, "/chat-messages", chat_body())
    assert names(blocks) == ["ping", "message", "message_file", "message", "message_end"]
    msg = blocks[1]
    assert msg["conversation_id"] and msg["message_id"] and msg["task_id"] and msg["created_at"]
    assert msg["id"] == msg["message_id"] and blocks[2]["id"] == "f1"
    assert server.conversations[msg["conversation_id"]]["turns"] == [("hello", "Hello")]


def test_push_events_for_a_blocking_request(server):
    server.push_events([{"event": "message", "answer": "x"}])
    r = post(server, "/chat-messages", chat_body())
    assert r.status_code == 400
    assert r.json()["message"] == "sandbox: events scripted for a streaming request"


def test_push_events_pause_and_kept_alive_streams(server):
    server.push_events([{"event": "message", "answer": "a"}, 0.3, {"event": "message_end"}])
    session = requests.Session()
    started = time.monotonic()
    r = session.post(server.base_url + "/chat-messages", json={**chat_body(), "response_mode": "streaming"},
                     headers=AUTH, stream=True, timeout=5)
    assert r.headers.get("Connection", "").lower() != "close"
    blocks = parse_sse(r.content)
    assert names(blocks) == ["message", "message_end"]
    assert time.monotonic() - started >= 0.3
    # A finished stream leaves the connection open: the next call uses it.
    assert session.post(server.base_url + "/chat-messages", json=chat_body(), headers=AUTH, timeout=5).status_code == 200
    assert server.connections_accepted == 1
    for bad in (-1, True, "1"):
        with pytest.raises(ValueError):
            server.push_events([{"event": "message", "answer": "a"}, bad])


def test_push_events_cut_breaks_the_stream(server):
    server.push_events([{"event": "message", "answer": "partial"}, "CUT", {"event": "message_end"}])
    r = post(server, "/chat-messages", {**chat_body(), "response_mode": "streaming"}, stream=True)
    lines = []
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        for line in r.iter_lines():
            lines.append(line)
    data = [json.loads(line[6:]) for line in lines if line.startswith(b"data: ")]
    assert [d["event"] for d in data] == ["message"]
    assert data[0]["answer"] == "partial"


def test_push_error(server):
    server.push_error(429, "too_many_requests", "Too many requests.")
    r = post(server, "/chat-messages", {**chat_body(), "response_mode": "streaming"})
    assert r.status_code == 429
    assert r.json() == {"code": "too_many_requests", "message": "Too many requests.", "status": 429}


def test_push_hang_times_out_and_stop_does_not_wait(server):
    server.push_hang(30)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(server.base_url + "/chat-messages", json=chat_body(), headers=AUTH, timeout=0.2)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.5


def test_push_disconnect(server):
    server.push_disconnect()
    with pytest.raises(requests.exceptions.ConnectionError):
        post(server, "/chat-messages", chat_body())
    assert post(server, "/chat-messages", chat_body("ok")).json()["answer"] == "echo: ok"


def test_stop_task(server):
    r = post(server, "/chat-messages/some-task/stop", {"user": "alice"})
    assert r.status_code == 200 and r.json() == {"result": "success"}
    assert server.stopped_tasks == ["some-task"]


# -- completion and workflow -----------------------------------------------------------------------------

def test_completion(server):
    server.mode = "completion"
    r = post(server, "/completion-messages", {"inputs": {"query": "hi"}, "user": "u"})
    assert r.json()["answer"] == "echo: hi" and r.json()["mode"] == "completion"
    assert "conversation_id" not in r.json()
    blocks = stream(server, "/completion-messages", {"inputs": {}, "query": "abc", "user": "u"})
    assert names(blocks) == ["message"] * 3 + ["message_end"]
    assert blocks[0]["answer"] == "echo" and blocks[0]["task_id"]


def test_workflow_blocking_and_streaming(server):
    server.mode = "workflow"
    r = post(server, "/workflows/run", {"inputs": {"query": "hi"}, "user": "u"})
    body = r.json()
    assert body["data"]["outputs"] == {"text": "echo: hi"} and body["data"]["status"] == "succeeded"
    assert body["workflow_run_id"] == body["data"]["id"] and body["task_id"]
    blocks = stream(server, "/workflows/run", {"inputs": {"query": "hello"}, "user": "u"})
    assert names(blocks) == ["ping", "workflow_started", "node_started"] + ["text_chunk"] * 3 + [
        "node_finished", "workflow_finished"]
    assert "".join(b["data"]["text"] for b in blocks if b != "ping" and b["event"] == "text_chunk") == "echo: hello"
    assert blocks[-1]["data"]["outputs"] == {"text": "echo: hello"}


def test_workflow_failed(server):
    server.mode = "workflow"
    server.push_workflow({}, status="failed", error="node broke")
    data = post(server, "/workflows/run", {"inputs": {}, "user": "u"}).json()["data"]
    assert data["status"] == "failed" and data["error"] == "node broke"
    server.push_workflow({}, status="failed", error="node broke")
    blocks = stream(server, "/workflows/run", {"inputs": {}, "user": "u"})
    assert names(blocks)[-1] == "workflow_finished" and "error" not in names(blocks)
    assert blocks[-1]["data"]["status"] == "failed"


def test_push_workflow_outputs(server):
    server.mode = "workflow"
    server.push_workflow({"text": "done", "extra": 1})
    assert post(server, "/workflows/run", {"inputs": {}, "user": "u"}).json()["data"]["outputs"] == {"text": "done", "extra": 1}


# -- files and audio -------------------------------------------------------------------------------------

def upload(server, name, content, ctype="image/png", user="alice"):
    return requests.post(server.base_url + "/files/upload", files={"file": (name, content, ctype)},
                         data={"user": user}, headers=AUTH, timeout=10)


def test_upload_and_use_in_chat(server):
    content = bytes(range(256)) * 4 + b"\r\n--boundary-like\r\n"
    r = upload(server, "photo.PNG", content)
    assert r.status_code == 201
    body = r.json()
    assert set(body) >= {"id", "name", "size", "extension", "mime_type", "created_by", "created_at"}
    assert server.uploads[body["id"]] == {"name": "photo.PNG", "size": len(content), "mime_type": "image/png",
                                          "user": "alice", "content": content}
    image = {"type": "image", "transfer_method": "local_file", "upload_file_id": body["id"]}
    assert post(server, "/chat-messages", chat_body(files=[image])).status_code == 200
    assert server.messages[-1]["files"] == [image]
    r = post(server, "/chat-messages", chat_body(user="bob", files=[image]))
    assert r.status_code == 400 and r.json()["code"] == "invalid_param"
    r = post(server, "/chat-messages", chat_body(files=[None, "error text"]))  # DoW's upload-failure bug
    assert r.status_code == 400


def test_upload_errors(server):
    r = requests.post(server.base_url + "/files/upload", data={"user": "alice"}, headers=AUTH, timeout=5)
    assert r.status_code == 400 and r.json()["code"] == "no_file_uploaded"
    r = upload(server, "notes.txt", b"text", "text/plain")
    assert r.status_code == 415 and r.json()["code"] == "unsupported_file_type"
    r = upload(server, "big.png", b"\0" * (10 * 1024 * 1024 + 1))
    assert r.status_code == 413 and r.json()["code"] == "file_too_large"


def test_audio_to_text(server):
    server.stt_text = "transcribed text"
    files = {"file": ("a.mp3", b"ID3...", "audio/mp3")}
    r = requests.post(server.base_url + "/audio-to-text", files=files, headers=AUTH, timeout=5)  # no user, as DoW
    assert r.status_code == 200 and r.json() == {"text": "transcribed text"}
    r = requests.post(server.base_url + "/audio-to-text", files={"file": ("a.ogg", b"x", "audio/ogg")},
                      headers=AUTH, timeout=5)
    assert r.status_code == 415 and r.json()["code"] == "unsupported_audio_type"


def test_text_to_audio(server):
    server.tts_audio = b"ID3 fake mp3"
    r = post(server, "/text-to-audio", {"text": "hello"})
    assert r.status_code == 200 and r.headers["Content-Type"] == "audio/mpeg" and r.content == b"ID3 fake mp3"
    r = post(server, "/text-to-audio", {"user": "u"})
    assert r.status_code == 400 and r.json()["message"] == "Text is required"


def test_relative_files_are_served_at_the_host_root(server):
    server.add_file("/files/tools/x.png", b"\x89PNG data", "image/png")
    r = requests.get(server.host_url + "/files/tools/x.png?timestamp=1&nonce=2&sign=3", timeout=5)
    assert r.status_code == 200 and r.content == b"\x89PNG data" and r.headers["Content-Type"] == "image/png"
    assert requests.get(server.host_url + "/files/tools/missing.png", timeout=5).status_code == 404


# -- conversations and app info --------------------------------------------------------------------------

def test_conversations_list_and_delete(server):
    ids = [post(server, "/chat-messages", chat_body(f"q{i}")).json()["conversation_id"] for i in range(2)]
    post(server, "/chat-messages", chat_body(user="bob"))
    r = requests.get(server.base_url + "/conversations", params={"user": "alice"}, headers=AUTH, timeout=5)
    assert sorted(c["id"] for c in r.json()["data"]) == sorted(ids)
    r = requests.delete(f"{server.base_url}/conversations/{ids[0]}", json={"user": "bob"}, headers=AUTH, timeout=5)
    assert r.status_code == 404
    r = requests.delete(f"{server.base_url}/conversations/{ids[0]}", json={"user": "alice"}, headers=AUTH, timeout=5)
    assert r.status_code == 204 and ids[0] not in server.conversations
    assert post(server, "/chat-messages", chat_body(conversation_id=ids[0])).status_code == 404


def test_parameters_and_info(server):
    for path in ("/parameters", "/info"):
        r = requests.get(server.base_url + path, headers=AUTH, timeout=5)
        assert r.status_code == 200, path
    assert "user_input_form" in requests.get(server.base_url + "/parameters", headers=AUTH, timeout=5).json()


# -- concurrency -----------------------------------------------------------------------------------------

def test_fifty_concurrent_streams(server):
    server.mode = "agent-chat"
    barrier = threading.Barrier(50, timeout=5)

    def one(i):
        barrier.wait()
        blocks = stream(server, "/chat-messages", chat_body(f"question {i}", user=f"user{i}"))
        return "".join(b["answer"] for b in blocks if b != "ping" and b["event"] == "agent_message")

    with ThreadPoolExecutor(50) as pool:
        answers = list(pool.map(one, range(50)))
    assert answers == [f"echo: question {i}" for i in range(50)]
    assert len(server.conversations) == 50


def test_chaos_errors_and_latency_are_repeatable_and_scripts_win(server):
    def outcomes():
        server.set_chaos(latency=0.05, error_rate=0.3, seed=7)
        return [post(server, "/chat-messages", chat_body(f"q{i}")).status_code for i in range(40)]

    first = outcomes()
    assert first == outcomes()  # the same seed, the same sequence
    assert 0 < first.count(500) < 40 and set(first) == {200, 500}
    server.push_answer("scripted")  # a scripted answer is not subject to chaos
    server.set_chaos(error_rate=1.0, seed=1)
    assert post(server, "/chat-messages", chat_body()).json()["answer"] == "scripted"
    failed = post(server, "/chat-messages", chat_body())
    assert failed.status_code == 500 and failed.json()["code"] == "internal_server_error"
    server.set_chaos()
    assert post(server, "/chat-messages", chat_body("back")).json()["answer"] == "echo: back"
    with pytest.raises(ValueError):
        server.set_chaos(error_rate=2)


def test_push_events_raw_bytes_are_sent_as_they_are(server):
    server.push_events([b"data: {not json\n\n", b"\xff\xfe garbage\n\n", {"event": "message_end"}])
    r = post(server, "/chat-messages", {**chat_body(), "response_mode": "streaming"})
    assert r.content.startswith(b"data: {not json\n\n\xff\xfe garbage\n\ndata: ")
    with pytest.raises(ValueError):
        server.push_events(["not an event"])
