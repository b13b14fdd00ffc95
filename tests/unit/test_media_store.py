"""channel/web/media_store.py: bounded, expiring, and holding its files from the tmp/ janitor."""
from __future__ import annotations

import os
import time

import pytest

from channel.web.media_store import Media, MediaStore, MediaTooLarge
from common import tmp_dir


def store(user_cap=1000, total_cap=3000, ttl=600.0, items=50) -> MediaStore:
    return MediaStore(lambda: user_cap, lambda: total_cap, ttl=ttl, user_max_items=items)


def test_expire_drops_old_items_and_releases_their_files(tmp_path):
    media = store(ttl=60)
    path = tmp_path / "report.pdf"
    path.write_bytes(b"x")
    old = time.time() - 7200
    os.utime(path, (old, old))
    image_id = media.put("u", Media(b"1" * 10, None, "image/png", "image"))
    file_id = media.put("u", Media(None, str(path), "application/pdf", "report.pdf"))
    assert tmp_dir.sweep(60, str(tmp_path)) == (0, 0)  # held while the page may fetch it
    assert media.expire(time.monotonic() + 30) == 0
    assert media.expire(time.monotonic() + 120) == 2
    assert media.get("u", image_id) is None and media.get("u", file_id) is None
    assert not media.has_user("u") and media.total_bytes == 0
    assert tmp_dir.sweep(60, str(tmp_path))[0] == 1  # released: the janitor may take it now


def test_items_per_user_are_bounded_in_number_too():
    media = store(items=3)
    ids = [media.put("u", Media(b"1", None, "image/png", "image")) for _ in range(5)]
    assert [media.get("u", i) is not None for i in ids] == [False, False, True, True, True]
    assert media.count("u") == 3


def test_one_item_larger_than_a_user_may_keep_is_refused():
    media = store(user_cap=100)
    with pytest.raises(MediaTooLarge):
        media.put("u", Media(b"1" * 101, None, "image/png", "image"))
    assert media.count() == 0 and media.total_bytes == 0
