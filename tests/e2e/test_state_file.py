"""The state database as a file: a truncated one stops start-up untouched, and
`--backup-state` copies it (while the daemon runs too), through real `python app.py` processes."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time

import pytest

from tests.e2e.daemon import Daemon, plugins_dir, run_app, user_lines, write_config

pytestmark = pytest.mark.slow


def fingerprint(folder) -> dict[str, str]:
    return {
        name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
        for name in sorted(os.listdir(folder))
    }


def user_data_in(path) -> dict:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {user: json.loads(data) for user, data in conn.execute("SELECT user, data FROM user_data")}
    finally:
        conn.close()


@pytest.mark.parametrize("case, said", [("truncated", "0 bytes"), ("only its -wal left", "is missing but state.db-wal")])
def test_a_truncated_state_database_stops_start_up_and_is_kept(tmp_path, case, said):
    config = write_config(tmp_path)
    data = tmp_path / "data"
    data.mkdir()
    if case == "truncated":
        (data / "state.db").write_bytes(b"")
    (data / "state.db-wal").write_bytes(b"what may be left of the last commits" * 100)
    before = fingerprint(data)

    result = run_app(tmp_path, "--cmd", "--config", config, input="hello\n")
    assert result.returncode == 1, result.stderr
    [line] = user_lines(result.stderr)
    assert line.startswith("start-up failed: cannot open the state store: ") and said in line
    assert ("backup" in line or "Put the database back" in line) and "aside" in line  # how to recover
    assert "echo: hello" not in result.stdout
    assert fingerprint(data) == before  # same files (no -shm either), same bytes


def test_backup_while_the_daemon_runs(tmp_path):
    config = write_config(tmp_path)
    daemon = Daemon(tmp_path, "--cmd", "--config", config, "--plugins-dir", plugins_dir(tmp_path))
    target = tmp_path / "backups" / "state-copy.db"
    target.parent.mkdir()
    try:
        daemon.ask("count")
        daemon.wait_for("count=1")
        daemon.ask("count")
        daemon.wait_for("count=2")
        deadline = time.monotonic() + 30
        while True:  # user data reaches the database within a second or so
            result = run_app(tmp_path, "--config", config, "--backup-state", str(target))
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip().startswith(f"state database backed up to {target} (")
            if user_data_in(target).get("User") == {"count": 2}:
                break
            assert time.monotonic() < deadline, user_data_in(target)
        daemon.ask("count")  # the daemon goes on as if nothing happened
        daemon.wait_for("count=3")
    finally:
        daemon.kill()
    # The copy is one self-contained file: no -wal needed next to it.
    assert sorted(os.listdir(target.parent)) == ["state-copy.db"]
    with sqlite3.connect(target) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_backup_into_a_folder_gets_a_dated_file_and_restores(tmp_path):
    config = write_config(tmp_path)
    plugins = plugins_dir(tmp_path)
    assert run_app(tmp_path, "--cmd", "--config", config, "--plugins-dir", plugins, input="count\n").returncode == 0
    backups = tmp_path / "backups"
    backups.mkdir()
    result = run_app(tmp_path, "--config", config, "--backup-state", str(backups))
    assert result.returncode == 0, result.stderr
    [name] = os.listdir(backups)
    assert name.startswith("state-") and name.endswith(".db")
    assert str(backups / name) in result.stdout
    # Restoring is putting the file back: the count goes on from there.
    os.replace(backups / name, tmp_path / "data" / "state.db")
    again = run_app(tmp_path, "--cmd", "--config", config, "--plugins-dir", plugins, input="count\n")
    assert again.returncode == 0, again.stderr
    assert "count=2" in again.stdout.splitlines()


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no database yet", "there is no state database"),
        ("missing folder", "does not exist"),
        ("onto itself", "onto itself"),
        ("memory store", "keeps nothing on disk"),
        ("truncated", "0 bytes"),
    ],
)
def test_backup_refusals_are_one_line_and_exit_1(tmp_path, case, expected):
    config = write_config(tmp_path, **({"state_store": "memory"} if case == "memory store" else {}))
    data = tmp_path / "data"
    if case != "no database yet":
        assert run_app(tmp_path, "--cmd", "--config", config, input="hi\n").returncode == 0
    if case == "truncated":
        (data / "state.db").write_bytes(b"")
    target = {
        "missing folder": tmp_path / "no" / "such" / "copy.db",
        "onto itself": data / "state.db",
    }.get(case, tmp_path / "copy.db")
    result = run_app(tmp_path, "--config", config, "--backup-state", str(target))
    assert result.returncode == 1
    [line] = user_lines(result.stderr)
    assert line.startswith("backup failed: ") and expected in line, line
    assert not (tmp_path / "copy.db").exists()
