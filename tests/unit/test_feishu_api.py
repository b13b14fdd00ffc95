"""channel/feishu/api.py against the Feishu simulator: the tenant token is fetched once, renewed
before it expires and when Feishu refuses it, one fetch at a time; errors carry Feishu's code."""
from __future__ import annotations

import threading

import pytest

from channel.feishu.api import FeishuApi, FeishuApiError
from tests.fakes.feishu import FeishuSimulator


@pytest.fixture
def sim():
    with FeishuSimulator("cli_a", "secret") as simulator:
        yield simulator


def fetched(sim) -> int:
    return len([c for c in sim.calls("token") if c.code == 0])


def test_one_token_serves_many_calls_and_threads_fetch_it_once(sim):
    api = FeishuApi(sim.base_url, "cli_a", "secret")
    start = threading.Barrier(8)

    def call() -> None:
        start.wait()
        api.call("GET", "/open-apis/bot/v3/info")

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    api.call("GET", "/open-apis/bot/v3/info")
    assert fetched(sim) == 1 and len(sim.calls("bot_info")) == 9


def test_a_token_close_to_its_expiry_is_replaced(sim):
    sim.token_ttl = 300  # within the renewal margin from the start
    api = FeishuApi(sim.base_url, "cli_a", "secret")
    api.call("GET", "/open-apis/bot/v3/info")
    api.call("GET", "/open-apis/bot/v3/info")
    assert fetched(sim) == 2


def test_a_refused_token_is_replaced_once_and_the_call_retried(sim):
    api = FeishuApi(sim.base_url, "cli_a", "secret")
    api.call("GET", "/open-apis/bot/v3/info")
    sim.revoke_tokens()
    assert api.call("GET", "/open-apis/bot/v3/info")["bot"]["open_id"] == sim.bot_open_id
    assert fetched(sim) == 2
    sim.fail_next("bot_info", 99991663, times=2)  # refused again after the renewal: the error surfaces
    with pytest.raises(FeishuApiError) as refused:
        api.call("GET", "/open-apis/bot/v3/info")
    assert refused.value.code == 99991663 and fetched(sim) == 3


def test_errors_carry_the_code_and_downloads_are_capped(sim):
    api = FeishuApi(sim.base_url, "cli_a", "secret")
    sim.fail_next("create", 230002, "Bot is not in the chat")
    with pytest.raises(FeishuApiError) as refused:
        api.call("POST", "/open-apis/im/v1/messages", {"receive_id": "oc_x", "msg_type": "text", "content": "{}"},
                 params={"receive_id_type": "chat_id"})
    assert refused.value.code == 230002 and "not in the chat" in str(refused.value)
    sim.add_resource("om_1", "file_1", b"x" * 5000)
    path = "/open-apis/im/v1/messages/om_1/resources/file_1"
    assert api.download(path, {"type": "file"}, 5000) == b"x" * 5000
    with pytest.raises(FeishuApiError, match="larger than"):
        api.download(path, {"type": "file"}, 4999)
    with pytest.raises(FeishuApiError) as missing:
        api.download("/open-apis/im/v1/messages/om_1/resources/nothing", {"type": "file"}, 5000)
    assert missing.value.code == 234003
    with pytest.raises(FeishuApiError) as wrong:
        FeishuApi(sim.base_url, "cli_a", "not-the-secret").token()
    assert wrong.value.code == 10014
