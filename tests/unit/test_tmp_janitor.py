"""common/tmp_dir.py: the janitor deletes old files of tmp/, never the protected or held ones."""
from __future__ import annotations

import os
import time

from common import tmp_dir


def make(path, age: float, size: int = 10) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x" * size)
    then = time.time() - age
    os.utime(path, (then, then))
    return path


def test_sweep_removes_old_files_and_their_empty_folders(tmp_path):
    old = make(str(tmp_path / "a.mp3"), 7200, 100)
    old_nested = make(str(tmp_path / "f00d" / "report.pdf"), 7200, 50)
    os.utime(tmp_path / "f00d", (time.time() - 7200,) * 2)
    fresh = make(str(tmp_path / "b.wav"), 10)
    removed, freed = tmp_dir.sweep(3600, str(tmp_path))
    assert (removed, freed) == (2, 150)
    assert not os.path.exists(old) and not os.path.exists(old_nested)
    assert not os.path.exists(tmp_path / "f00d")
    assert os.path.exists(fresh)


def test_sweep_keeps_the_wework_lists_and_held_files(tmp_path):
    kept = [make(str(tmp_path / name), 86400) for name in sorted(tmp_dir.PROTECTED)]
    held = make(str(tmp_path / "served.png"), 86400)
    # A same-named file deeper down is not one of the lists: it goes.
    deeper = make(str(tmp_path / "x" / "wework_rooms.json"), 86400)
    tmp_dir.hold(held)
    try:
        assert tmp_dir.sweep(60, str(tmp_path))[0] == 1
        assert all(os.path.exists(p) for p in kept) and os.path.exists(held)
        assert not os.path.exists(deeper)
    finally:
        tmp_dir.release(held)
    assert tmp_dir.sweep(60, str(tmp_path))[0] == 1
    assert not os.path.exists(held)


def test_sweep_of_a_missing_folder_does_nothing(tmp_path):
    assert tmp_dir.sweep(60, str(tmp_path / "absent")) == (0, 0)


def test_tmp_write_errors_are_told_apart_from_other_failures(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tmp").write_text("a file where the folder should be")
    name = tmp_dir.unique_tmp_path(".wav")  # naming never fails
    assert name.startswith(tmp_dir.TMP_DIR) and name.endswith(".wav")
    try:
        open(name, "wb")
    except OSError as e:
        assert tmp_dir.is_tmp_write_error(e)
    else:
        raise AssertionError("writing into a file should fail")
    assert not tmp_dir.is_tmp_write_error(FileNotFoundError(2, "gone", str(tmp_path / "elsewhere" / "x")))
    assert not tmp_dir.is_tmp_write_error(OSError("no file name"))
    assert not tmp_dir.is_tmp_write_error(ValueError("not an OSError"))
