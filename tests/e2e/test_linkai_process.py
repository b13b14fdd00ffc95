"""`python app.py` with `use_linkai` against the fake LinkAI server (tests/fakes/linkai_server.py):
settings pushed and applied (a bad value refused), messages pushed to a session, the channel's
status reported, a dropped connection opened again; and a LinkAI that is down, silent or
refuses the key never keeps the daemon from answering."""
from __future__ import annotations

from urllib.parse import quote

import httpx
import pytest

from tests.e2e.daemon import Daemon, free_port, wait_healthy, wait_until, write_config
from tests.fakes.linkai_server import DEFAULT_KEY, LinkAIServer

pytestmark = pytest.mark.slow


@pytest.fixture
def server():
    with LinkAIServer() as s:
        yield s


def linkai_settings(port: int, key: str = DEFAULT_KEY) -> dict:
    return {"use_linkai": True, "linkai_api_key": key, "linkai_client_host": "127.0.0.1", "linkai_client_port": port}


def terminal(tmp_path, port: int, **settings) -> Daemon:
    config = write_config(tmp_path, **{**linkai_settings(port), **settings})
    return Daemon(tmp_path, "--cmd", "--config", config)


def wait_stdout(daemon: Daemon, text: str) -> None:
    wait_until(lambda: text in "".join(daemon.stdout), what=f"{text!r} on stdout; so far {''.join(daemon.stdout)!r}")


def finish(daemon: Daemon) -> None:
    daemon.proc.stdin.close()  # end of input: the terminal channel answers what is left and exits
    assert daemon.wait(20) == 0, daemon.stderr()


def test_login_reports_and_pushed_settings_apply(tmp_path, server):
    daemon = terminal(tmp_path, server.port)
    try:
        status = server.wait_for("CHANNEL_STATUS")[0]["data"]
        assert (status["channelType"], status["status"]) == ("terminal", "connected")
        login = server.messages("LOGIN")[0]["data"]
        assert (login["apiKey"], login["clientType"]) == (DEFAULT_KEY, "terminal")
        reported = server.wait_for("LOCAL_CONFIG")[0]["data"]["config"]
        assert reported["single_chat_reply_prefix"] == "" and reported["speech_recognition"] == "N"

        server.push_config({"enabled": "Y", "single_chat_reply_prefix": "[LK] ", "admin_password": "linkai-pw-1"})
        daemon.wait_for_log("pushed settings applied: single_chat_reply_prefix, admin_password")
        daemon.ask("hello")
        daemon.wait_for("[LK] echo: hello")
        # godcmd takes the pushed password (not its temporary one, which would say 请尽快设置口令).
        daemon.ask("#auth linkai-pw-1")
        daemon.wait_for("认证成功")

        server.push_config({"enabled": "Y", "single_chat_reply_prefix": 5})
        daemon.wait_for_log("pushed value refused, single_chat_reply_prefix keeps its value: "
                            "setting 'single_chat_reply_prefix' from LinkAI must be a string, got int 5")
        daemon.ask("again")
        daemon.wait_for("[LK] echo: again")

        # Code paths and keys are not the console's to set: the next message is answered as before.
        server.push_config({"enabled": "Y", "bot_type": "os:abort", "open_ai_api_key": "sk-PUSHEDSECRET"})
        daemon.wait_for_log("pushed value refused, open_ai_api_key keeps its value")
        daemon.ask("still")
        daemon.wait_for("[LK] echo: still")

        # A push the console has not enabled changes nothing.
        server.push_config({"enabled": "N", "single_chat_reply_prefix": "[OFF] "})
        daemon.wait_for_log("pushed settings not applied: the console's remote config is not enabled")
        daemon.ask("third")
        daemon.wait_for("[LK] echo: third")

        server.push_message("User", "notice from linkai")
        daemon.wait_for("notice from linkai")
        finish(daemon)
    finally:
        daemon.kill()
    assert "Traceback" not in daemon.stderr()
    run_log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert "PUSHEDSECRET" not in daemon.stderr() + run_log
    assert "[LinkAI] client stopped" in run_log  # the daemon's stop closed the LinkAI connection


def test_dropped_connection_is_opened_again(tmp_path, server):
    daemon = terminal(tmp_path, server.port)
    try:
        server.wait_for("CHANNEL_STATUS")
        server.drop()
        # The second login names the client id LinkAI gave at the first one.
        second = server.wait_for("LOGIN", count=2)[1]["data"]
        assert second.get("clientId") == server.client_id
        server.wait_for("CHANNEL_STATUS", count=2)
        server.push_message("User", "after the reconnect")
        daemon.wait_for("after the reconnect")
        daemon.wait_for_log("[LinkAI] the server closed the connection")
        finish(daemon)
    finally:
        daemon.kill()


def test_pushed_message_reaches_the_named_web_session(tmp_path, server):
    port = free_port()
    config = write_config(tmp_path, channel_type="web", web_port=port, **linkai_settings(server.port))
    daemon = Daemon(tmp_path, "--config", config)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base, daemon=daemon)
        status = server.wait_for("CHANNEL_STATUS")[0]["data"]
        assert (status["channelType"], status["status"]) == ("web", "connected")
        # Broken pushes are skipped; the connection stays and the next push is delivered.
        server.send_raw(b"this is not json\r\n")
        server.send_raw(b'{"type": "PUSH", "data": null}\r\n')
        server.send_raw(b'["a", "list"]\r\n')
        server.push_message("", "to nobody")
        server.push_message("bob", {"not": "text"})
        server.push_message("alice", "for alice only")

        def history(user: str) -> list:
            r = httpx.get(base + "/history/" + quote(user, safe=""), timeout=5)
            assert r.status_code == 200
            return [(m["role"], m["content"]) for m in r.json()["messages"]]

        wait_until(lambda: ("bot", "for alice only") in history("alice"), what="the push in alice's history")
        assert history("bob") == []
        assert server.logins_answered == 1  # no reconnect was needed
        daemon.wait_for_log("a message that is not JSON was skipped")
        daemon.wait_for_log("a pushed message without a session id was skipped")
        daemon.wait_for_log("a pushed message for bob without text was skipped")
        # The web channel still answers its users.
        r = httpx.post(base + "/message", json={"user_id": "carol", "message": "hi"}, timeout=5)
        assert r.status_code == 200
        wait_until(lambda: ("bot", "echo: hi") in history("carol"), what="carol's answer")
    finally:
        daemon.kill()


def test_start_up_does_not_wait_for_a_silent_linkai(tmp_path, server):
    """LinkAI takes the connection and never answers the login: the daemon answers meanwhile."""
    server.answer_logins = False
    daemon = terminal(tmp_path, server.port)
    try:
        server.wait_for("LOGIN")  # the client is in the middle of logging in ...
        daemon.ask("hi")
        daemon.wait_for("echo: hi")  # ... and the channel answers all the same
        assert server.logins_answered == 0
        finish(daemon)  # the client's thread does not hold the exit either
    finally:
        daemon.kill()


def test_linkai_down_or_refusing_the_key_leaves_the_daemon_answering(tmp_path):
    closed_port = free_port()  # nothing listens there
    (tmp_path / "down").mkdir()
    (tmp_path / "refused").mkdir()
    down = terminal(tmp_path / "down", closed_port)
    with LinkAIServer(api_keys={"another-key"}) as refusing:
        refused = terminal(tmp_path / "refused", refusing.port)
        try:
            down.wait_for_log(f"[LinkAI] cannot reach 127.0.0.1:{closed_port}")
            down.wait_for_log("[LinkAI] connecting again in")
            down.ask("hi")
            down.wait_for("echo: hi")
            finish(down)

            refused.wait_for_log("[LinkAI] login refused (code 401: invalid api key): check linkai_api_key")
            refused.ask("hi")
            refused.wait_for("echo: hi")
            finish(refused)
            assert len(refusing.messages("LOGIN")) == 1
            with open(tmp_path / "refused" / "run.log", encoding="utf-8") as f:
                assert "[LinkAI] connecting again" not in f.read()
        finally:
            down.kill()
            refused.kill()
