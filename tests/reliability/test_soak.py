"""Soak: steady traffic with open SSE streams (and streams opened and closed around questions); RSS,
descriptors, threads and tmp/ stop growing after warm-up, and the state database grows by no more
than its bounded per-message records (dedup keys live for hours by design). bench/soak.py runs it as
long as asked, with file answers too, and prints the curves."""
from __future__ import annotations

import asyncio
import os

from tests.reliability.harness import Figures, WebApp, chaos_dify, growth_problems, soak

SECONDS = float(os.environ.get("RELIABILITY_SOAK_SECONDS", "45"))


def test_soak_resources_stop_growing(tmp_path):
    dify = chaos_dify(latency=0.05, error_rate=0.05, seed=31)
    app = WebApp(tmp_path, dify, plugins=()).start()
    try:
        samples, counts = asyncio.run(soak(app, SECONDS, users=30, sample_every=3.0))
    finally:
        app.stop()
        dify.stop()
    problems, figures = growth_problems(samples)
    Figures.add(f"soak {SECONDS:g} s", **counts, **figures)
    assert counts["unanswered"] == 0, counts
    assert not problems, problems
