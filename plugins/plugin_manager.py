# encoding:utf-8
"""Finds, loads, orders and calls plugins.

Every sub-folder with an ``__init__.py`` of the ``plugins`` package folder (and of the
folder given to ``configure``) is a plugin, imported as ``plugins.<folder>``. Its
classes declare themselves with ``@plugins.register(...)``.

plugins.json (``{"plugins": {Name: {"enabled": bool, "priority": int}}}``) and the
shared plugin settings config.json live in the configured folder, else in the
package folder.

Thread safety: message workers call ``emit_event`` while an admin may scan, reload,
enable or disable plugins. ``plugins``, ``instances`` and ``listening_plugins`` are
never changed in place: a change builds new containers and publishes them under
``_state_lock``, so a reader holding the old ones is never disturbed. Changes are
serialized by ``_lock``; handlers always run with no lock held.
"""
from __future__ import annotations

import importlib
import os
import sys
import threading
from types import ModuleType
from typing import Any, Callable

from common.log import logger
from config import remove_plugin_config, write_plugin_config

from .event import *  # noqa: F401,F403  (the original exposed the event names here too)
from .event import Event, EventAction, EventContext
from .plugin import CONFIG_FILE, _read_json, _write_json_atomic

PLUGINS_FILE = "plugins.json"

# godcmd holds the admin list and the temporary password printed at start-up: as in the
# original, its module is never re-imported and it is built once (unless reloaded by name).
_LOAD_ONCE = frozenset({"GODCMD"})


def _as_priority(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _module_tree(import_path: str) -> list[str]:
    prefix = import_path + "."
    return [n for n in list(sys.modules) if n == import_path or n.startswith(prefix)]


class PluginManager:
    """The one plugin manager (``PluginManager()`` always returns the same object)."""

    _instance: "PluginManager | None" = None
    _instance_lock = threading.Lock()

    def __new__(cls, *args: Any, **kwargs: Any) -> "PluginManager":
        if cls._instance is None:
            with cls._instance_lock:
                if cls._instance is None:
                    manager = super().__new__(cls)
                    manager._init_state()
                    cls._instance = manager
        return cls._instance

    def __init__(self) -> None:
        # State is built once, in __new__; PluginManager() is called everywhere.
        pass

    def _init_state(self) -> None:
        self._lock = threading.RLock()
        self._state_lock = threading.Lock()
        # NAME (upper case) -> plugin class, highest priority first.
        self.plugins: dict[str, type] = {}
        # Event -> [NAME, ...] of the instances handling it, highest priority first.
        self.listening_plugins: dict[Event, list[str]] = {}
        # NAME -> plugin instance.
        self.instances: dict[str, Any] = {}
        # The content of plugins.json.
        self.pconf: dict = {"plugins": {}}
        # Folder being imported; @register only works while it is set.
        self.current_plugin_path: str | None = None
        # Plugin folder -> its package module.
        self.loaded: dict[str, ModuleType] = {}
        self._pending: dict[str, type] | None = None
        self._package_dir = os.path.dirname(os.path.abspath(__file__))
        self._extra_dir: str | None = None
        self._include_bundled = True

    @classmethod
    def _reset_for_tests(cls) -> None:
        """Forget every plugin and setting (tests load different plugin sets).

        The object itself is kept: ``plugins.register`` and ``plugins.instance`` are
        bound to it.
        """
        with cls._instance_lock:
            manager = cls._instance
            if manager is None:
                return
            with manager._lock:
                package = manager._package()
                for module in list(manager.loaded.values()):
                    for name in _module_tree(module.__name__):
                        sys.modules.pop(name, None)
                    short = module.__name__.rpartition(".")[2]
                    if getattr(package, short, None) is module:
                        delattr(package, short)
                if manager._extra_dir and manager._extra_dir in package.__path__:
                    package.__path__.remove(manager._extra_dir)
                manager._init_state()

    # ------------------------------------------------------------------ folders

    def _package(self) -> ModuleType:
        return sys.modules[__package__]

    def configure(self, plugins_dir: str, include_bundled: bool = True) -> None:
        """Also load the plugins in ``plugins_dir`` and keep plugins.json and the shared
        config.json there. Call before ``load_plugins``.

        ``include_bundled=False`` skips the plugins shipped in the package folder
        (tests use it to load only their own plugins).
        """
        folder = os.path.abspath(plugins_dir)
        if not os.path.isdir(folder):
            raise NotADirectoryError(f"plugins folder '{plugins_dir}' does not exist")
        with self._lock:
            path = self._package().__path__
            if self._extra_dir and self._extra_dir != folder and self._extra_dir in path:
                path.remove(self._extra_dir)
            # Appending to the package path makes <folder>/<x> importable as plugins.<x>,
            # so `from plugins import *` and relative imports work there as in the package.
            if folder != self._package_dir and folder not in path:
                path.append(folder)
            self._extra_dir = folder
            self._include_bundled = include_bundled
            logger.info(f"[PluginManager] extra plugins folder: {folder}")

    def config_dir(self) -> str:
        """Where plugins.json and the shared plugin config.json are kept."""
        return self._extra_dir or self._package_dir

    def plugins_config_path(self) -> str:
        return os.path.join(self.config_dir(), PLUGINS_FILE)

    def global_plugin_config_path(self) -> str:
        return os.path.join(self.config_dir(), CONFIG_FILE)

    def _plugin_roots(self) -> list[str]:
        roots = [self._package_dir] if self._include_bundled else []
        if self._extra_dir and self._extra_dir not in roots:
            roots.append(self._extra_dir)
        return roots

    def _folder_of_module(self, module_name: str) -> str | None:
        """The plugin folder a module belongs to (plugins.<dir>.x -> the folder of <dir>)."""
        parts = module_name.split(".")
        if len(parts) < 2 or parts[0] != __package__:
            return None
        for root in [self._package_dir] + ([self._extra_dir] if self._extra_dir else []):
            folder = os.path.join(root, parts[1])
            if os.path.isfile(os.path.join(folder, "__init__.py")):
                return folder
        return None

    # ------------------------------------------------------------- registration

    def register(self, name: str, desire_priority: int = 0, **kwargs: Any) -> Callable[[type], type]:
        """Class decorator: ``@plugins.register(name="Hello", desire_priority=-1, desc=..., version=..., author=...)``."""

        def wrapper(plugincls: type) -> type:
            if self.current_plugin_path is None:
                raise Exception("Plugin path not set: plugins register while PluginManager scans their folder")
            plugincls.name = name
            plugincls.priority = desire_priority
            plugincls.desc = kwargs.get("desc")
            plugincls.author = kwargs.get("author")
            # The folder of the module defining the class; the folder being scanned only when
            # the class lives elsewhere (a plugin importing another plugin must not steal it).
            plugincls.path = self._folder_of_module(plugincls.__module__) or self.current_plugin_path
            plugincls.version = kwargs.get("version") if kwargs.get("version") is not None else "1.0"
            plugincls.namecn = kwargs.get("namecn") if kwargs.get("namecn") is not None else name
            plugincls.hidden = kwargs.get("hidden") if kwargs.get("hidden") is not None else False
            plugincls.enabled = kwargs.get("enabled") if kwargs.get("enabled") is not None else True
            if self._pending is not None:
                self._pending[name.upper()] = plugincls
            else:  # cannot happen while current_plugin_path is set, kept for safety
                self._publish(plugins={**self.plugins, name.upper(): plugincls})
            logger.info(f"[PluginManager] registered {name} {plugincls.version} from {plugincls.path}")
            # The original returned None here, which left the class name bound to None.
            return plugincls

        return wrapper

    # ----------------------------------------------------------- plugins.json

    def load_config(self) -> dict:
        """Read plugins.json, or create it."""
        logger.info("[PluginManager] reading plugins.json")
        with self._lock:
            path = self.plugins_config_path()
            pconf = None
            if os.path.exists(path):
                try:
                    data = _read_json(path)
                    if not isinstance(data, dict) or not isinstance(data.get("plugins", {}), dict):
                        raise ValueError('expected {"plugins": {...}}')
                    data.setdefault("plugins", {})
                    pconf = data
                except (OSError, ValueError) as e:
                    backup = path + ".broken"
                    logger.error(f"[PluginManager] cannot read {path} ({e}); it is moved to {backup} and written anew")
                    try:
                        os.replace(path, backup)
                    except OSError as move_error:
                        logger.error(f"[PluginManager] cannot move {path}: {move_error}")
            modified = pconf is None
            if pconf is None:
                pconf = {"plugins": {}}
            self.pconf = pconf
            if modified:
                self.save_config()
            return pconf

    def save_config(self) -> None:
        """Write plugins.json (highest priority first, as the original kept it)."""
        with self._lock:
            data = dict(self.pconf)
            entries = self.pconf.get("plugins", {})
            data["plugins"] = dict(
                sorted(entries.items(), key=lambda kv: -_as_priority(kv[1].get("priority") if isinstance(kv[1], dict) else 0))
            )
            path = self.plugins_config_path()
            try:
                _write_json_atomic(path, data)
            except OSError as e:
                logger.error(f"[PluginManager] cannot write {path}: {e}")

    def _pconf_key(self, rawname: str) -> str | None:
        """The plugins.json key of a plugin: its exact name, else a case-insensitive match."""
        entries = self.pconf.setdefault("plugins", {})
        if rawname in entries:
            return rawname
        return next((k for k in entries if k.upper() == rawname.upper()), None)

    def _pconf_entry(self, plugincls: type) -> dict:
        key = self._pconf_key(plugincls.name)
        entries = self.pconf["plugins"]
        if key is None or not isinstance(entries.get(key), dict):
            key = key or plugincls.name
            entries[key] = {"enabled": plugincls.enabled, "priority": plugincls.priority}
        return entries[key]

    def _load_all_config(self) -> None:
        """Load the shared config.json (settings of every plugin, keyed by plugin name)
        into config.plugin_config, where ``pconf(name)`` finds them."""
        path = self.global_plugin_config_path()
        try:
            if os.path.exists(path):
                all_conf = _read_json(path)
                if not isinstance(all_conf, dict):
                    raise ValueError("expected an object keyed by plugin name")
                logger.info(f"[PluginManager] plugin settings read from {path} for: {list(all_conf)}")
                write_plugin_config(all_conf)
        except Exception as e:
            logger.error(f"[PluginManager] cannot load {path}: {e}")

    # ----------------------------------------------------------------- loading

    def _import_folder(self, dirname: str, plugin_path: str) -> bool:
        """Import (or re-import) one plugin folder; True when it imported."""
        import_path = f"{__package__}.{dirname}"
        package = self._package()
        old_modules: dict[str, ModuleType] = {}
        if plugin_path in self.loaded:
            logger.info(f"[PluginManager] importing plugin folder {dirname} again")
            # Drop the whole module tree and import it afresh: unlike importlib.reload of
            # each module in turn, sub-modules then see each other's new code, and files
            # that were deleted are gone.
            for name in _module_tree(import_path):
                module = sys.modules.pop(name)
                old_modules[name] = module
                self._forget_bytecode(module)
        self._pending = {}
        self.current_plugin_path = plugin_path
        try:
            importlib.invalidate_caches()
            module = importlib.import_module(import_path)
        except (Exception, SystemExit) as e:
            logger.exception(f"[PluginManager] plugin folder {dirname} cannot be imported, skipped: {e}")
            for name in _module_tree(import_path):
                sys.modules.pop(name, None)
            # Keep the previous version running when a re-import fails.
            sys.modules.update(old_modules)
            if import_path in old_modules:
                setattr(package, dirname, old_modules[import_path])
            return False
        finally:
            pending, self._pending = self._pending, None
            self.current_plugin_path = None
        self.loaded[plugin_path] = module
        plugins = dict(self.plugins)
        for name, plugincls in pending.items():
            # Apply plugins.json before publishing: emit_event must not see a plugin the
            # user disabled as enabled, even while the rest of the scan runs.
            key = self._pconf_key(plugincls.name)
            entry = self.pconf["plugins"].get(key) if key else None
            if isinstance(entry, dict) and isinstance(entry.get("enabled"), bool):
                plugincls.enabled = entry["enabled"]
            previous = plugins.get(name)
            if previous is not None and previous.path != plugincls.path:
                logger.warning(f"[PluginManager] plugin {name} of {plugincls.path} replaces the one of {previous.path}")
            plugins[name] = plugincls
        self._publish(plugins=plugins)
        return True

    @staticmethod
    def _forget_bytecode(module: ModuleType) -> None:
        # A source edited within the same second and to the same size would otherwise be
        # served from the stale .pyc.
        source = getattr(module, "__file__", None)
        cached = getattr(module, "__cached__", None)
        if source and cached and source.endswith(".py") and cached != source:
            try:
                os.remove(cached)
            except OSError:
                pass

    def scan_plugins(self) -> list[type]:
        """Import every plugin folder (re-import those seen before, except godcmd),
        apply plugins.json, and return the classes that were not registered before."""
        logger.info("[PluginManager] looking for plugins")
        with self._lock:
            # By name: a re-imported plugin has a new class object but is not new.
            known = set(self.plugins)
            seen: dict[str, str] = {}
            for root in self._plugin_roots():
                try:
                    entries = sorted(os.listdir(root))
                except OSError as e:
                    logger.error(f"[PluginManager] cannot list plugins folder {root}: {e}")
                    continue
                for dirname in entries:
                    plugin_path = os.path.join(root, dirname)
                    if not os.path.isfile(os.path.join(plugin_path, "__init__.py")):
                        continue
                    shadow = os.path.join(self._package_dir, dirname)
                    if dirname in seen or (root != self._package_dir and os.path.isfile(os.path.join(shadow, "__init__.py"))):
                        logger.warning(
                            f"[PluginManager] plugin folder {plugin_path} is skipped: plugins.{dirname} is {seen.get(dirname, shadow)}"
                        )
                        continue
                    seen[dirname] = plugin_path
                    if plugin_path in self.loaded and dirname.upper() in _LOAD_ONCE:
                        continue
                    self._import_folder(dirname, plugin_path)

            modified = False
            for plugincls in self.plugins.values():
                if self._pconf_key(plugincls.name) is None:
                    logger.info(f"[PluginManager] new plugin {plugincls.name}: added to plugins.json")
                    modified = True
                entry = self._pconf_entry(plugincls)
                enabled = entry.get("enabled", plugincls.enabled)
                priority = entry.get("priority", plugincls.priority)
                if not isinstance(enabled, bool) or isinstance(priority, bool) or not isinstance(priority, int):
                    logger.warning(f"[PluginManager] bad plugins.json entry for {plugincls.name}: {entry}; fixed")
                    enabled = bool(enabled)
                    priority = _as_priority(priority, plugincls.priority)
                    modified = True
                if entry.get("enabled") != enabled or entry.get("priority") != priority:
                    entry.update(enabled=enabled, priority=priority)
                    modified = True
                plugincls.enabled = enabled
                plugincls.priority = priority
            self.refresh_order()
            if modified:
                self.save_config()
            return [cls for name, cls in self.plugins.items() if name not in known]

    def refresh_order(self) -> None:
        """Sort plugins and listeners by priority, highest first (ties keep folder order)."""
        with self._lock:
            plugins = dict(sorted(self.plugins.items(), key=lambda kv: -kv[1].priority))
            self._publish(plugins=plugins, listening=self._listeners(plugins, self.instances))

    @staticmethod
    def _listeners(plugins: dict[str, type], instances: dict[str, Any]) -> dict[Event, list[str]]:
        listening: dict[Event, list[str]] = {}
        for name in plugins:
            instance = instances.get(name)
            for event in getattr(instance, "handlers", None) or {}:
                listening.setdefault(event, []).append(name)
        return listening

    def _publish(self, plugins: dict | None = None, instances: dict | None = None, listening: dict | None = None) -> None:
        with self._state_lock:
            if plugins is not None:
                self.plugins = plugins
            if instances is not None:
                self.instances = instances
            if listening is not None:
                self.listening_plugins = listening

    def activate_plugins(self) -> list[str]:
        """Reload the shared plugin config, then build an instance of every enabled plugin
        that has none (or whose class was re-imported). Returns the names that failed."""
        with self._lock:
            self._load_all_config()
            failed: list[str] = []
            instances = dict(self.instances)
            for name, plugincls in list(self.plugins.items()):
                if not plugincls.enabled:
                    continue
                current = instances.get(name)
                if current is not None and (type(current) is plugincls or name in _LOAD_ONCE):
                    continue
                try:
                    instance = plugincls()
                except Exception as e:
                    # Disabled for this run only: plugins.json keeps "enabled", so the next
                    # start (or #enablep) tries again instead of silently dropping the plugin.
                    logger.exception(f"[PluginManager] plugin {name} failed to start and is off until restarted or enabled: {e}")
                    plugincls.enabled = False
                    instances.pop(name, None)
                    failed.append(name)
                    continue
                if not isinstance(getattr(instance, "handlers", None), dict):
                    logger.warning(f"[PluginManager] plugin {name} has no handlers dict (missing super().__init__()?)")
                instances[name] = instance
            self._publish(instances=instances, listening=self._listeners(self.plugins, instances))
            return failed

    def load_plugins(self) -> None:
        with self._lock:
            self.load_config()
            self.scan_plugins()
            self._load_all_config()
            logger.debug(f"[PluginManager] plugins.json: {self.pconf}")
            for name in self.pconf["plugins"]:
                if name.upper() not in self.plugins:
                    logger.error(f"[PluginManager] plugins.json names {name}, but no such plugin was found")
            self.activate_plugins()

    # ------------------------------------------------------------------ events

    def emit_event(self, e_context: EventContext, *args: Any, **kwargs: Any) -> EventContext:
        """Give the event to each listening, enabled plugin, highest priority first, until
        one breaks the chain. A handler that raises is logged and skipped."""
        with self._state_lock:
            listeners = tuple(self.listening_plugins.get(e_context.event, ()))
            instances = self.instances
        for name in listeners:
            if e_context.action != EventAction.CONTINUE:
                break
            plugincls = self.plugins.get(name)
            if plugincls is None or not plugincls.enabled:
                continue
            handler = (getattr(instances.get(name), "handlers", None) or {}).get(e_context.event)
            if handler is None:
                continue
            logger.debug(f"[PluginManager] {e_context.event} -> {name}")
            try:
                handler(e_context, *args, **kwargs)
            except Exception as e:
                logger.exception(f"[PluginManager] plugin {name} failed on {e_context.event}, skipped: {e}")
                e_context.action = EventAction.CONTINUE
                continue
            if e_context.is_break():
                e_context["breaked_by"] = name
                logger.debug(f"[PluginManager] {name} ended the chain of {e_context.event} ({e_context.action})")
        return e_context

    # -------------------------------------------------------------- management

    def set_plugin_priority(self, name: str, priority: int) -> bool:
        name = name.upper()
        with self._lock:
            plugincls = self.plugins.get(name)
            if plugincls is None:
                return False
            if plugincls.priority == priority:
                return True
            plugincls.priority = priority
            self._pconf_entry(plugincls)["priority"] = priority
            self.save_config()
            self.refresh_order()
            return True

    def enable_plugin(self, name: str) -> tuple[bool, str]:
        name = name.upper()
        with self._lock:
            plugincls = self.plugins.get(name)
            if plugincls is None:
                return False, "插件不存在"
            if plugincls.enabled and name in self.instances:
                return True, "插件已开启"
            plugincls.enabled = True
            entry = self._pconf_entry(plugincls)
            if entry.get("enabled") is not True:
                entry["enabled"] = True
                self.save_config()
            if name in self.activate_plugins():
                return False, "插件开启失败"
            return True, "插件已开启"

    def disable_plugin(self, name: str) -> bool:
        """Turn a plugin off (persisted). Its instance stays, skipped by emit_event."""
        name = name.upper()
        with self._lock:
            plugincls = self.plugins.get(name)
            if plugincls is None:
                return False
            plugincls.enabled = False
            entry = self._pconf_entry(plugincls)
            if entry.get("enabled") is not False:
                entry["enabled"] = False
                self.save_config()
            return True

    def reload_plugin(self, name: str) -> bool:
        """Build a new instance of a loaded plugin, re-reading its settings.

        Unlike the original, the settings of plugins/config.json survive: the original
        dropped the cached entry and only re-read the plugin's own config.json, so a
        plugin configured in the shared file came back on its defaults.
        """
        name = name.upper()
        with self._lock:
            if name not in self.instances:
                return False
            remove_plugin_config(name)
            instances = dict(self.instances)
            instances.pop(name)
            self._publish(instances=instances, listening=self._listeners(self.plugins, instances))
            self.activate_plugins()  # re-reads the shared config.json first
            return True

    def list_plugins(self) -> dict[str, type]:
        return self.plugins
