# encoding:utf-8
"""CustomDifyApp: each group (or private chats) talks to its own Dify app.

Settings (the plugins/config.json entry "CustomDifyApp" (any case: the plugin's name,
not its folder's) or plugins/custom_dify_app/config.json) are a list of apps::

    [{"app_name": "...", "app_type": "chatbot", "api_base": "https://api.dify.ai/v1",
      "api_key": "app-...", "use_on_single_chat": false, "image_recognition": false,
      "group_name_keywords": ["售后", "客服"]}]

* Group message: the first app (in list order) with a ``group_name_keywords`` entry
  contained in the group name.
* Private message: the first app with ``use_on_single_chat`` true. ``single_chat`` is
  accepted as well: the original's template said ``use_on_single_chat`` while its code
  read ``single_chat``, so private routing never matched for anyone who followed the
  template.

The chosen app's ``app_type``, ``api_base``, ``api_key`` and ``image_recognition`` go
into the context as ``dify_app_type``, ``dify_api_base``, ``dify_api_key`` and
``image_recognition``, which the Dify bot prefers to the global settings. No match:
the context is left alone and the global Dify settings apply.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import plugins
from common.log import logger
from plugins import Event, EventContext, Plugin

APP_TYPES = ("chatbot", "chatflow", "agent", "workflow", "completion")
SINGLE_CHAT_KEYS = ("use_on_single_chat", "single_chat")


@dataclass(frozen=True)
class DifyAppConf:
    app_name: str
    app_type: str
    api_base: str
    api_key: str
    image_recognition: bool = False
    use_on_single_chat: bool = False
    group_name_keywords: tuple[str, ...] = ()

    @classmethod
    def parse(cls, index: int, entry: Any) -> "DifyAppConf | None":
        where = f"[CustomDifyApp] app #{index + 1}"
        if not isinstance(entry, dict):
            logger.error(f"{where} must be a JSON object; skipped")
            return None
        name = str(entry.get("app_name") or f"app #{index + 1}")
        api_key = entry.get("api_key")
        if not isinstance(api_key, str) or not api_key.strip():
            logger.error(f"[CustomDifyApp] {name}: api_key is missing; skipped")
            return None
        api_base = entry.get("api_base") or ""
        if not isinstance(api_base, str):
            logger.error(f"[CustomDifyApp] {name}: api_base must be a URL; skipped")
            return None
        app_type = str(entry.get("app_type") or "chatbot").strip().lower()
        if app_type not in APP_TYPES:
            logger.error(f"[CustomDifyApp] {name}: app_type must be one of {', '.join(APP_TYPES)}, got {app_type!r}; skipped")
            return None
        keywords = entry.get("group_name_keywords") or []
        if isinstance(keywords, str):
            keywords = [keywords]
        if not isinstance(keywords, list):
            logger.warning(f"[CustomDifyApp] {name}: group_name_keywords must be a list of texts; ignored")
            keywords = []
        if "group_name_list" in entry and not keywords:
            logger.warning(f"[CustomDifyApp] {name}: group_name_list is no longer read, use group_name_keywords")
        return cls(
            app_name=name,
            app_type=app_type,
            api_base=api_base.strip(),
            api_key=api_key.strip(),
            image_recognition=bool(entry.get("image_recognition", False)),
            use_on_single_chat=any(bool(entry.get(k)) for k in SINGLE_CHAT_KEYS),
            group_name_keywords=tuple(str(k) for k in keywords if isinstance(k, str) and k),
        )


@plugins.register(
    name="CustomDifyApp",
    desire_priority=0,
    hidden=True,
    enabled=True,
    desc="Chooses the Dify app by group name or for private chats",
    version="0.3",
    author="dify-on-wechat",
)
class CustomDifyApp(Plugin):
    # It gives chats their own Dify key and address: start-up then accepts empty global ones.
    SUPPLIES_BOT_SETTINGS = True

    def __init__(self):
        super().__init__()
        self.apps: list[DifyAppConf] = []
        try:
            config = self.load_config()
        except Exception as e:
            logger.error(f"[CustomDifyApp] cannot read the settings, plugin stays off: {e}")
            return
        if config is None:
            logger.info("[CustomDifyApp] no settings; plugin stays off")
            return
        if not isinstance(config, list):
            logger.error("[CustomDifyApp] settings must be a list of Dify apps; plugin stays off")
            return
        self.apps = [app for i, entry in enumerate(config) if (app := DifyAppConf.parse(i, entry)) is not None]
        if not self.apps:
            logger.warning("[CustomDifyApp] no usable app in the settings; plugin stays off")
            return
        self.handlers[Event.ON_HANDLE_CONTEXT] = self.on_handle_context
        logger.info(f"[CustomDifyApp] inited with apps: {', '.join(a.app_name for a in self.apps)}")

    def find_app(self, context) -> DifyAppConf | None:
        if context.get("isgroup", False):
            group_name = context.get("group_name") or getattr(context.get("msg"), "other_user_nickname", None) or ""
            for app in self.apps:
                if any(keyword in group_name for keyword in app.group_name_keywords):
                    return app
            return None
        return next((app for app in self.apps if app.use_on_single_chat), None)

    def on_handle_context(self, e_context: EventContext) -> None:
        context = e_context["context"]
        app = self.find_app(context)
        if app is None:
            return  # the global Dify settings apply; the chain goes on
        logger.debug(f"[CustomDifyApp] session {context.get('session_id')} uses Dify app {app.app_name}")
        context["dify_app_type"] = app.app_type
        context["dify_api_base"] = app.api_base
        context["dify_api_key"] = app.api_key
        context["image_recognition"] = app.image_recognition

    def get_help_text(self, **kwargs) -> str:
        return "按群名或私聊选择不同的 Dify 应用。\nChooses a Dify app per group name, or for private chats."
