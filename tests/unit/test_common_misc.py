import os
import queue
import threading
import time
import types

import pytest

from common import const
from common.dequeue import Dequeue
from common.singleton import singleton
from common.tmp_dir import TmpDir, unique_tmp_path


def test_const_facts():
    assert const.DIFY == "dify" and const.ZHIPU_AI == "glm-4" and const.MiniMax == "minimax"
    assert const.CLAUDEAPI == "claudeAPI" and const.QWEN_DASHSCOPE == "dashscope"
    assert const.GPT35 in const.MODEL_LIST and const.DIFY in const.MODEL_LIST
    assert "wework" in const.CHANNEL_NAMES and "gewechat" not in const.CHANNEL_NAMES
    # The original's eleven, and wcf and wecom_bot (DESIGN §1: plugins are loaded for them too).
    assert len(const.CHANNEL_NAMES) == 13 and const.CHANNEL_NAMES[-1] == "wecom_bot" and "wcf" in const.CHANNEL_NAMES


def test_singleton_is_one_instance_across_threads():
    built = []

    @singleton
    class Thing:
        def __init__(self, value=0):
            time.sleep(0.01)  # widen the race window
            built.append(value)
            self.value = value

    results = []
    threads = [threading.Thread(target=lambda i=i: results.append(Thing(i))) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(built) == 1
    assert all(r is results[0] for r in results)
    assert Thing() is results[0]
    assert Thing.__name__ == "Thing"
    assert isinstance(results[0], Thing.__wrapped__)


def test_dequeue_putleft():
    q = Dequeue()
    q.put(1)
    q.put(2)
    q.putleft(0)
    assert [q.get(), q.get(), q.get()] == [0, 1, 2]
    small = Dequeue(maxsize=1)
    small.putleft_nowait("a")
    with pytest.raises(queue.Full):
        small.putleft_nowait("b")
    with pytest.raises(queue.Full):
        small.putleft("b", timeout=0.01)
    with pytest.raises(ValueError):
        small.putleft("b", timeout=-1)
    assert small.get() == "a"
    small.task_done()


def test_tmp_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert TmpDir().path() == "./tmp/"
    assert os.path.isdir(tmp_path / "tmp")
    a, b = unique_tmp_path(".mp3"), unique_tmp_path(".mp3")
    assert a != b and a.startswith("./tmp/") and a.endswith(".mp3")
    with pytest.raises(ValueError):
        unique_tmp_path("/../evil")


def _fake_config_module(values):
    module = types.ModuleType("config")
    module.conf = lambda: values
    return module


def test_linkai_client_never_raises(monkeypatch, caplog):
    from common import linkai_client
    from common.log import logger

    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setitem(os.sys.modules, "config", _fake_config_module({"use_linkai": False}))
    with caplog.at_level("INFO", logger="log"):
        linkai_client.start(None)
    assert "not started" in caplog.text
    monkeypatch.setitem(
        os.sys.modules, "config", _fake_config_module({"use_linkai": True, "linkai_api_key": "k"})
    )
    with caplog.at_level("INFO", logger="log"):
        linkai_client.start(None)  # no channel, settings missing: logged, not raised
    assert "client start failed" in caplog.text

    broken = types.ModuleType("config")

    def boom():
        raise RuntimeError("config broken")

    broken.conf = boom
    monkeypatch.setitem(os.sys.modules, "config", broken)
    linkai_client.start(None)  # logged, not raised


def test_debug_records_are_made_only_while_debug_is_on(logs):
    from common.log import is_debug, logger, set_debug

    debug_before = is_debug()
    try:
        set_debug(False)
        logger.debug("quiet detail")
        logger.info("a fact")
        set_debug(True)
        logger.debug("loud detail")
    finally:
        set_debug(debug_before)
    messages = logs.messages
    assert "quiet detail" not in messages
    assert "a fact" in messages and "loud detail" in messages
