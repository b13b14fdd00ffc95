"""Start-up and reachability of the OpenAI-compatible vendor bots, as real processes: a
missing key, or credentials of an API the vendor retired, stop start-up with one line saying
what to create and where to put it; an address nothing listens on gives an answer naming the
vendor's address setting. (The answers themselves: test_vendor_bots_process.py.)"""
from __future__ import annotations

import pytest

from tests.e2e.daemon import run_app, user_lines, write_config
from tests.fakes.openai_server import OpenAIServer

pytestmark = pytest.mark.slow

KEY = "sk-vendor-test-key-0123456789"


def test_a_vendor_that_cannot_be_reached_names_its_base_setting(tmp_path):
    server = OpenAIServer(vendor="zhipu").start()
    base = server.base_url
    server.stop()  # nothing listens there any more
    config = write_config(tmp_path, bot_type="", model="glm-4-flash", zhipu_ai_api_key=KEY, zhipu_ai_api_base=base)
    result = run_app(tmp_path, "--cmd", "--config", config, input="anyone there?\n")
    assert result.returncode == 0, result.stderr
    assert ("Cannot reach the model service: check the network and the proxy and zhipu_ai_api_base settings."
            in result.stdout.splitlines())


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({"model": "glm-4"}, "config error: setting 'zhipu_ai_api_key' is empty: put your Zhipu AI (GLM) API key in it"),
        ({"bot_type": "deepseek"}, "config error: setting 'deepseek_api_key' is empty: put your DeepSeek API key in it"),
        ({"model": "abab6.5-chat"}, "config error: setting 'Minimax_api_key' is empty: put your MiniMax API key in it"),
        ({"model": "qwen", "qwen_access_key_id": "LTAI-old", "qwen_access_key_secret": "old", "qwen_agent_key": "a", "qwen_app_id": "b"},
         "config error: setting 'dashscope_api_key' is empty: the old Qwen SDK settings (qwen_access_key_id, "
         "qwen_access_key_secret, qwen_agent_key, qwen_app_id) belong to an API Alibaba has retired; create an API key "
         "in the Model Studio (百炼) console and put it in dashscope_api_key"),
        ({"model": "xunfei", "xunfei_app_id": "5f000000", "xunfei_api_key": "only-the-key"},
         "config error: setting 'xunfei_api_password' is empty: Spark's current (HTTP, OpenAI-compatible) API takes the "
         "APIPassword shown in the iFlytek console for your app; put it in xunfei_api_password (or fill in both "
         "xunfei_api_key and xunfei_api_secret)"),
        ({"model": "wenxin", "baidu_wenxin_api_key": "old-ak", "baidu_wenxin_secret_key": "old-sk"},
         "config error: settings 'baidu_wenxin_api_key' and 'baidu_wenxin_secret_key' hold an API Key / Secret Key pair "
         "of Baidu's old access-token API, which Qianfan's current (v2, OpenAI-compatible) API does not take: create an "
         "API key (bce-v3/ALTAK-...) in the Qianfan console, put it in baidu_wenxin_api_key and leave "
         "baidu_wenxin_secret_key empty"),
    ],
    ids=["zhipu-no-key", "deepseek-no-key", "minimax-no-key", "qwen-old-sdk", "spark-half-key", "wenxin-ak-sk"],
)
def test_missing_or_outdated_credentials_stop_start_up_with_one_line(tmp_path, settings, expected):
    config = write_config(tmp_path, **{"bot_type": "", **settings})
    result = run_app(tmp_path, "--cmd", "--config", config, input="hello\n")
    assert user_lines(result.stderr) == [expected]
    assert result.returncode == 2
    assert result.stdout == ""
