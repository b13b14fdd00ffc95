"""The plugin framework, driven through real plugin folders written the way
third-party plugins for the original are written."""
from __future__ import annotations

import json
import logging
import os
import textwrap
import threading
from pathlib import Path

import pytest

import config
import plugins
from bridge.context import Context, ContextType
from bridge.reply import Reply
from plugins import Event, EventAction, EventContext, Plugin, PluginManager

# A plugin in the original's style. Each handler appends its name to e_context["trace"];
# the message text "break:<Name>" / "pass:<Name>" makes that plugin break the chain.
PLUGIN_SOURCE = '''
import plugins
from plugins import *
from bridge.context import ContextType
from bridge.reply import Reply, ReplyType
from common.log import logger


@plugins.register(
    name="{name}",
    desire_priority={priority},
    desc="test plugin {name}",
    version="0.1",
    author="tests",
)
class {cls}(Plugin):
    def __init__(self):
        super().__init__()
        {init_extra}
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
        logger.info("[{name}] inited")

    def on_handle_context(self, e_context: EventContext):
        e_context["trace"].append(self.name)
        {handle_extra}
        content = e_context["context"].content
        if content == "break:" + self.name:
            e_context["reply"] = Reply(ReplyType.TEXT, "{name} {marker}")
            e_context.action = EventAction.BREAK
        elif content == "pass:" + self.name:
            e_context["reply"] = Reply(ReplyType.TEXT, "{name} {marker}")
            e_context.action = EventAction.BREAK_PASS

    def get_help_text(self, **kwargs):
        return "help of {name}"
'''


def write_plugin(
    root: Path,
    name: str,
    priority: int = 0,
    *,
    dirname: str | None = None,
    init_extra: str = "pass",
    handle_extra: str = "pass",
    marker: str = "v1",
) -> Path:
    folder = root / (dirname or f"tp_{name.lower()}")
    folder.mkdir(exist_ok=True)
    module = name.lower()
    (folder / "__init__.py").write_text(f"from .{module} import *\n", encoding="utf-8")
    source = PLUGIN_SOURCE.format(
        name=name, cls=name, priority=priority, init_extra=init_extra, handle_extra=handle_extra, marker=marker
    )
    (folder / f"{module}.py").write_text(source, encoding="utf-8")
    return folder


def emit(pm: PluginManager, content: str, event: Event = Event.ON_HANDLE_CONTEXT) -> EventContext:
    context = Context(ContextType.TEXT, content)
    e_context = EventContext(event, {"channel": None, "context": context, "reply": Reply(), "trace": []})
    return pm.emit_event(e_context)


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))



@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "plugins_dir"
    folder.mkdir()
    return folder


@pytest.fixture
def manager(root: Path):
    PluginManager._reset_for_tests()
    config.plugin_config.clear()
    pm = PluginManager()
    pm.configure(str(root), include_bundled=False)
    yield pm
    PluginManager._reset_for_tests()
    config.plugin_config.clear()


def restart(root: Path) -> PluginManager:
    """What a process restart does: a fresh manager loading the same folder."""
    PluginManager._reset_for_tests()
    config.plugin_config.clear()
    pm = PluginManager()
    pm.configure(str(root), include_bundled=False)
    pm.load_plugins()
    return pm


# ---------------------------------------------------------------- contract shapes


def test_event_and_action_values_are_the_originals():
    assert [(e.name, e.value) for e in Event] == [
        ("ON_RECEIVE_MESSAGE", 1),
        ("ON_HANDLE_CONTEXT", 2),
        ("ON_DECORATE_REPLY", 3),
        ("ON_SEND_REPLY", 4),
    ]
    assert [(a.name, a.value) for a in EventAction] == [("CONTINUE", 1), ("BREAK", 2), ("BREAK_PASS", 3)]


def test_event_context_dict_access_and_actions():
    e_context = EventContext(Event.ON_RECEIVE_MESSAGE, {"context": "c"})
    assert e_context.action == EventAction.CONTINUE
    assert not e_context.is_break() and not e_context.is_pass()
    e_context["reply"] = "r"
    assert e_context["reply"] == "r" and e_context.econtext["reply"] == "r"
    del e_context["reply"]
    assert "reply" not in e_context
    e_context.action = EventAction.BREAK
    assert e_context.is_break() and not e_context.is_pass()
    e_context.action = EventAction.BREAK_PASS
    assert e_context.is_break() and e_context.is_pass()
    assert e_context.breaked_by is None
    # Each EventContext gets its own dict (the original shared one default dict).
    a, b = EventContext(Event.ON_SEND_REPLY), EventContext(Event.ON_SEND_REPLY)
    a["x"] = 1
    assert "x" not in b


def test_package_exports_what_plugins_import():
    namespace: dict = {}
    exec("from plugins import *", namespace)
    for name in ("Plugin", "Event", "EventAction", "EventContext", "PluginManager", "register", "logger", "conf", "pconf"):
        assert name in namespace, name
    assert plugins.instance is PluginManager()
    assert plugins.register == PluginManager().register


def test_base_plugin_defaults():
    plugin = Plugin()
    assert plugin.handlers == {}
    assert plugin.get_help_text() == "暂无帮助信息"
    assert plugin.get_help_text(isadmin=True, verbose=True) == "暂无帮助信息"
    assert plugin.reload() is None


def test_register_outside_a_scan_raises(manager):
    with pytest.raises(Exception, match="Plugin path not set"):

        @plugins.register(name="Stray")
        class Stray(Plugin):
            pass

    assert "STRAY" not in manager.plugins


# ----------------------------------------------------------------------- loading


def test_load_registers_metadata_and_creates_plugins_json(manager, root):
    write_plugin(root, "Alpha", 30)
    manager.load_plugins()

    cls = manager.plugins["ALPHA"]
    assert (cls.name, cls.priority, cls.desc, cls.version, cls.author) == ("Alpha", 30, "test plugin Alpha", "0.1", "tests")
    assert (cls.namecn, cls.hidden, cls.enabled) == ("Alpha", False, True)
    assert os.path.samefile(cls.path, root / "tp_alpha")
    assert isinstance(manager.instances["ALPHA"], cls)
    assert manager.listening_plugins[Event.ON_HANDLE_CONTEXT] == ["ALPHA"]
    assert manager.list_plugins() is manager.plugins
    # The module is a sub-module of the plugins package, as for bundled plugins.
    assert cls.__module__ == "plugins.tp_alpha.alpha"

    assert os.path.samefile(manager.plugins_config_path(), root / "plugins.json")
    assert read_json(root / "plugins.json") == {"plugins": {"Alpha": {"enabled": True, "priority": 30}}}
    assert manager.pconf == {"plugins": {"Alpha": {"enabled": True, "priority": 30}}}
    assert not list(root.glob("*.tmp"))


def test_relative_imports_inside_a_plugin_folder(manager, root):
    folder = root / "tp_pkg"
    folder.mkdir()
    (folder / "__init__.py").write_text("from .main import *\n", encoding="utf-8")
    (folder / "helper.py").write_text('WORD = "from helper"\n', encoding="utf-8")
    (folder / "main.py").write_text(
        textwrap.dedent(
            """
            import plugins
            from plugins import *
            from .helper import WORD

            @plugins.register(name="Pkg", desire_priority=1)
            class Pkg(Plugin):
                def __init__(self):
                    super().__init__()
                    self.handlers[Event.ON_HANDLE_CONTEXT] = self.handle

                def handle(self, e_context):
                    e_context["trace"].append(WORD)
            """
        ),
        encoding="utf-8",
    )
    manager.load_plugins()
    assert emit(manager, "hi")["trace"] == ["from helper"]
    assert manager.plugins["PKG"].version == "1.0"  # the decorator's default


# ------------------------------------------------------------- event semantics


@pytest.fixture
def three(manager, root):
    write_plugin(root, "Alpha", 30)
    write_plugin(root, "Beta", 20)
    write_plugin(root, "Gamma", 10)
    manager.load_plugins()
    return manager


def test_continue_runs_every_plugin_in_priority_order(three):
    e_context = emit(three, "hello")
    assert e_context["trace"] == ["Alpha", "Beta", "Gamma"]
    assert e_context.action == EventAction.CONTINUE
    assert e_context.breaked_by is None and "breaked_by" not in e_context


def test_break_stops_the_chain_and_records_who(three):
    e_context = emit(three, "break:Beta")
    assert e_context["trace"] == ["Alpha", "Beta"]
    assert e_context.is_break() and not e_context.is_pass()
    assert e_context["breaked_by"] == "BETA" and e_context.breaked_by == "BETA"
    assert e_context["reply"].content == "Beta v1"


def test_break_pass_stops_the_chain_and_skips_default_logic(three):
    e_context = emit(three, "pass:Alpha")
    assert e_context["trace"] == ["Alpha"]
    assert e_context.is_pass() and e_context.is_break()
    assert e_context.breaked_by == "ALPHA"


def test_event_without_listeners_is_returned_untouched(three):
    e_context = emit(three, "hello", Event.ON_SEND_REPLY)
    assert e_context["trace"] == [] and e_context.action == EventAction.CONTINUE


# ----------------------------------------------------------------------- priority


def test_priority_from_decorator_then_plugins_json_then_set_plugin_priority(manager, root):
    write_plugin(root, "Alpha", 30)
    write_plugin(root, "Beta", 20)
    write_plugin(root, "Gamma", 10)
    # plugins.json written by the user overrides the declared priority of Gamma.
    (root / "plugins.json").write_text(
        json.dumps({"plugins": {"Gamma": {"enabled": True, "priority": 100}}}), encoding="utf-8"
    )
    manager.load_plugins()
    assert emit(manager, "x")["trace"] == ["Gamma", "Alpha", "Beta"]
    assert list(manager.plugins) == ["GAMMA", "ALPHA", "BETA"]
    # New plugins were added to plugins.json with their declared values.
    assert read_json(root / "plugins.json")["plugins"]["Beta"] == {"enabled": True, "priority": 20}

    assert manager.set_plugin_priority("beta", 500) is True
    assert emit(manager, "x")["trace"] == ["Beta", "Gamma", "Alpha"]
    assert list(manager.plugins) == ["BETA", "GAMMA", "ALPHA"]
    saved = read_json(root / "plugins.json")["plugins"]
    assert saved["Beta"] == {"enabled": True, "priority": 500}
    assert list(saved) == ["Beta", "Gamma", "Alpha"]  # kept highest first, as the original
    assert manager.set_plugin_priority("beta", 500) is True  # unchanged is fine
    assert manager.set_plugin_priority("nope", 1) is False

    restarted = restart(root)
    assert emit(restarted, "x")["trace"] == ["Beta", "Gamma", "Alpha"]


def test_plugins_json_key_matches_case_insensitively(manager, root):
    write_plugin(root, "Alpha", 30)
    (root / "plugins.json").write_text(json.dumps({"plugins": {"alpha": {"enabled": False, "priority": 3}}}), encoding="utf-8")
    manager.load_plugins()
    assert manager.plugins["ALPHA"].enabled is False and manager.plugins["ALPHA"].priority == 3
    assert read_json(root / "plugins.json") == {"plugins": {"alpha": {"enabled": False, "priority": 3}}}


def test_unreadable_plugins_json_is_kept_aside_and_recreated(manager, root, logs):
    write_plugin(root, "Alpha", 30)
    (root / "plugins.json").write_text("{not json", encoding="utf-8")
    manager.load_plugins()
    assert (root / "plugins.json.broken").read_text(encoding="utf-8") == "{not json"
    assert read_json(root / "plugins.json") == {"plugins": {"Alpha": {"enabled": True, "priority": 30}}}
    assert "plugins.json" in logs.text(logging.ERROR)
    assert emit(manager, "x")["trace"] == ["Alpha"]


def test_stale_plugins_json_entry_is_reported(manager, root, logs):
    write_plugin(root, "Alpha", 30)
    (root / "plugins.json").write_text(json.dumps({"plugins": {"Gone": {"enabled": True, "priority": 1}}}), encoding="utf-8")
    manager.load_plugins()
    assert "plugins.json names Gone, but no such plugin was found" in logs.text(logging.ERROR)


# ---------------------------------------------------------------- enable/disable


def test_disable_and_enable_are_persisted(three, root):
    assert three.disable_plugin("beta") is True
    assert emit(three, "break:Beta")["trace"] == ["Alpha", "Gamma"]
    assert read_json(root / "plugins.json")["plugins"]["Beta"]["enabled"] is False
    # The instance stays; it is only skipped.
    assert "BETA" in three.instances
    assert three.disable_plugin("beta") is True
    assert three.disable_plugin("nope") is False

    restarted = restart(root)
    assert restarted.plugins["BETA"].enabled is False
    assert "BETA" not in restarted.instances
    assert emit(restarted, "x")["trace"] == ["Alpha", "Gamma"]

    assert restarted.enable_plugin("Beta") == (True, "插件已开启")
    assert "BETA" in restarted.instances
    assert emit(restarted, "x")["trace"] == ["Alpha", "Beta", "Gamma"]
    assert read_json(root / "plugins.json")["plugins"]["Beta"]["enabled"] is True
    assert restarted.enable_plugin("Beta") == (True, "插件已开启")
    assert restarted.enable_plugin("nope") == (False, "插件不存在")


# ------------------------------------------------------------------------ reload


def test_rescan_picks_up_edited_code(three, root):
    alpha_class = three.plugins["ALPHA"]
    gamma_instance = three.instances["GAMMA"]
    assert emit(three, "pass:Alpha")["reply"].content == "Alpha v1"
    # Same length on purpose: a stale .pyc would hide an edit made within the same second.
    write_plugin(root, "Alpha", 30, marker="v2")

    assert three.scan_plugins() == []  # nothing new, only re-imported
    three.activate_plugins()

    assert three.plugins["ALPHA"] is not alpha_class
    assert isinstance(three.instances["ALPHA"], three.plugins["ALPHA"])
    assert emit(three, "pass:Alpha")["reply"].content == "Alpha v2"
    assert emit(three, "x")["trace"] == ["Alpha", "Beta", "Gamma"]  # no handler listed twice
    assert three.instances["GAMMA"] is not gamma_instance  # re-imported too, so rebuilt


def test_rescan_reloads_sub_modules(manager, root):
    folder = root / "tp_sub"
    folder.mkdir()
    (folder / "__init__.py").write_text("from .main import *\n", encoding="utf-8")
    (folder / "words.py").write_text('WORD = "one"\n', encoding="utf-8")
    (folder / "main.py").write_text(
        textwrap.dedent(
            """
            import plugins
            from plugins import *
            from . import words

            @plugins.register(name="Sub")
            class Sub(Plugin):
                def __init__(self):
                    super().__init__()
                    self.handlers[Event.ON_HANDLE_CONTEXT] = lambda e_context: e_context["trace"].append(words.WORD)
            """
        ),
        encoding="utf-8",
    )
    manager.load_plugins()
    assert emit(manager, "x")["trace"] == ["one"]
    (folder / "words.py").write_text('WORD = "two"\n', encoding="utf-8")
    manager.scan_plugins()
    manager.activate_plugins()
    assert emit(manager, "x")["trace"] == ["two"]


def test_rescan_reports_new_plugins(three, root):
    write_plugin(root, "Delta", 15)
    new = three.scan_plugins()
    assert [cls.name for cls in new] == ["Delta"]
    assert three.activate_plugins() == []
    assert emit(three, "x")["trace"] == ["Alpha", "Beta", "Delta", "Gamma"]


def test_failed_reimport_keeps_the_running_version(three, root, logs):
    (root / "tp_alpha" / "alpha.py").write_text("this is not python\n", encoding="utf-8")
    three.scan_plugins()
    three.activate_plugins()
    assert "plugin folder tp_alpha cannot be imported" in logs.text(logging.ERROR)
    assert emit(three, "pass:Alpha")["reply"].content == "Alpha v1"


def test_reload_plugin_builds_a_new_instance(three):
    old = three.instances["BETA"]
    alpha = three.instances["ALPHA"]
    assert three.reload_plugin("beta") is True
    assert three.instances["BETA"] is not old
    assert three.instances["ALPHA"] is not None
    assert three.instances["ALPHA"] is alpha  # only the named plugin is rebuilt
    assert emit(three, "x")["trace"] == ["Alpha", "Beta", "Gamma"]
    assert three.reload_plugin("nope") is False


# ------------------------------------------------------------- broken plugins


def test_broken_plugins_never_stop_the_others(manager, root, logs):
    write_plugin(root, "Alpha", 30)
    write_plugin(root, "Boom", 25, handle_extra='raise RuntimeError("handler exploded")')
    write_plugin(root, "Ctor", 20, init_extra='raise ValueError("constructor exploded")')
    bad = root / "tp_importfail"
    bad.mkdir()
    (bad / "__init__.py").write_text('raise ImportError("missing dependency xyz")\n', encoding="utf-8")
    syntax = root / "tp_syntax"
    syntax.mkdir()
    (syntax / "__init__.py").write_text("def broken(:\n", encoding="utf-8")
    write_plugin(root, "Omega", -5)

    manager.load_plugins()

    errors = logs.text(logging.ERROR)
    assert "plugin folder tp_importfail cannot be imported" in errors and "missing dependency xyz" in errors
    assert "plugin folder tp_syntax cannot be imported" in errors
    assert "plugin CTOR failed to start" in errors and "constructor exploded" in errors
    # The constructor failure disables the plugin, in plugins.json too (the original's way).
    assert manager.plugins["CTOR"].enabled is False
    assert "CTOR" not in manager.instances
    assert read_json(root / "plugins.json")["plugins"]["Ctor"]["enabled"] is False

    e_context = emit(manager, "hello")
    assert e_context["trace"] == ["Alpha", "Boom", "Omega"]
    assert e_context.action == EventAction.CONTINUE
    handler_errors = [r for r in logs.records if "handler exploded" in r.getMessage()]
    assert handler_errors and "BOOM" in handler_errors[0].getMessage() and handler_errors[0].exc_info

    # Still broken: enabling reports the failure the original's way.
    assert manager.enable_plugin("ctor") == (False, "插件开启失败")


def test_handler_that_breaks_then_raises_counts_as_continue(manager, root):
    write_plugin(
        root,
        "Half",
        30,
        handle_extra='e_context.action = EventAction.BREAK_PASS\n        raise KeyError("late")',
    )
    write_plugin(root, "After", 10)
    manager.load_plugins()
    e_context = emit(manager, "x")
    assert e_context["trace"] == ["Half", "After"]
    assert e_context.action == EventAction.CONTINUE and e_context.breaked_by is None


# ------------------------------------------------------------------ plugin config


CONFIG_PLUGIN = '''
import plugins
from plugins import *


@plugins.register(name="Conf", desire_priority=0)
class Conf(Plugin):
    def __init__(self):
        super().__init__()
        self.config = self.load_config()
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context

    def on_handle_context(self, e_context):
        e_context["trace"].append(self.config)
'''


@pytest.fixture
def conf_plugin(root) -> Path:
    folder = root / "tp_conf"
    folder.mkdir()
    (folder / "__init__.py").write_text("from .conf import *\n", encoding="utf-8")
    (folder / "conf.py").write_text(CONFIG_PLUGIN, encoding="utf-8")
    return folder


def test_own_config_json_is_read_and_cached(manager, conf_plugin):
    (conf_plugin / "config.json").write_text(json.dumps({"where": "own"}), encoding="utf-8")
    manager.load_plugins()
    assert manager.instances["CONF"].config == {"where": "own"}
    assert config.pconf("Conf") == {"where": "own"}


def test_global_config_json_wins_over_own(manager, root, conf_plugin):
    (conf_plugin / "config.json").write_text(json.dumps({"where": "own"}), encoding="utf-8")
    (root / "config.json").write_text(json.dumps({"conf": {"where": "global"}}, ensure_ascii=False), encoding="utf-8")
    manager.load_plugins()
    assert manager.instances["CONF"].config == {"where": "global"}
    assert os.path.samefile(manager.global_plugin_config_path(), root / "config.json")


def test_no_config_gives_none(manager, conf_plugin):
    manager.load_plugins()
    assert manager.instances["CONF"].config is None


def test_save_config_writes_both_files(manager, root, conf_plugin):
    (conf_plugin / "config.json").write_text(json.dumps({"where": "own"}), encoding="utf-8")
    (root / "config.json").write_text(json.dumps({"Other": {"x": 1}, "Conf": {"where": "global"}}), encoding="utf-8")
    manager.load_plugins()
    manager.instances["CONF"].save_config({"where": "saved", "中文": "值"})

    assert read_json(root / "config.json") == {"Other": {"x": 1}, "Conf": {"where": "saved", "中文": "值"}}
    assert read_json(conf_plugin / "config.json") == {"where": "saved", "中文": "值"}
    assert config.pconf("Conf") == {"where": "saved", "中文": "值"}
    assert not list(root.glob("*.tmp")) and not list(conf_plugin.glob("*.tmp"))


def test_save_config_with_only_the_own_file(manager, root, conf_plugin):
    (conf_plugin / "config.json").write_text(json.dumps({"where": "own"}), encoding="utf-8")
    manager.load_plugins()
    manager.instances["CONF"].save_config({"where": "saved"})
    assert read_json(conf_plugin / "config.json") == {"where": "saved"}
    assert not (root / "config.json").exists()


def test_save_config_never_keeps_settings_in_memory_only(manager, root, conf_plugin):
    manager.load_plugins()
    manager.instances["CONF"].save_config({"where": "new"})
    assert read_json(conf_plugin / "config.json") == {"where": "new"}

    restarted = restart(root)
    assert restarted.instances["CONF"].config == {"where": "new"}


def test_reload_plugin_rereads_config_and_keeps_global_entries(manager, root, conf_plugin):
    (root / "config.json").write_text(json.dumps({"conf": {"where": "global"}}), encoding="utf-8")
    manager.load_plugins()
    assert manager.reload_plugin("Conf") is True
    # The original dropped the entry and came back on defaults (None) here.
    assert manager.instances["CONF"].config == {"where": "global"}

    (root / "config.json").write_text(json.dumps({"conf": {"where": "edited"}}), encoding="utf-8")
    assert manager.reload_plugin("CONF") is True
    assert manager.instances["CONF"].config == {"where": "edited"}


# ------------------------------------------------------------------- threads


def test_emit_is_safe_while_plugins_are_managed(three, root):
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker():
        try:
            while not stop.is_set():
                e_context = emit(three, "hello")
                trace = e_context["trace"]
                assert len(trace) == len(set(trace)), trace
                assert set(trace) <= {"Alpha", "Beta", "Gamma"}
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for i in range(60):
            three.disable_plugin("Beta")
            three.set_plugin_priority("Gamma", 40 if i % 2 else 5)
            three.enable_plugin("Beta")
            three.reload_plugin("Alpha")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
    assert not errors, errors[0]
    assert all(not t.is_alive() for t in threads)
    three.set_plugin_priority("Gamma", 10)
    assert emit(three, "x")["trace"] == ["Alpha", "Beta", "Gamma"]
