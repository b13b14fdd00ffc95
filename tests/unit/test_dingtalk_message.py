"""channel/dingtalk/message.py: the tmp/ name of a file a user sent."""
import os

from channel.dingtalk.message import DingTalkMessage, parts_of
from tests.fakes.dingtalk.payloads import file_body, robot_message


def test_a_long_cjk_file_name_makes_a_tmp_name_the_file_system_takes():
    data = robot_message("app", "amy", "file", file_body("dl-1", "季度报告" * 25 + ".pdf"))  # 300 bytes
    [part] = parts_of(data)
    message = DingTalkMessage(data, part)
    name = os.path.basename(message.content)
    assert len(name.encode("utf-8")) <= 255 and name.endswith(".pdf") and "季度报告" in name


def test_windows_reserved_characters_leave_the_tmp_name():
    data = robot_message("app", "amy", "file", file_body("dl-2", 'plan:v2?"final"|<x>*.docx'))
    [part] = parts_of(data)
    name = os.path.basename(DingTalkMessage(data, part).content)
    assert not set(name) & set('\\/:*?"<>|') and name.endswith(".docx")
