"""Every OpenAI-compatible vendor of the original, through `python app.py --cmd` (a real
process) against the OpenAI-compatible simulator playing that vendor (its path, its
refused fields, its error shapes).

Each config.json is in the original's shape: its key names and its model names (the
DeepSeek one uses open_ai_api_key / open_ai_api_base, as the original's DeepSeek bot did;
Moonshot and ModelScope give the full chat-completions URL, as the original's settings did).
One process per vendor answers: a streamed answer, a follow-up (the session is kept), a
JSON (not streamed) answer, then a wrong key, an unknown model and a used-up balance,
each with an answer that names what to fix.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import pytest

from tests.e2e.daemon import Daemon, write_config
from tests.fakes.openai_server import OpenAIServer

pytestmark = pytest.mark.slow

KEY = "sk-vendor-test-key-0123456789"


@dataclass
class Case:
    vendor: str  # the simulator's vendor
    settings: callable  # base_url -> the original-shaped settings
    sent_model: str  # the model the vendor must receive
    key_setting: str  # named in the wrong-key answer
    base_setting: str
    sent_key: str = KEY
    system_prompt_sent: bool = True
    extra: dict = field(default_factory=dict)


CASES = {
    # The original's settings: open_ai_api_key with a relay's open_ai_api_base (taken as a pair).
    "deepseek": Case(
        "deepseek",
        lambda base: {"model": "deepseek-chat", "open_ai_api_key": KEY, "open_ai_api_base": base},
        "deepseek-chat", "open_ai_api_key", "open_ai_api_base"),
    # DeepSeek's own key wins, and goes to deepseek_api_base, never to open_ai_api_base.
    "deepseek-own": Case(
        "deepseek",
        lambda base: {"model": "deepseek-chat", "deepseek_api_key": KEY, "deepseek_api_base": base,
                      "open_ai_api_key": "sk-openai-only", "open_ai_api_base": "http://127.0.0.1:9/v1"},
        "deepseek-chat", "deepseek_api_key", "deepseek_api_base"),
    "moonshot": Case(
        "moonshot",
        lambda base: {"model": "moonshot-v1-8k", "moonshot_api_key": KEY, "moonshot_base_url": base + "/chat/completions",
                      "temperature": 1.5},  # Moonshot refuses > 1: clamped
        "moonshot-v1-8k", "moonshot_api_key", "moonshot_base_url"),
    "zhipu": Case(
        "zhipu",
        lambda base: {"model": "glm-4", "zhipu_ai_api_key": KEY, "zhipu_ai_api_base": base},
        "glm-4", "zhipu_ai_api_key", "zhipu_ai_api_base"),
    "qwen-max": Case(
        "qwen",
        lambda base: {"model": "qwen-max", "dashscope_api_key": KEY, "dashscope_api_base": base},
        "qwen-max", "dashscope_api_key", "dashscope_api_base"),
    "qwen": Case(
        "qwen",
        lambda base: {"model": "qwen", "dashscope_api_key": KEY, "dashscope_api_base": base},
        "qwen-plus", "dashscope_api_key", "dashscope_api_base"),
    "minimax": Case(
        "minimax",
        lambda base: {"model": "abab6.5-chat", "Minimax_api_key": KEY, "Minimax_group_id": "1782658868262748467",
                      "Minimax_base_url": base},
        "abab6.5-chat", "Minimax_api_key", "Minimax_base_url"),
    "modelscope": Case(
        "modelscope",
        lambda base: {"model": "modelscope", "modelscope_api_key": KEY, "modelscope_base_url": base + "/chat/completions"},
        "Qwen/Qwen2.5-7B-Instruct", "modelscope_api_key", "modelscope_base_url"),
    "gemini": Case(
        "gemini",
        lambda base: {"model": "gemini-pro", "gemini_api_key": KEY, "gemini_api_base": base},
        "gemini-2.5-flash", "gemini_api_key", "gemini_api_base"),
    "xunfei": Case(
        "xunfei",
        lambda base: {"model": "xunfei", "xunfei_app_id": "5f000000", "xunfei_api_key": "spark-key",
                      "xunfei_api_secret": "spark-secret", "xunfei_domain": "4.0Ultra", "xunfei_api_base": base},
        "4.0Ultra", "xunfei_api_password", "xunfei_api_base", sent_key="spark-key:spark-secret"),
    "wenxin": Case(
        "qianfan",
        lambda base: {"model": "wenxin-4", "baidu_wenxin_api_key": "bce-v3/ALTAK-test/0123456789abcdef",
                      "baidu_wenxin_api_base": base},
        "ernie-4.0-8k", "baidu_wenxin_api_key", "baidu_wenxin_api_base",
        sent_key="bce-v3/ALTAK-test/0123456789abcdef", system_prompt_sent=False),
    "linkai": Case(
        "linkai",
        lambda base: {"model": "glm-4", "use_linkai": True, "linkai_api_key": KEY, "linkai_app_code": "Kv2fXJcH",
                      "linkai_api_base": base[: -len("/v1")]},
        "glm-4", "linkai_api_key", "linkai_api_base", extra={"app_code": "Kv2fXJcH"}),
}


def _answer(daemon: Daemon, question: str, starts: str, timeout: float = 20) -> str:
    """Ask, and return the first stdout line (after the question) that starts with `starts`."""
    seen = len(daemon.stdout)
    daemon.ask(question)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in daemon.stdout[seen:]:
            if line.strip().startswith(starts):
                return line.strip()
        time.sleep(0.02)
    raise AssertionError(f"no answer starting {starts!r}; stdout: {''.join(daemon.stdout[seen:])!r}")


@pytest.mark.parametrize("name", list(CASES))
def test_vendor_answers_streamed_and_not_and_says_what_is_wrong(tmp_path, name):
    case = CASES[name]
    with OpenAIServer(api_keys={case.sent_key}, vendor=case.vendor) as server:
        config = write_config(tmp_path, bot_type="", character_desc="You are a test bot.", **case.settings(server.base_url))
        daemon = Daemon(tmp_path, "--cmd", "--config", config)
        try:
            # Streamed (server-sent events), then a follow-up in the same session.
            first = _answer(daemon, "hello", "echo: hello")
            history = 2 if case.system_prompt_sent else 1
            assert first == f"echo: hello (messages: {history})"
            assert "<think>" not in "".join(daemon.stdout)  # MiniMax's reasoning is not shown
            second = _answer(daemon, "and again", "echo: and again")
            assert second == f"echo: and again (messages: {history + 2})"
            [request, _] = server.chat_requests()
            assert request.json["model"] == case.sent_model
            assert request.json["stream"] is True
            assert request.headers["authorization"] == f"Bearer {case.sent_key}"
            assert {k: request.json.get(k) for k in case.extra} == case.extra
            roles = [m["role"] for m in request.messages]
            assert ("system" in roles) == case.system_prompt_sent

            # The same vendor answering with one JSON body instead of a stream.
            server.stream = False
            assert _answer(daemon, "not streamed", "echo: not streamed") == f"echo: not streamed (messages: {history + 4})"

            # A wrong key: the vendor's own refusal, read as "check <its key setting>".
            server.api_keys = {"sk-some-other-key"}
            wrong_key = _answer(daemon, "wrong key?", "The API key was rejected")
            assert f"check the {case.key_setting} setting" in wrong_key
            server.api_keys = {case.sent_key}

            # A model the vendor does not know: named, with the settings to check.
            server.models = {"some-other-model"}
            unknown = _answer(daemon, "unknown model?", f"Model '{case.sent_model}' or its API address not found")
            assert case.base_setting in unknown
            server.models = None

            # An empty balance, in the vendor's words.
            server.push_vendor_error("quota")
            assert _answer(daemon, "quota?", "The API quota is used up").endswith("check the account's billing.")

            # Asked in Chinese: the answer is in Chinese.
            server.api_keys = {"sk-some-other-key"}
            assert case.key_setting in _answer(daemon, "密钥错了吗", "API Key 无效")
            server.api_keys = {case.sent_key}

            # Still answering after the errors; the failed questions left no trace in the history.
            again = _answer(daemon, "still there", "echo: still there")
            assert again == f"echo: still there (messages: {history + 6})"
        finally:
            daemon.proc.stdin.close()  # end of input: the terminal channel stops
            code = daemon.wait(30)
            daemon.kill()
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert code == 0, daemon.stderr()
    assert case.sent_key not in log  # the key is masked in every log line
    assert case.sent_key not in daemon.stderr()
