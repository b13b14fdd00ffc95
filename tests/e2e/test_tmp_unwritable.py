"""tmp/ cannot be written (here: replaced by a file, which stops root too): the user whose message
needs it is told so in one clear sentence, the log has one line (no traceback), and other
messages are still answered. `python app.py` with the WeCom simulator and the Dify simulator."""
from __future__ import annotations

import os

import pytest

from sandbox.dify_server import DifyServer
from tests.e2e.test_wework_process import ALICE, ALICE_NAME, PRIVATE, start, wait_ready

pytestmark = pytest.mark.slow

TOLD = "[ERROR]\nFiles cannot be saved right now: the tmp/ folder is not writable. Please tell the administrator."


def test_voice_message_with_tmp_unwritable_gets_a_clear_answer(tmp_path):
    with DifyServer(api_key="app-test", mode="chat") as dify:
        dify.stt_text = "语音里的问题"
        daemon, ctl = start(tmp_path, dify, speech_recognition=True, voice_to_text="dify")
        try:
            wait_ready(daemon)
            os.rename(tmp_path / "tmp", tmp_path / "tmp.moved")
            (tmp_path / "tmp").write_text("not a folder")
            ctl.inject(ctl.voice(PRIVATE, ALICE, ALICE_NAME))
            ctl.wait_for_call("send_text", lambda c: c["data"]["content"] == TOLD)
            ctl.inject(ctl.text(PRIVATE, ALICE, ALICE_NAME, "你好"))
            ctl.wait_for_call("send_text", lambda c: c["data"]["content"] == "echo: 你好")
        finally:
            daemon.kill()
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert "which cannot be written" in log and "Traceback" not in log
