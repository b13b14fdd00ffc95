"""Names and behaviours third-party plugins written for the original rely on: what
`from plugins import *` hands them, the order of PluginManager().plugins, the original's
SortedDict, which bundled plugins start off, and how a plugin that cannot start is shown."""
from __future__ import annotations

import json
import logging
from pathlib import Path


import config
from common.sorted_dict import SortedDict
from plugins import PluginManager

PLUGINS_PACKAGE = Path(__file__).resolve().parents[2] / "plugins"

SIMPLE_PLUGIN = '''
import plugins
from plugins import *
{imports}

@plugins.register(name="{name}", desire_priority={priority}, desc="d", version="0.1", author="t")
class {name}(Plugin):
    def __init__(self):
        super().__init__()
        {init}
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context

    def on_handle_context(self, e_context):
        pass
'''


def write_plugin(root: Path, name: str, priority: int = 0, imports: str = "", init: str = "pass") -> None:
    folder = root / f"tp_{name.lower()}"
    folder.mkdir()
    (folder / "__init__.py").write_text(f"from .{name.lower()} import *\n", encoding="utf-8")
    source = SIMPLE_PLUGIN.format(name=name, priority=priority, imports=imports, init=init)
    (folder / f"{name.lower()}.py").write_text(source, encoding="utf-8")


# The plugin folder and a manager scanning only it, shared with test_plugins.
from tests.unit.test_plugins import manager, root  # noqa: E402,F401  (pytest fixtures)


# ------------------------------------------------------------------ import *


def test_star_import_hands_plugins_the_originals_names():
    namespace: dict = {}
    exec("from plugins import *", namespace)
    # The names `from plugins import *` gave a plugin in the original (checked by running it).
    expected = {
        "Enum", "Event", "EventAction", "EventContext", "Plugin", "PluginManager", "conf", "event",
        "instance", "json", "logger", "os", "pconf", "plugin", "plugin_config", "plugin_manager",
        "register", "write_plugin_config",
    }
    assert expected <= set(namespace)
    namespace["write_plugin_config"]({"StarImport": {"k": 1}})
    try:
        assert namespace["pconf"]("StarImport") == {"k": 1}
    finally:
        config.remove_plugin_config("StarImport")


# --------------------------------------------------------------- SortedDict


def test_sorted_dict_orders_by_the_sort_value_then_the_key():
    d = SortedDict(lambda k, v: v, reverse=True)
    for key, value in [("B", 1), ("A", 1), ("C", 5), ("D", -1), ("E", 1)]:
        d[key] = value
    assert list(d) == ["C", "E", "B", "A", "D"]
    assert d.keys() == ["C", "E", "B", "A", "D"]
    assert d.items() == [("C", 5), ("E", 1), ("B", 1), ("A", 1), ("D", -1)]
    d["A"] = 9
    assert list(d) == ["A", "C", "E", "B", "D"]
    del d["C"]
    assert list(d) == ["A", "E", "B", "D"]
    assert json.dumps(d) == '{"A": 9, "E": 1, "B": 1, "D": -1}'
    assert SortedDict(init_dict={"x": 2, "a": 1}).keys() == ["a", "x"]
    by_field = SortedDict(lambda k, v: v["p"], {"a": {"p": 1}, "b": {"p": 2}}, reverse=True)
    assert by_field.items() == [("b", {"p": 2}), ("a", {"p": 1})]


def test_sorted_dict_keeps_its_order_until_update_heap():
    d = SortedDict(lambda k, v: v["p"], reverse=True)
    d["x"], d["y"] = {"p": 1}, {"p": 2}
    d["x"]["p"] = 3  # changed in place: the order is the one computed when it was set
    assert list(d) == ["y", "x"]
    d._update_heap("x")
    assert list(d) == ["x", "y"]
    d.update({"z": {"p": 10}})
    assert list(d)[0] == "z" and d.pop("z") == {"p": 10} and "z" not in d.keys()


def test_plugins_are_a_sorted_dict_in_the_originals_order(manager, root):
    for name, priority in [("Bravo", 5), ("Alpha", 5), ("Zulu", 1), ("Top", 50), ("Low", -3)]:
        write_plugin(root, name, priority)
    manager.load_plugins()
    assert isinstance(manager.plugins, SortedDict)
    # Highest priority first; a tie is ordered by name from Z to A, as the original's heap did.
    assert list(manager.plugins) == ["TOP", "BRAVO", "ALPHA", "ZULU", "LOW"]
    assert [name for name, _ in manager.plugins.items()] == list(manager.plugins)
    manager.set_plugin_priority("low", 100)
    assert list(manager.plugins)[0] == "LOW"
    assert list(json.loads((root / "plugins.json").read_text(encoding="utf-8"))["plugins"])[0] == "Low"


def test_a_priority_that_is_no_number_does_not_stop_the_others(manager, root):
    write_plugin(root, "Quoted", '"10"')
    write_plugin(root, "Unset", "None")
    write_plugin(root, "Plain", 5)
    manager.load_plugins()
    assert list(manager.plugins) == ["QUOTED", "PLAIN", "UNSET"]
    assert sorted(manager.instances) == ["PLAIN", "QUOTED", "UNSET"]


# ---------------------------------------------------- bundled plugins, failures


def test_role_and_dungeon_start_disabled_as_in_the_original(tmp_path):
    PluginManager._reset_for_tests()
    config.plugin_config.clear()
    folder = tmp_path / "settings"
    folder.mkdir()
    try:
        pm = PluginManager()
        pm.configure(str(folder), include_bundled=True)
        pm.load_plugins()
        assert pm.plugins["ROLE"].enabled is False and "ROLE" not in pm.instances
        assert pm.plugins["DUNGEON"].enabled is False and "DUNGEON" not in pm.instances
        entries = json.loads((folder / "plugins.json").read_text(encoding="utf-8"))["plugins"]
        assert entries["Role"]["enabled"] is False and entries["Dungeon"]["enabled"] is False
        assert entries["Hello"]["enabled"] is True
    finally:
        PluginManager._reset_for_tests()
        config.plugin_config.clear()


def test_a_plugin_whose_init_fails_is_disabled_in_plugins_json(manager, root, logs):
    write_plugin(root, "Fine", 1)
    write_plugin(root, "Ctor", 2, init='raise ValueError("no api key configured")')
    manager.load_plugins()
    assert manager.plugins["CTOR"].enabled is False and "CTOR" not in manager.instances
    entries = json.loads((root / "plugins.json").read_text(encoding="utf-8"))["plugins"]
    assert entries["Ctor"]["enabled"] is False and entries["Fine"]["enabled"] is True
    assert "plugin CTOR failed to start and is disabled: no api key configured" in logs.text(logging.ERROR)
    assert "FINE" in manager.instances


def test_a_plugin_importing_a_missing_package_gets_one_clear_line(manager, root, logs):
    write_plugin(root, "NeedsPkg", 1, imports="import surely_missing_pkg_xyz")
    write_plugin(root, "NeedsPil", 1, imports="from PIL_missing_alias import Image")
    write_plugin(root, "LazyNeed", 1, init="import yaml_missing_thing")
    write_plugin(root, "OwnModule", 1, imports="from channel.wechatnt.ntchat_channel import wechatnt")
    write_plugin(root, "Fine", 0)
    manager.load_plugins()
    errors = [r for r in logs.records if r.levelno >= logging.ERROR]
    text = "\n".join(r.getMessage() for r in errors)
    assert (
        "plugin folder tp_needspkg cannot be imported, skipped: it needs the Python package "
        "'surely_missing_pkg_xyz', which is not installed: pip install surely_missing_pkg_xyz"
    ) in text
    assert "plugin LAZYNEED failed to start and is disabled: it needs the Python package 'yaml_missing_thing'" in text
    assert "plugin folder tp_ownmodule cannot be imported, skipped: it imports channel.wechatnt" in text
    assert "which this program does not have" in text
    # One line each, no traceback.
    assert not any(r.exc_info for r in errors if "tp_needspkg" in r.getMessage() or "LAZYNEED" in r.getMessage())
    assert "FINE" in manager.instances


def test_pip_names_of_common_imports():
    # Modules whose pip package has another name are named by the package.
    from plugins.plugin_manager import _missing_package

    err = ModuleNotFoundError("No module named 'bs4'", name="bs4")
    assert _missing_package(err) == "it needs the Python package 'beautifulsoup4', which is not installed: pip install beautifulsoup4"
    err = ModuleNotFoundError("No module named 'PIL.Image'", name="PIL.Image")
    assert "pip install Pillow" in _missing_package(err)
    assert _missing_package(ValueError("x")) is None


def test_source_json_has_every_name_of_the_original():
    repos = json.loads((PLUGINS_PACKAGE / "source.json").read_text(encoding="utf-8"))["repo"]
    # The names of the original's plugins/source.json.
    original = {
        "sdwebui", "replicate", "summary", "Apilot", "GroupInvitation", "send_msg",
        "Blackroom", "midjourney", "solitaire", "HighSpeedTicket", "pictureChange",
    }
    assert original <= set(repos)
    for name in original:
        assert repos[name]["url"].startswith("https://github.com/") and repos[name]["url"].endswith(".git")
        assert repos[name]["desc"]
