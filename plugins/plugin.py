# encoding:utf-8
"""The base class every plugin extends.

``name``, ``path``, ``priority``, ``desc``, ``author``, ``version``, ``namecn``,
``hidden`` and ``enabled`` are class attributes set by ``@plugins.register``.
"""
from __future__ import annotations

import json
import os
from typing import Any

from common.log import logger
from common.utils import write_json_atomic as _write_json_atomic  # the name plugin_manager imports
from config import MAX_CONFIG_BYTES, conf, pconf, plugin_config, settings_for_log, shown, write_plugin_config

# The original's `from .plugin import *` handed these names to every plugin that does
# `from plugins import *`; plugins in the wild use them without importing them.
__all__ = ["Plugin", "os", "json", "conf", "pconf", "plugin_config", "logger"]

CONFIG_FILE = "config.json"


def _read_json(path: str) -> Any:
    """The JSON in `path`; ValueError when it is not UTF-8 JSON of sensible size and depth
    (callers handle a broken file; a traceback would stop start-up)."""
    with open(path, "rb") as f:
        raw = f.read(MAX_CONFIG_BYTES + 1)
    if len(raw) > MAX_CONFIG_BYTES:
        raise ValueError(f"the file holds more than {MAX_CONFIG_BYTES} bytes")
    # utf-8-sig: config files edited with Windows Notepad start with a BOM. A decoding
    # error is a ValueError too.
    text = raw.decode("utf-8-sig")
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("the JSON is nested too deeply") from None


class Plugin:
    def __init__(self):
        # Event -> callable(e_context, *args, **kwargs); read by PluginManager.activate_plugins.
        self.handlers = {}

    def load_config(self) -> dict | None:
        """This plugin's settings: the entry of plugins/config.json when there is one,
        else the plugin's own config.json (then cached for pconf()), else None."""
        plugin_conf = pconf(self.name)
        if not plugin_conf:
            path = getattr(self, "path", None)
            own_path = os.path.join(path, CONFIG_FILE) if path else None
            if own_path and os.path.exists(own_path):
                try:
                    plugin_conf = _read_json(own_path)
                except ValueError as e:
                    logger.error(f"[Plugin] {self.name}: {own_path} is not valid JSON: {e}")
                    raise
                write_plugin_config({self.name: plugin_conf})
        shown_conf = settings_for_log(plugin_conf) if isinstance(plugin_conf, dict) else shown(plugin_conf)
        logger.debug(f"[Plugin] {self.name} settings: {shown_conf}")
        return plugin_conf

    def save_config(self, config: dict) -> None:
        """Keep ``config`` in memory and on disk: in plugins/config.json when that file
        exists, and in the plugin's own config.json (atomic writes)."""
        try:
            write_plugin_config({self.name: config})
            wrote_global = self._save_global_entry(config)
            path = getattr(self, "path", None)
            if path:
                own_path = os.path.join(path, CONFIG_FILE)
                # The original wrote the own file only when it existed; with no global file
                # either, the settings lived in memory only and a restart lost them.
                if os.path.exists(own_path) or not wrote_global:
                    _write_json_atomic(own_path, config)
        except Exception as e:
            logger.warning(f"[Plugin] {self.name}: settings not saved: {e}")

    def _save_global_entry(self, config: dict) -> bool:
        from .plugin_manager import PluginManager

        global_path = PluginManager().global_plugin_config_path()
        if not os.path.exists(global_path):
            return False
        try:
            all_conf = _read_json(global_path)
        except ValueError as e:
            logger.error(f"[Plugin] {global_path} is not valid JSON, left untouched: {e}")
            return False
        if not isinstance(all_conf, dict):
            logger.error(f"[Plugin] {global_path} does not hold an object, left untouched")
            return False
        # Only this plugin's entry changes. The original dumped the whole in-memory cache,
        # which copied every plugin's own config.json into the shared file.
        key = next((k for k in all_conf if k.lower() == self.name.lower()), self.name)
        all_conf[key] = config
        _write_json_atomic(global_path, all_conf)
        return True

    def get_help_text(self, **kwargs) -> str:
        return "暂无帮助信息"

    def reload(self) -> None:
        pass
