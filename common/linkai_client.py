"""The LinkAI remote-config client.

The original connects to LinkAI so the LinkAI console can push config changes
and messages into the running bot. This port does not ship that client; this
module keeps ``start`` so app.py's start-up sequence (and any plugin calling
it) works unchanged, and says clearly in the log why nothing happens.
"""
from __future__ import annotations

from typing import Any

from common.log import logger


def start(channel: Any) -> None:
    """Called in a thread at start-up; never raises, so start-up never stops here."""
    try:
        from config import conf

        config = conf()
        if not config.get("use_linkai", False) or not config.get("linkai_api_key", ""):
            logger.info("[LinkAI] client not started: use_linkai is off or linkai_api_key is empty")
            return
        logger.warning(
            "[LinkAI] the LinkAI remote-config client is not supported by this port: "
            "config and messages pushed from the LinkAI console are ignored"
        )
    except Exception:  # noqa: BLE001 - a side feature must not take the daemon down
        logger.exception("[LinkAI] client start failed")
