"""The README's settings table is generated from config.SETTINGS; it must not drift."""
from __future__ import annotations

import os

from config import SETTINGS
from tools.settings_table import BEGIN, END, block

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as f:
        return f.read()


def test_readme_settings_table_is_current():
    readme = read("README.md")
    current = readme[readme.index(BEGIN):readme.index(END) + len(END)]
    assert current == block(), "run: python tools/settings_table.py and paste it into README.md"


def test_every_setting_has_a_row_and_a_meaning():
    readme = read("README.md")
    for key, (default, meaning) in SETTINGS.items():
        assert f"| `{key}` |" in readme
        assert meaning.strip(), key


def test_readme_has_the_two_setup_commands():
    readme = read("README.md")
    assert "python app.py" in readme
    assert "python -m pytest" in readme
    ci = read(".ci/run")
    assert "python -m pytest" in ci
