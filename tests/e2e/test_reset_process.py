"""`#reset` in a real `python app.py --cmd` process: a question asked after it is answered."""
from __future__ import annotations

import os
import time

import pytest

from tests.e2e.daemon import Daemon, plugins_dir, write_config

pytestmark = pytest.mark.slow


def wait_until(predicate, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition never became true")
        time.sleep(0.02)


def queued_count(folder) -> int:
    try:
        with open(os.path.join(str(folder), "run.log"), encoding="utf-8") as f:
            return f.read().count("[chat] message queued for session")
    except FileNotFoundError:
        return 0


def test_ask_reset_ask_again_answers_the_new_question(tmp_path):
    gate = tmp_path / "gate"
    config = write_config(tmp_path, bot_type="tests.fakes.gated_bot:FileGatedBot", debug=True)
    plugins = plugins_dir(tmp_path, names=())  # the bundled godcmd only
    daemon = Daemon(tmp_path, "--cmd", "--config", config, "--plugins-dir", plugins, env={"GATE_FILE": str(gate)})
    try:
        daemon.ask("slow first question")
        wait_until(lambda: os.path.exists(str(gate) + ".started"))
        daemon.ask("waiting question")
        daemon.ask("#reset")
        daemon.ask("second question")
        wait_until(lambda: queued_count(tmp_path) == 4)  # all four are queued while the first runs
        gate.touch()
        daemon.wait_for("echo: second question")
        daemon.proc.stdin.close()
        assert daemon.wait(30) == 0
    finally:
        daemon.kill()
    # With debug on, the console log shares stdout; each reply is one "Bot:" block.
    out = "".join(daemon.stdout)
    blocks = [
        "\nBot:\necho: slow first question\n",
        "\nBot:\n[INFO]\n会话已重置\n1 earlier message still waiting was cancelled.\n",
        "\nBot:\necho: second question\n",
    ]
    positions = [out.find(block) for block in blocks]
    assert -1 not in positions and positions == sorted(positions), out
    assert out.count("\nBot:\n") == 3  # "waiting question" was cancelled, nothing else answered
