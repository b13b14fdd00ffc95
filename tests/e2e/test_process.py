"""`python app.py` as a real process: the terminal channel, signals, durable user data, bad config."""
from __future__ import annotations

import json
import os
import signal
import sys
import time

import pytest

from tests.e2e.daemon import Daemon, plugins_dir, run_app, user_lines, write_config

pytestmark = pytest.mark.slow


def read_user_data(folder, user="User"):
    from common.store import SQLiteStore

    store = SQLiteStore(os.path.join(str(folder), "data", "state.db"))
    try:
        return store.load_user_datas().get(user, {})
    finally:
        store.close()


def test_piped_questions_are_answered_in_order_then_exit_0(tmp_path):
    config = write_config(tmp_path)
    daemon = run_app(tmp_path, "--cmd", "--config", config, input="hello\n你好\n\nthird question\n")
    out, err = daemon.stdout, daemon.stderr
    assert daemon.returncode == 0, err
    answers = [line for line in out.splitlines() if line.startswith("echo: ")]
    assert answers == ["echo: hello", "echo: 你好", "echo: third question"]
    assert "User:" not in out  # no prompts when stdin is a pipe
    assert os.path.isfile(tmp_path / "run.log")


posix_signals = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals; Windows has no SIGTERM delivery")


@posix_signals
@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_exits_0_and_saves_user_data(tmp_path, signo):
    config = write_config(tmp_path)
    daemon = Daemon(tmp_path, "--cmd", "--config", config, "--plugins-dir", plugins_dir(tmp_path))
    try:
        daemon.ask("count")
        daemon.wait_for("count=1")
        daemon.ask("count")
        daemon.wait_for("count=2")
        daemon.proc.send_signal(signo)
        assert daemon.wait(30) == 0
    finally:
        daemon.kill()
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert f"signal {int(signo)} received, exiting..." in log
    assert read_user_data(tmp_path) == {"count": 2}


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL does not exist on Windows")
def test_kill_9_then_restart_keeps_user_data(tmp_path):
    config = write_config(tmp_path)
    plugins = plugins_dir(tmp_path)
    daemon = Daemon(tmp_path, "--cmd", "--config", config, "--plugins-dir", plugins)
    try:
        daemon.ask("count")
        daemon.wait_for("count=1")
        daemon.ask("count")
        daemon.wait_for("count=2")
        time.sleep(1.0)  # the promise: durable within a second, no clean stop needed
        daemon.proc.send_signal(signal.SIGKILL)
        daemon.wait(10)
    finally:
        daemon.kill()
    again = run_app(tmp_path, "--cmd", "--config", config, "--plugins-dir", plugins, input="count\n")
    out, err = again.stdout, again.stderr
    assert again.returncode == 0, err
    assert "count=3" in out.splitlines()


@posix_signals
def test_second_signal_exits_at_once(tmp_path):
    config = write_config(tmp_path, bot_type="tests.fakes.gated_bot:SleepyBot", shutdown_timeout=60)
    daemon = Daemon(tmp_path, "--cmd", "--config", config)
    try:
        daemon.ask("slow question")
        daemon.wait_for_log("SleepyBot for chat")  # the bot is now working on it (it takes 30 s)
        time.sleep(0.2)
        started = time.monotonic()
        daemon.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert daemon.proc.poll() is None  # still letting the reply finish
        daemon.proc.send_signal(signal.SIGTERM)
        code = daemon.wait(10)
        assert time.monotonic() - started < 10
        assert code == 3
    finally:
        daemon.kill()


@posix_signals
def test_shutdown_lets_a_running_reply_finish(tmp_path):
    config = write_config(tmp_path, bot_type="tests.fakes.bots:SlowRandomBot")
    daemon = Daemon(tmp_path, "--cmd", "--config", config)
    try:
        for i in range(5):
            daemon.ask(f"q{i}")
        daemon.wait_for("echo: q0")
        daemon.proc.send_signal(signal.SIGTERM)
        assert daemon.wait(30) == 0
    finally:
        daemon.kill()
    answers = [line for line in daemon.stdout if line.startswith("echo: ")]
    assert answers == [f"echo: q{i}\n" for i in range(5)]


@posix_signals
@pytest.mark.parametrize("question", ["term while holding the queue lock", "term from a worker"])
def test_a_signal_at_an_awkward_moment_still_stops_the_daemon(tmp_path, question):
    """SIGTERM while the input loop holds the dispatcher's lock, or taken by a worker thread
    while the main thread waits for the next line of stdin (which stays open): the stop still
    runs and the daemon exits 0 (it used to hang, the first in a deadlock, the second until
    the next line)."""
    config = write_config(tmp_path)
    daemon = Daemon(tmp_path, "--cmd", "--config", config,
                    "--plugins-dir", plugins_dir(tmp_path, names=("counter", "signal_probe")))
    try:
        daemon.ask("count")
        daemon.wait_for("count=1")
        daemon.ask(question)
        assert daemon.wait(20) == 0
    finally:
        daemon.kill()
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert f"signal {int(signal.SIGTERM)} received, exiting..." in log
    assert read_user_data(tmp_path) == {"count": 1}


def test_bad_config_exits_2_with_one_line(tmp_path):
    config = write_config(tmp_path, group_chat_prefx=["@bot"])
    daemon = run_app(tmp_path, "--config", config, input="")
    out, err = daemon.stdout, daemon.stderr
    assert daemon.returncode == 2
    assert user_lines(err) == ["config error: unknown setting 'group_chat_prefx' (did you mean 'group_chat_prefix'?)"]


def test_wrong_type_exits_2_naming_key_and_type(tmp_path):
    config = write_config(tmp_path, single_chat_prefix="bot")
    daemon = run_app(tmp_path, "--config", config, input="")
    out, err = daemon.stdout, daemon.stderr
    assert daemon.returncode == 2
    [line] = user_lines(err)
    assert line.startswith("config error: setting 'single_chat_prefix' must be a list")


def test_unknown_channel_lists_valid_names(tmp_path):
    config = write_config(tmp_path, channel_type="wechat")
    daemon = run_app(tmp_path, "--config", config, input="")
    out, err = daemon.stdout, daemon.stderr
    assert daemon.returncode == 1
    [line] = user_lines(err)
    assert line.startswith("start-up failed: unknown channel_type 'wechat'; valid names: ")
    for name in ("wx", "terminal", "wework", "feishu", "dingtalk", "web", "wechatcom_service"):
        assert name in line


def test_environment_overrides_config(tmp_path):
    config = write_config(tmp_path, single_chat_prefix=["bot"])
    daemon = run_app(tmp_path, "--cmd", "--config", config, env={"SINGLE_CHAT_PREFIX": '["ai"]'}, input="ai hello\n")
    out, err = daemon.stdout, daemon.stderr
    assert daemon.returncode == 0, err
    assert "echo: hello" in out.splitlines()


def test_import_of_an_old_pickle_on_request(tmp_path):
    import pickle

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    with open(data_dir / "user_datas.pkl", "wb") as f:
        pickle.dump({"User": {"count": 41}}, f)
    config = write_config(tmp_path)
    plugins = plugins_dir(tmp_path)
    # Without the flag the pickle is left alone.
    first = run_app(tmp_path, "--cmd", "--config", config, "--plugins-dir", plugins, input="count\n")
    out, err = first.stdout, first.stderr
    assert "count=1" in out.splitlines(), err
    second = run_app(tmp_path, "--cmd", "--config", config, "--plugins-dir", plugins, "--import-user-datas", input="count\n")
    out, err = second.stdout, second.stderr
    # Existing values win over imported ones, so the count goes on from 1.
    assert "count=2" in out.splitlines(), err
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / "data").mkdir()
    with open(fresh / "data" / "user_datas.pkl", "wb") as f:
        pickle.dump({"User": {"count": 41}}, f)
    config2 = write_config(fresh)
    third = run_app(fresh, "--cmd", "--config", config2, "--plugins-dir", plugins_dir(fresh), "--import-user-datas", input="count\n")
    out, err = third.stdout, third.stderr
    assert "count=42" in out.splitlines(), err


def test_hostile_pickle_is_refused_with_one_line(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    import pickle

    with open(data_dir / "user_datas.pkl", "wb") as f:
        pickle.dump({"User": Evil()}, f)
    config = write_config(tmp_path)
    daemon = run_app(tmp_path, "--cmd", "--config", config, "--import-user-datas", input="")
    out, err = daemon.stdout, daemon.stderr
    assert daemon.returncode == 1
    [line] = user_lines(err)
    assert line.startswith("start-up failed: cannot import ")
    assert not marker.exists()


def test_broken_plugins_never_stop_the_daemon_or_the_message(tmp_path):
    config = write_config(tmp_path)
    plugins = plugins_dir(tmp_path, names=("counter", "broken", "unimportable"))
    result = run_app(tmp_path, "--cmd", "--config", config, "--plugins-dir", plugins, input="hello\ncount\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "echo: hello" in lines
    assert "count=1" in lines  # the lower-priority plugin still ran after the broken one
    log = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert "this plugin is broken on purpose" in log
    assert "a_module_that_does_not_exist" in log


def test_plugins_written_for_the_original_work_unchanged(tmp_path):
    """Three plugins in the original's style, one per kind of event, through a real daemon."""
    config = write_config(tmp_path, model="gpt-3.5-turbo")
    plugins = plugins_dir(tmp_path, names=("compat_receive", "compat_handle", "compat_reply"))
    questions = ["mark?", "please drop me", "rewrite hello", "plain", "tell SECRET", "last"]
    result = run_app(tmp_path, "--cmd", "--config", config, "--plugins-dir", plugins, input="\n".join(questions) + "\n")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    answers = [lines[i + 1] for i, line in enumerate(lines) if line == "Bot:"]
    assert answers == [
        "mark=seen-by-receive:gpt-3.5-turbo [signed]",  # receive marked it, handle answered, reply signed
        # "please drop me" was dropped by ON_RECEIVE_MESSAGE: no answer at all
        "echo: HELLO [signed]",  # BREAK: the bot answered the rewritten question
        "echo: plain [signed]",
        # "tell SECRET" was held back by ON_SEND_REPLY
        "echo: last [signed]",
    ]
