"""`/metrics` latency histograms, filled by a real code turn through the SDK."""

from __future__ import annotations

from tests.conftest import Server
from tests.live_helpers import SEED_PROMPT, ask, scrape, text_config

MODEL = "gemini-live-2.5-flash-preview"
HISTOGRAMS = (
    "time_to_first_content_seconds",
    "turn_duration_seconds",
    "code_execution_seconds",
    "sandbox_queue_wait_seconds",
)


async def test_a_code_turn_fills_every_latency_histogram(server: Server) -> None:
    before = scrape(server.url, server.ssl_context())
    async with server.client().aio.live.connect(model=MODEL, config=text_config()) as session:
        turn = await ask(session, SEED_PROMPT)
    after = scrape(server.url, server.ssl_context())
    assert len(turn.of("code")) == 1

    def delta(key: str) -> float:
        return after.get(key, 0) - before.get(key, 0)

    sums = {}
    for name in HISTOGRAMS:
        metric = f"openlive_{name}"
        assert delta(f"{metric}_count") == 1, name
        buckets = sorted(
            (float(key.split('le="')[1].rstrip('"}')), delta(key))
            for key in after
            if key.startswith(f"{metric}_bucket{{")
        )
        assert len(buckets) >= 10 and buckets[-1] == (float("inf"), 1), name
        counts = [count for _, count in buckets]
        assert counts == sorted(counts), name  # cumulative
        assert buckets[-2][1] == 1, name  # within the largest finite bucket (60 s), not only in +Inf
        sums[name] = delta(f"{metric}_sum")
    # Each measures a part of the one before it: first content and code run both lie inside the turn.
    assert 0 < sums["time_to_first_content_seconds"] < sums["turn_duration_seconds"]
    assert 0 < sums["code_execution_seconds"] < sums["turn_duration_seconds"]
    assert 0 <= sums["sandbox_queue_wait_seconds"] < sums["turn_duration_seconds"]
