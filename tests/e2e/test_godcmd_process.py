"""godcmd's temporary password through a real `python app.py --cmd` process."""
from __future__ import annotations

import json
import os
import re

import pytest

from tests.e2e.daemon import Daemon, plugins_dir, write_config

pytestmark = pytest.mark.slow


def test_temporary_password_is_on_the_console_only(tmp_path):
    config = write_config(tmp_path)
    plugins = plugins_dir(tmp_path, names=())
    with open(os.path.join(plugins, "config.json"), "w", encoding="utf-8") as f:
        json.dump({"Godcmd": {"password": "", "admin_users": []}}, f)
    daemon = Daemon(tmp_path, "--cmd", "--config", config, "--plugins-dir", plugins)
    try:
        line = daemon.wait_for_stderr("临时口令")  # the console is stderr
        password = re.search(r"临时口令是 (\S+?)（", line).group(1)
        daemon.ask(f"#auth {password}")
        daemon.wait_for("认证成功，请尽快设置口令")
        daemon.ask("#stop")  # the password made this user an admin
        daemon.wait_for("服务已暂停")
        daemon.proc.stdin.close()
        assert daemon.wait() == 0
    finally:
        daemon.kill()
    with open(tmp_path / "run.log", encoding="utf-8") as f:
        run_log = f.read()
    assert "[Godcmd] no password is set" in run_log  # run.log does record the event
    assert password not in run_log
