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
import importlib.machinery
import io
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
from types import ModuleType
from urllib.parse import unquote, urlsplit
from typing import Any, Callable

from common.log import logger
from common.sorted_dict import SortedDict
from config import conf, remove_plugin_config, write_plugin_config

from .event import *  # noqa: F401,F403  (the original exposed the event names here too)
from .event import Event, EventAction, EventContext
from .plugin import CONFIG_FILE, _read_json, _write_json_atomic

PLUGINS_FILE = "plugins.json"

# godcmd holds the admin list and the temporary password printed at start-up: as in the
# original, its module is never re-imported and it is built once (unless reloaded by name).
_LOAD_ONCE = frozenset({"GODCMD"})

# ------------------------------------------------------------- installing plugins
#
# #installp / #updatep / #uninstallp. Installing runs someone else's code with the
# daemon's rights (the plugin, and pip building its requirements), so the source must
# arrive over an authenticated channel: https or ssh. Plain http:// and git:// are
# refused (the original took http://): anyone on the network path could swap the code.

# Shipped with the program (the original's list): updated with it, never on their own,
# and never uninstalled (#disablep turns them off).
BUILTIN_PLUGINS = frozenset({"HELLO", "GODCMD", "ROLE", "TOOL", "BDUNIT", "BANWORDS", "FINISH", "DUNGEON"})

SOURCE_FILE = "source.json"
# Installs are prepared in a hidden folder inside the plugins folder: the same file
# system as the final folder (so the last step is one atomic rename), and scan_plugins
# never imports it (the clone sits one level deeper, the folder has no __init__.py).
_STAGING_PREFIX = ".installing-"
_STALE_STAGING_SECONDS = 3600
# Per network operation (connect, each read) of an https clone or pull.
GIT_HTTP_TIMEOUT_SECONDS = 60
# A plugin folder is imported as plugins.<folder>.
_FOLDER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
# Names no plugin folder may take whatever the package holds; the rest is derived from
# the package itself (see PluginManager.reserved_folder_names).
_RESERVED_FOLDERS = frozenset({"__init__", "__main__", "__pycache__", "event", "plugin", "plugin_manager"})
_SCP_LIKE = re.compile(r"^(?P<user>[A-Za-z0-9_][A-Za-z0-9._-]*)@(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*):(?P<path>[^:\s][^\s]*)$")


class InstallRefused(Exception):
    """The source of #installp is not acceptable; the message says why (Chinese, for the admin)."""


def _has_control_or_space(text: str) -> bool:
    return any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in text)


def _folder_from_path(path: str) -> str:
    """The plugin folder name a repository path gives: its last part without ``.git``."""
    last = unquote(path).rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
    if last.lower().endswith(".git"):
        last = last[:-4]
    return last


def _safe_for_log(url: str) -> str:
    """The URL without a password or token (https://user:secret@host/...)."""
    parts = urlsplit(url)
    if parts.scheme in ("https", "http", "ssh") and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return parts._replace(netloc="***@" + host).geturl()
    return url


def _check_remote_url(url: str) -> str:
    """The plugin folder name for an acceptable remote git URL; InstallRefused otherwise."""
    if _has_control_or_space(url):
        raise InstallRefused("仓库地址里不能有空格或控制字符")
    if url.startswith("-"):
        raise InstallRefused("仓库地址不能以“-”开头")
    match = _SCP_LIKE.match(url)
    if match:  # git@host:owner/repo.git
        return _folder_from_path(match.group("path"))
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("http", "git"):
        raise InstallRefused(f"不支持 {scheme}:// 地址：它不加密也不验证服务器，代码可能在传输中被替换。请改用 https:// 或 ssh 地址")
    if scheme not in ("https", "ssh"):
        raise InstallRefused("只支持 https:// 或 ssh（git@主机:用户/仓库.git、ssh://…）形式的 git 仓库地址")
    try:
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise InstallRefused("仓库地址的端口不对") from None
    # A host or user starting with "-" would reach ssh as an option.
    if not host or host.startswith("-") or (parts.username or "").startswith("-"):
        raise InstallRefused("仓库地址缺少有效的主机名")
    if not parts.path.strip("/"):
        raise InstallRefused("仓库地址缺少仓库路径")
    return _folder_from_path(parts.path)


def _local_source(source: str) -> tuple[str, str] | None:
    """(path, folder name) when ``source`` is a local directory or a file:// URL to one."""
    path = source
    if source.lower().startswith("file://"):
        parts = urlsplit(source)
        if parts.netloc not in ("", "localhost"):
            raise InstallRefused("file:// 地址只能指向本机")
        path = unquote(parts.path)
        if os.name == "nt" and re.match(r"^/[A-Za-z]:", path):
            path = path[1:]
    path = os.path.abspath(os.path.expanduser(path))
    if not os.path.isdir(path):
        return None
    return path, _folder_from_path(path)


def _rmtree(path: str) -> None:
    """Delete a folder tree. Git marks its object files read-only, which stops
    shutil.rmtree on Windows: such files are made writable and deleted again."""

    def retry_writable(func: Callable, target: str, _exc: Any) -> None:
        try:
            os.chmod(target, stat.S_IWRITE | stat.S_IREAD)
            func(target)
        except FileNotFoundError:
            pass

    if not os.path.lexists(path):
        return
    if os.path.islink(path):
        os.remove(path)
    elif sys.version_info >= (3, 12):
        shutil.rmtree(path, onexc=retry_writable)
    else:
        shutil.rmtree(path, onerror=retry_writable)


def _git_config_with_timeout() -> Any:
    """The user's git settings (proxies, certificates) plus a network timeout."""
    from dulwich.config import ConfigDict, StackedConfig

    timeout = ConfigDict()
    timeout.set((b"http",), b"timeout", str(GIT_HTTP_TIMEOUT_SECONDS).encode())
    stacked = StackedConfig.default()
    stacked.backends.insert(0, timeout)
    return stacked


def _remember_timeout(repo_path: str) -> None:
    # Written into the clone, so #updatep (which reads the repository's settings) gets it too.
    try:
        from dulwich.repo import Repo

        with Repo(repo_path) as repo:
            config = repo.get_config()
            config.set((b"http",), b"timeout", str(GIT_HTTP_TIMEOUT_SECONDS).encode())
            config.write_to_path()
    except Exception as e:  # a missing timeout is not worth failing an install for
        logger.warning(f"[PluginManager] could not store the git timeout in {repo_path}: {e}")


def _https_only_pool_manager(config: Any) -> Any:
    """The urllib3 pool manager dulwich would build from ``config`` (proxies, certificates,
    timeout), except that it refuses every URL that is not https.

    urllib3 follows redirects by calling ``urlopen`` again with the new URL, so checking
    there also catches an https address that redirects to plain http, where anyone on the
    path could swap the plugin's code.
    """
    import urllib3
    from dulwich.client import default_urllib3_manager
    from urllib3.exceptions import HTTPError

    class Refused(HTTPError):
        # An HTTPError, so dulwich reports it as a failed fetch like any other.
        pass

    def https_only(cls: type) -> type:
        class HttpsOnly(cls):  # type: ignore[misc, valid-type]
            def urlopen(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
                if urlsplit(url).scheme.lower() != "https":
                    raise Refused(f"refused to fetch {_safe_for_log(url)}: plugins are only downloaded over https, "
                                  "redirects included")
                return super().urlopen(method, url, *args, **kwargs)

        return HttpsOnly

    return default_urllib3_manager(
        config,
        pool_manager_cls=https_only(urllib3.PoolManager),
        proxy_manager_cls=https_only(urllib3.ProxyManager),
    )


def _git_error(e: BaseException, stream: io.BytesIO) -> str:
    detail = str(e).strip() or type(e).__name__
    progress = stream.getvalue().decode("utf-8", "replace").strip().splitlines()
    last = progress[-1].strip() if progress else ""
    if last and last not in detail:
        detail = f"{detail}（{last}）"
    return detail[:300]


def _as_priority(value: Any, default: int = 0) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _by_priority(entries: Any = None) -> SortedDict:
    """Plugin classes by upper-case name, highest priority first; ties by name, Z to A
    (the original's order, which plugins iterating ``PluginManager().plugins`` see)."""
    return SortedDict(lambda name, plugincls: plugincls.priority, entries, reverse=True)


# Import names whose pip package has another name (the ones plugins commonly use).
_PIP_NAMES = {
    "PIL": "Pillow",
    "yaml": "PyYAML",
    "bs4": "beautifulsoup4",
    "cv2": "opencv-python",
    "dotenv": "python-dotenv",
    "dateutil": "python-dateutil",
    "docx": "python-docx",
    "pptx": "python-pptx",
    "Crypto": "pycryptodome",
    "sklearn": "scikit-learn",
    "fitz": "PyMuPDF",
    "jwt": "PyJWT",
    "websocket": "websocket-client",
    "lark_oapi": "lark-oapi",
    "aip": "baidu-aip",
    "google.generativeai": "google-generativeai",
}
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _log_plugin_failure(what: str, error: BaseException) -> None:
    """One line when a package is missing (saying what to install), else the traceback.
    Called from the `except` block that caught `error`."""
    missing = _missing_package(error)
    if missing:
        logger.error(f"{what}: {missing}")
    else:
        logger.exception(f"{what}: {error}")


def _missing_package(error: BaseException) -> str | None:
    """For an import of a module that is not installed, one line naming it and the
    pip command; None for any other error (which deserves its traceback)."""
    if not isinstance(error, ModuleNotFoundError) or not error.name:
        return None
    top = error.name.split(".")[0]
    if os.path.exists(os.path.join(_PROJECT_ROOT, top)) or os.path.exists(os.path.join(_PROJECT_ROOT, top + ".py")):
        # A module of this program that is not there (e.g. a channel it does not have).
        return f"it imports {error.name}, which this program does not have ({error})"
    package = _PIP_NAMES.get(error.name) or _PIP_NAMES.get(top) or top
    return f"it needs the Python package '{package}', which is not installed: pip install {package}"


def _module_tree(import_path: str) -> list[str]:
    prefix = import_path + "."
    return [n for n in list(sys.modules) if n == import_path or n.startswith(prefix)]


def _git_missing(verb: str) -> str | None:
    """None when dulwich (the git client) can be imported, else the answer to the admin."""
    from common import package_manager as pkgmgr

    try:
        pkgmgr.check_dulwich()
    except ImportError as e:
        logger.error(f"[PluginManager] cannot {'install' if verb == '安装' else 'update'} plugins: {e}")
        return f"无法导入 dulwich，不能{verb}插件"
    return None


class PluginManager:
    """The one plugin manager (``PluginManager()`` always returns the same object)."""

    _instance: "PluginManager | None" = None
    _instance_lock = threading.Lock()
    # One install / update / uninstall at a time. Separate from _lock: a clone or a pip
    # run takes a while, and scanning or enabling plugins must not wait for it.
    _install_lock = threading.Lock()

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
        self.plugins: SortedDict = _by_priority()
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
                    manager._unload(module)
                if manager._extra_dir and manager._extra_dir in package.__path__:
                    package.__path__.remove(manager._extra_dir)
                manager._init_state()

    # ------------------------------------------------------------------ folders

    def _package(self) -> ModuleType:
        return sys.modules[__package__]

    def _unload(self, module: ModuleType) -> None:
        """Forget an imported plugin module, so a later scan imports its code afresh."""
        for name in _module_tree(module.__name__):
            sys.modules.pop(name, None)
        short = module.__name__.rpartition(".")[2]
        package = self._package()
        if getattr(package, short, None) is module:
            delattr(package, short)

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

    def reserved_folder_names(self) -> frozenset[str]:
        """Lower-case names a plugin folder must not have: it is imported as
        ``plugins.<folder>``, so a folder named like a module of the package (chat_bot)
        would be imported in its place (Python prefers a package folder to a module file),
        and one named like anything the package defines (register, instance) would be bound
        over it on import. Derived from the package's files and names, so a module added
        later is covered too; lower case because Windows and macOS ignore letter case."""
        names = set(_RESERVED_FOLDERS)
        suffixes = tuple(importlib.machinery.all_suffixes())
        try:
            entries = os.listdir(self._package_dir)
        except OSError:
            entries = []
        for entry in entries:
            if entry.endswith(suffixes) and os.path.isfile(os.path.join(self._package_dir, entry)):
                names.add(entry.split(".", 1)[0])
        plugin_modules = {module.__name__ for module in self.loaded.values()}
        for attr, value in vars(self._package()).items():
            # Plugin folders already imported are attributes too; they are not reserved.
            if not (isinstance(value, ModuleType) and value.__name__ in plugin_modules):
                names.add(attr)
        return frozenset(name.lower() for name in names)

    def _bundled_folder(self, folder: str) -> bool:
        """A plugin folder shipped with the program: in the package folder and not cloned
        by #installp (which leaves a .git there)."""
        folder = os.path.abspath(folder)
        in_package = os.path.normcase(os.path.dirname(folder)) == os.path.normcase(self._package_dir)
        return in_package and not os.path.exists(os.path.join(folder, ".git"))

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
            # Sorting compares priorities: one that is no number ("10", None) must not stop
            # every plugin from loading.
            plugincls.priority = _as_priority(desire_priority)
            if plugincls.priority != desire_priority:
                logger.warning(f"[PluginManager] {name}: desire_priority {desire_priority!r} is no whole number, "
                               f"using {plugincls.priority}")
            plugincls.desc = kwargs.get("desc")
            plugincls.author = kwargs.get("author")
            # The folder of the module defining the class; the folder being scanned only when
            # the class lives elsewhere (a plugin importing another plugin must not steal it).
            plugincls.path = self._folder_of_module(plugincls.__module__) or self.current_plugin_path
            plugincls.version = kwargs.get("version") if kwargs.get("version") is not None else "1.0"
            plugincls.namecn = kwargs.get("namecn") if kwargs.get("namecn") is not None else name
            plugincls.hidden = kwargs.get("hidden") if kwargs.get("hidden") is not None else False
            plugincls.enabled = kwargs.get("enabled") if kwargs.get("enabled") is not None else True
            self._pending[name.upper()] = plugincls  # set with current_plugin_path, checked above
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
            _log_plugin_failure(f"[PluginManager] plugin folder {dirname} cannot be imported, skipped", e)
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
        plugins = _by_priority(self.plugins.items())
        for name, plugincls in pending.items():
            # Apply plugins.json before publishing: emit_event must not see a plugin the
            # user disabled as enabled, even while the rest of the scan runs.
            key = self._pconf_key(plugincls.name)
            entry = self.pconf["plugins"].get(key) if key else None
            if isinstance(entry, dict) and isinstance(entry.get("enabled"), bool):
                plugincls.enabled = entry["enabled"]
            previous = plugins.get(name)
            if previous is not None and previous.path != plugincls.path:
                if self._bundled_folder(previous.path) and not self._bundled_folder(plugincls.path):
                    # A bundled plugin (godcmd holds the admin rights) is never replaced by
                    # another folder's plugin that takes its name.
                    logger.error(
                        f"[PluginManager] plugin folder {plugincls.path} registers the name {plugincls.name}, which "
                        f"belongs to the bundled plugin in {previous.path}: refused, the bundled one stays"
                    )
                    continue
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
            reserved = self.reserved_folder_names()
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
                    if dirname.lower() in reserved:
                        logger.error(
                            f"[PluginManager] plugin folder {plugin_path} is skipped: plugins.{dirname} is a name "
                            f"of this program's plugins package; rename the folder"
                        )
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
        """Sort plugins and listeners by priority, highest first (ties by name, Z to A)."""
        with self._lock:
            plugins = _by_priority(self.plugins.items())
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
                    # As in the original: the plugin is disabled, in plugins.json too, so
                    # #plist shows it off and #enablep retries it once its cause is fixed.
                    _log_plugin_failure(f"[PluginManager] plugin {name} failed to start and is disabled", e)
                    plugincls.enabled = False
                    entry = self._pconf_entry(plugincls)
                    if entry.get("enabled") is not False:
                        entry["enabled"] = False
                        self.save_config()
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
            logger.debug("[PluginManager] %s -> %s", e_context.event, name)
            try:
                handler(e_context, *args, **kwargs)
            except Exception as e:
                logger.exception(f"[PluginManager] plugin {name} failed on {e_context.event}, skipped: {e}")
                e_context.action = EventAction.CONTINUE
                continue
            if e_context.is_break():
                e_context["breaked_by"] = name
                logger.debug("[PluginManager] %s ended the chain of %s (%s)", name, e_context.event, e_context.action)
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

    # ---------------------------------------------- install / update / uninstall

    def plugin_sources(self) -> dict[str, dict]:
        """Named repositories ``#installp <name>`` accepts: plugins/source.json, then a
        source.json in the configured plugins folder (its entries win)."""
        sources: dict[str, dict] = {}
        for folder in dict.fromkeys([self._package_dir, self.config_dir()]):
            path = os.path.join(folder, SOURCE_FILE)
            if not os.path.isfile(path):
                continue
            try:
                data = _read_json(path)
                repos = data.get("repo") if isinstance(data, dict) else None
                if not isinstance(repos, dict):
                    raise ValueError('expected {"repo": {name: {"url": ..., "desc": ...}}}')
            except (OSError, ValueError) as e:
                logger.error(f"[PluginManager] cannot read {path}: {e}")
                continue
            for name, entry in repos.items():
                if isinstance(entry, dict) and isinstance(entry.get("url"), str):
                    sources[name] = entry
        return sources

    def _resolve_install_source(self, repo: str) -> tuple[str, str, bool]:
        """(what to clone, plugin folder name, is a local path) for ``#installp <repo>``."""
        source = repo.strip()
        if not source:
            raise InstallRefused("请提供仓库地址或插件名")
        if source.startswith("-"):
            raise InstallRefused("仓库地址不能以“-”开头")
        if _has_control_or_space(source):
            raise InstallRefused("仓库地址里不能有空格或控制字符")
        allow_local = bool(conf().get("plugin_install_allow_local", False))
        refuse_local = InstallRefused("不允许从本地路径安装插件（需开启设置 plugin_install_allow_local）")
        if "://" in source or _SCP_LIKE.match(source):
            if source.lower().startswith("file://"):
                if not allow_local:
                    raise refuse_local
                local = _local_source(source)
                if local is None:
                    raise InstallRefused("本地仓库不存在")
                return local[0], local[1], True
            return source, _check_remote_url(source), False
        sources = self.plugin_sources()
        key = source if source in sources else next((k for k in sources if k.lower() == source.lower()), None)
        if key is not None:
            url = sources[key]["url"].strip()
            try:
                return url, _check_remote_url(url), False
            except InstallRefused as e:
                raise InstallRefused(f"source.json 中 {key} 的地址不可用：{e}") from None
        if allow_local:
            local = _local_source(source)
            if local is not None:
                return local[0], local[1], True
        elif os.path.isabs(source) or source.startswith((".", "~")) or os.path.isdir(source):
            raise refuse_local
        raise InstallRefused("这既不是 https/ssh 的 git 仓库地址，也不是 source.json 里的插件名")

    def _folder_taken(self, folder_name: str) -> str | None:
        """The existing folder a new plugin folder would clash with (any letter case:
        Windows and macOS file systems ignore it)."""
        wanted = folder_name.lower()
        for root in dict.fromkeys([self._package_dir, self.config_dir()]):
            try:
                names = os.listdir(root)
            except OSError:
                continue
            for name in names:
                if name.lower() == wanted:
                    return os.path.join(root, name)
        return None

    @staticmethod
    def _clean_stale_staging(root: str) -> None:
        # What an install killed half-way (power cut, kill -9) left behind.
        try:
            names = os.listdir(root)
        except OSError:
            return
        for name in names:
            path = os.path.join(root, name)
            if not name.startswith(_STAGING_PREFIX) or not os.path.isdir(path):
                continue
            try:
                if time.time() - os.path.getmtime(path) > _STALE_STAGING_SECONDS:
                    logger.info(f"[PluginManager] removing an abandoned install folder {path}")
                    _rmtree(path)
            except OSError as e:
                logger.warning(f"[PluginManager] cannot remove {path}: {e}")

    def install_plugin(self, repo: str) -> tuple[bool, str]:
        """Install a plugin from a git repository (``#installp``). Returns (ok, message).

        ``repo``: an https or ssh git URL, a name from source.json, or, with the setting
        ``plugin_install_allow_local``, a local folder or file:// URL. The repository is
        cloned into a staging folder, must have an ``__init__.py`` at its top, and its
        requirements.txt is installed with pip; only then is it renamed into the plugins
        folder. A failure at any step leaves nothing behind. The plugin is not loaded:
        ``#scanp`` does that (time to look at its settings first).
        """
        refused = _git_missing("安装")
        if refused is not None:
            return False, refused
        from common import package_manager as pkgmgr
        try:
            source, folder_name, is_local = self._resolve_install_source(str(repo or ""))
        except InstallRefused as e:
            return False, f"安装失败：{e}"
        if not _FOLDER_NAME.match(folder_name):
            return False, (
                f"安装失败：仓库名“{folder_name}”不能用作插件文件夹名"
                "（只能用字母、数字、_ 和 -，且不能以数字开头）"
            )
        if folder_name.lower() in self.reserved_folder_names():
            return False, (
                f"安装失败：仓库名“{folder_name}”不能用作插件文件夹名："
                f"plugins.{folder_name} 是本程序自己的模块或名字，会被它遮蔽"
            )
        if not self._install_lock.acquire(blocking=False):
            return False, "正在安装或更新另一个插件，请稍后再试"
        try:
            return self._install(source, folder_name, is_local, pkgmgr)
        finally:
            self._install_lock.release()

    def _install(self, source: str, folder_name: str, is_local: bool, pkgmgr: ModuleType) -> tuple[bool, str]:
        root = self.config_dir()
        final = os.path.join(root, folder_name)
        taken = self._folder_taken(folder_name)
        if taken:
            return False, f"安装失败：插件文件夹 {folder_name} 已存在（{taken}）。更新请用 #updatep，重装请先 #uninstallp"
        self._clean_stale_staging(root)
        try:
            staging = tempfile.mkdtemp(prefix=_STAGING_PREFIX, dir=root)
        except OSError as e:
            logger.error(f"[PluginManager] cannot create a staging folder in {root}: {e}")
            return False, f"安装失败：插件目录不可写（{e}）"
        shown = source if is_local else _safe_for_log(source)
        logger.info(f"[PluginManager] installing a plugin from {shown} into {final}")
        try:
            checkout = os.path.join(staging, folder_name)
            progress = io.BytesIO()
            try:
                from dulwich import porcelain

                config = _git_config_with_timeout()
                porcelain.clone(source, checkout, checkout=True, errstream=progress, config=config,
                                pool_manager=_https_only_pool_manager(config))
            except Exception as e:
                logger.exception(f"[PluginManager] cloning {shown} failed")
                return False, f"安装失败：无法克隆仓库：{_git_error(e, progress)}"
            if not os.path.isfile(os.path.join(checkout, "__init__.py")):
                return False, "安装失败：仓库根目录没有 __init__.py，这不是本程序的插件"
            _remember_timeout(checkout)
            try:
                pkgmgr.install_requirements(os.path.join(checkout, "requirements.txt"))
            except pkgmgr.PackageInstallError as e:
                return False, f"安装失败：{e}"
            if os.path.lexists(final):  # appeared meanwhile (another process)
                return False, f"安装失败：插件文件夹 {folder_name} 已存在"
            try:
                os.rename(checkout, final)
            except OSError as e:
                logger.error(f"[PluginManager] cannot move {checkout} to {final}: {e}")
                return False, f"安装失败：无法放入插件目录（{e}）"
        finally:
            try:
                _rmtree(staging)
            except OSError as e:
                logger.error(f"[PluginManager] cannot remove the staging folder {staging}: {e}")
        logger.info(f"[PluginManager] plugin folder {folder_name} installed from {shown}")
        return True, f"插件 {folder_name} 已安装。发送 #scanp 加载它（启用前请先看看它是否需要配置）"

    def update_plugin(self, name: str) -> tuple[bool, str]:
        """Pull the latest version of a plugin installed with git (``#updatep``), then
        install its requirements; if they fail, the folder goes back to the old version.
        The new code runs after ``#scanp`` (or a restart)."""
        refused = _git_missing("更新")
        if refused is not None:
            return False, refused
        from common import package_manager as pkgmgr
        key = str(name or "").upper()
        plugincls = self.plugins.get(key)
        if plugincls is None:
            return False, "插件不存在"
        if key in BUILTIN_PLUGINS:
            return False, "预置插件随主程序一起更新，不能单独更新"
        folder = plugincls.path
        if not os.path.isdir(os.path.join(folder, ".git")):
            return False, f"插件 {plugincls.name} 不是用 git 安装的，无法更新"
        if not self._install_lock.acquire(blocking=False):
            return False, "正在安装或更新另一个插件，请稍后再试"
        try:
            from dulwich import porcelain
            from dulwich.repo import Repo

            with Repo(folder) as r:
                old_head = r.head()
                pool_manager = _https_only_pool_manager(r.get_config_stack())
            progress = io.BytesIO()
            try:
                porcelain.pull(folder, outstream=progress, errstream=progress, pool_manager=pool_manager)
            except Exception as e:
                logger.exception(f"[PluginManager] pulling {folder} failed")
                return False, f"更新失败：{_git_error(e, progress)}"
            with Repo(folder) as r:
                new_head = r.head()
            if new_head == old_head:
                return True, f"插件 {plugincls.name} 已是最新版本"
            try:
                pkgmgr.install_requirements(os.path.join(folder, "requirements.txt"))
            except pkgmgr.PackageInstallError as e:
                try:
                    porcelain.reset(folder, "hard", old_head)
                    return False, f"更新失败，已退回原版本：{e}"
                except Exception as reset_error:
                    logger.exception(f"[PluginManager] cannot roll {folder} back to {old_head!r}")
                    return False, f"更新失败：{e}；退回原版本也失败了（{reset_error}）"
            logger.info(f"[PluginManager] plugin {plugincls.name} updated to {new_head.decode()}")
            return True, f"插件 {plugincls.name} 已更新，发送 #scanp 加载新版本（或重启程序）"
        except Exception as e:
            logger.exception(f"[PluginManager] updating {folder} failed")
            return False, f"更新失败：{e}"
        finally:
            self._install_lock.release()

    def uninstall_plugin(self, name: str) -> tuple[bool, str]:
        """Turn a plugin off, forget it (handlers, plugins.json entry, modules) and delete
        its folder (``#uninstallp``). Built-in plugins are refused: #disablep them."""
        key = str(name or "").upper()
        if not self._install_lock.acquire(blocking=False):
            return False, "正在安装或更新插件，请稍后再试"
        try:
            with self._lock:
                plugincls = self.plugins.get(key)
                if plugincls is None:
                    return False, "插件不存在"
                if key in BUILTIN_PLUGINS:
                    return False, "预置插件不能卸载，不需要时请用 #disablep 禁用"
                folder = os.path.abspath(plugincls.path)
                roots = {self._package_dir} | ({self._extra_dir} if self._extra_dir else set())
                if os.path.dirname(folder) not in roots or not os.path.isfile(os.path.join(folder, "__init__.py")):
                    logger.error(f"[PluginManager] {plugincls.name}: {folder} is not a plugin folder, not deleted")
                    return False, "卸载失败：找不到该插件的文件夹"
                self.disable_plugin(key)
                # Every plugin the folder registered goes with it.
                gone = [n for n, cls in self.plugins.items() if os.path.abspath(cls.path) == folder]
                plugins = _by_priority((n, cls) for n, cls in self.plugins.items() if n not in gone)
                instances = {n: inst for n, inst in self.instances.items() if n not in gone}
                self._publish(plugins=plugins, instances=instances, listening=self._listeners(plugins, instances))
                for n in gone:
                    entry_key = self._pconf_key(n)
                    if entry_key is not None:
                        del self.pconf["plugins"][entry_key]
                    remove_plugin_config(n)
                self.save_config()
                module = self.loaded.pop(folder, None) or self.loaded.pop(plugincls.path, None)
                if module is not None:
                    self._unload(module)
                try:
                    _rmtree(folder)
                except OSError as e:
                    logger.error(f"[PluginManager] cannot delete {folder}: {e}")
                    return False, f"插件已停用并移除，但删除文件夹失败，请手动删除 {folder}（{e}）"
                logger.info(f"[PluginManager] plugin {plugincls.name} uninstalled, {folder} deleted")
                return True, f"插件 {plugincls.name} 已卸载"
        finally:
            self._install_lock.release()
