"""Fixtures shared by the pipeline's integration tests."""
from __future__ import annotations

import pytest

from bridge.bridge import Bridge


@pytest.fixture
def gated(settings):
    """The GatedBot as the chat bot, its gate shut; the gate opens when the test ends."""
    from tests.fakes.gated_bot import GatedBot

    settings["bot_type"] = "tests.fakes.gated_bot:GatedBot"
    Bridge().reset_bot()
    GatedBot.gate.clear()
    GatedBot.reset_counts()
    yield GatedBot
    GatedBot.gate.set()
