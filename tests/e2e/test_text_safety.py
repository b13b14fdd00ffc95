"""Issue 11, defects 2 and 3: a lone surrogate in a message or an answer, and answers of any
size, through `python app.py` with the web channel and the Dify simulator."""
from __future__ import annotations

import httpx
import pytest

from tests.e2e.daemon import web_daemon
from tests.e2e.test_web_process import SSE

pytestmark = pytest.mark.slow

LONE = "\ud800"


def post_raw(base: str, user: str, message_json: str) -> httpx.Response:
    # Written by hand: the JSON escape of a lone surrogate, as a browser's JSON.stringify sends it.
    body = '{"user_id": "%s", "message": %s}' % (user, message_json)
    return httpx.post(base + "/message", content=body.encode("ascii"),
                      headers={"Content-Type": "application/json"}, timeout=10)


@pytest.fixture(scope="module", params=[True, False], ids=["streaming", "blocking"])
def web(request, tmp_path_factory):
    settings = {"dify_stream_reply": True} if request.param else {"dify_response_mode": "blocking"}
    with web_daemon(tmp_path_factory.mktemp("text"), **settings) as (daemon, server, port, base, health):
        daemon.streaming = request.param
        yield daemon, server, port, base


def test_lone_surrogate_in_a_message_keeps_the_stream_working(web):
    daemon, server, port, base = web
    stream = SSE(port, "sur-msg")
    try:
        assert stream.opened.wait(5) and stream.status == 200
        assert post_raw(base, "sur-msg", '"bad \\ud800 text"').status_code == 200
        first = stream.next()["data"]
        assert first["type"] == "TEXT" and first["content"] == "echo: bad \ufffd text"
        assert post_raw(base, "sur-msg", '"next one"').status_code == 200
        assert stream.next()["data"]["content"] == "echo: next one"
    finally:
        stream.close()


def test_lone_surrogate_in_an_answer_keeps_the_stream_working(web):
    daemon, server, port, base = web
    server.push_answer(f"before {LONE} after", chunk_size=5)
    stream = SSE(port, "sur-ans")
    try:
        assert stream.opened.wait(5) and stream.status == 200
        assert post_raw(base, "sur-ans", '"hi"').status_code == 200
        assert stream.next()["data"]["content"] == "before \ufffd after"
        assert post_raw(base, "sur-ans", '"again"').status_code == 200
        last = stream.next()
        assert last["data"]["content"] == "echo: again"
    finally:
        stream.close()
    # A reconnecting page gets what came after (the bad event was not replayed, nor lost).
    assert post_raw(base, "sur-ans", '"third"').status_code == 200
    again = SSE(port, "sur-ans", last_id=last["id"])
    try:
        assert again.next()["data"]["content"] == "echo: third"
    finally:
        again.close()


def test_a_10_mb_answer_is_cut_and_the_user_told(web):
    daemon, server, port, base = web
    server.push_answer("x" * (10 * 1024 * 1024), chunk_size=256 * 1024)
    stream = SSE(port, "huge")
    try:
        assert stream.opened.wait(5)
        assert post_raw(base, "huge", '"a long one please"').status_code == 200
        got = stream.next(timeout=60)["data"]
        if daemon.streaming:  # read up to answer_max_chars, cut there
            assert got["type"] == "TEXT"
            assert len(got["content"]) <= 65536
            assert got["content"].startswith("x" * 60000)
            assert got["content"].endswith("[The answer was too long; the rest was left out.]")
        else:  # blocking: one 10 MB JSON body, refused before it is all read
            assert got["content"] == "Dify's answer was too large to show; please ask for a shorter one."
        assert post_raw(base, "huge", '"and now?"').status_code == 200
        assert stream.next()["data"]["content"] == "echo: and now?"
    finally:
        stream.close()


def test_one_huge_event_or_body_is_refused_clearly(web):
    daemon, server, port, base = web
    if daemon.streaming:  # one SSE event of 3 MB
        server.push_events([{"event": "message", "answer": "y" * (3 * 1024 * 1024)}, {"event": "message_end"}])
    else:  # one JSON body of 3 MB
        server.push_answer("y" * (3 * 1024 * 1024))
    stream = SSE(port, "huge-event")
    try:
        assert stream.opened.wait(5)
        assert post_raw(base, "huge-event", '"one block"').status_code == 200
        got = stream.next(timeout=60)["data"]
        assert got["content"] == "Dify's answer was too large to show; please ask for a shorter one."
    finally:
        stream.close()


def test_lone_surrogate_from_wework_is_answered_and_later_messages_too(tmp_path):
    from sandbox.dify_server import DifyServer
    from tests.e2e.test_wework_process import ALICE, ALICE_NAME, PRIVATE, start, wait_ready

    with DifyServer(api_key="app-test", mode="chat") as server:
        daemon, ctl = start(tmp_path, server)
        try:
            wait_ready(daemon)
            ctl.inject(ctl.text(PRIVATE, ALICE, ALICE_NAME + LONE, f"bad {LONE} text"))
            ctl.wait_for_call("send_text", lambda c: c["data"]["content"] == "echo: bad \ufffd text")
            ctl.inject(ctl.text(PRIVATE, ALICE, ALICE_NAME, "fine"))
            ctl.wait_for_call("send_text", lambda c: c["data"]["content"] == "echo: fine")
        finally:
            daemon.kill()


def test_the_stream_writer_survives_text_that_reached_it_unsanitized(settings):
    # show_partial takes a bot's text as it is: the writer itself must not die on it.
    from bridge.context import Context, ContextType
    from tests.e2e.test_web_process import running_channel

    with running_channel(settings) as channel:
        context = Context(ContextType.TEXT, "q")
        context["receiver"] = "writer"
        stream = SSE(channel.server.port, "writer")
        try:
            assert stream.opened.wait(5)
            channel.show_partial(context, "s1", f"growing {LONE}")
            assert stream.partials.get(timeout=10)["data"]["delta"] == "growing \ufffd"
            channel.push("writer", "TEXT", "after it")
            assert stream.next()["data"]["content"] == "after it"
        finally:
            stream.close()


def test_a_wework_contact_name_with_a_lone_surrogate_does_not_stop_start_up(tmp_path):
    import json

    from sandbox.dify_server import DifyServer
    from tests.e2e.test_wework_process import ALICE, ALICE_NAME, PRIVATE, SCENARIO, start, wait_ready

    contacts = [{"user_id": ALICE, "username": f"悠{LONE}悠"}]
    with DifyServer(api_key="app-test", mode="chat") as server:
        daemon, ctl = start(tmp_path, server, scenario={**SCENARIO, "external_contacts": contacts})
        try:
            wait_ready(daemon)
            written = json.loads((tmp_path / "tmp" / "wework_contacts.json").read_text(encoding="utf-8"))
            assert written == {"contact_list": [{"user_id": ALICE, "username": "悠\ufffd悠"}]}
            ctl.inject(ctl.text(PRIVATE, ALICE, ALICE_NAME, "你好"))
            ctl.wait_for_call("send_text", lambda c: c["data"]["content"] == "echo: 你好")
        finally:
            daemon.kill()
