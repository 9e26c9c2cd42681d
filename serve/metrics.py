"""What the serving path counts, for Prometheus through Ray's metrics (ray.serve.metrics), so
that they appear beside Serve's own in the Ray dashboard's Metrics view and in Grafana
(serve/grafana/warmstart.json).

Each metric carries Serve's tags (application, deployment, replica) and these names; Ray's
exporter prefixes them with `ray_` (a Counter also ends in `_total`):

    warmstart_stage_seconds        Histogram  request latency of each stage (tag stage:
                                              context ... response, serve/pipeline.py STAGES)
    warmstart_requests             Counter    answered requests, by the user's blend segment
                                              (tag segment: new, few, known)
    warmstart_cold_start_share     Gauge      share of this replica's requests from users
                                              nothing is known of (segment new)
    warmstart_candidates           Counter    candidates found, by retrieval source (tag
                                              source: two_tower, item_item, interests, popular,
                                              demographic; a candidate found by two counts in
                                              both)
    warmstart_seen_dropped         Counter    candidates the seen-items filter dropped
    warmstart_degraded             Counter    answers or events with a store unavailable (tag
                                              cause: the stage or effect, e.g. seen_filter)
    warmstart_events               Counter    events ingested (tag event: view, click,
                                              purchase)
    warmstart_promotions           Counter    versions switched to (tag version)
    warmstart_model_version        Gauge      1 for the version this replica serves, 0 for
                                              the one it served before (tag version)

`NoMetrics` stands in outside Serve (tests, evaluation, plain uvicorn).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

STAGE_BUCKETS_S = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0]


class Metrics(Protocol):
    def request(self, segment: str, stages: Mapping[str, float], sources: Mapping[str, int],
                dropped: int, degraded: Sequence[str]) -> None: ...

    def event(self, kind: str, degraded: Sequence[str]) -> None: ...

    def version(self, version: str, previous: str | None) -> None: ...


class NoMetrics:
    def request(self, segment: str, stages: Mapping[str, float], sources: Mapping[str, int],
                dropped: int, degraded: Sequence[str]) -> None:
        return None

    def event(self, kind: str, degraded: Sequence[str]) -> None:
        return None

    def version(self, version: str, previous: str | None) -> None:
        return None


class ServeMetrics:
    """The metrics of one replica (create it inside the replica: Ray registers them with the
    worker's metrics agent)."""

    def __init__(self) -> None:
        from ray.serve import metrics as m

        self.stage = m.Histogram("warmstart_stage_seconds", "Request latency of each stage",
                                 boundaries=STAGE_BUCKETS_S, tag_keys=("stage",))
        self.requests = m.Counter("warmstart_requests", "Answered requests by blend segment",
                                  tag_keys=("segment",))
        self.cold_share = m.Gauge("warmstart_cold_start_share",
                                  "Share of requests from users nothing is known of")
        self.candidates = m.Counter("warmstart_candidates", "Candidates by retrieval source",
                                    tag_keys=("source",))
        self.dropped = m.Counter("warmstart_seen_dropped",
                                 "Candidates the seen-items filter dropped")
        self.degraded = m.Counter("warmstart_degraded",
                                  "Answers or events with a store unavailable",
                                  tag_keys=("cause",))
        self.events = m.Counter("warmstart_events", "Events ingested", tag_keys=("event",))
        self.promotions = m.Counter("warmstart_promotions", "Versions switched to",
                                    tag_keys=("version",))
        self.model = m.Gauge("warmstart_model_version", "1 for the version served",
                             tag_keys=("version",))
        self._segments: Counter[str] = Counter()

    def request(self, segment: str, stages: Mapping[str, float], sources: Mapping[str, int],
                dropped: int, degraded: Sequence[str]) -> None:
        for stage, seconds in stages.items():
            self.stage.observe(seconds, tags={"stage": stage})
        self.requests.inc(tags={"segment": segment})
        self._segments[segment] += 1
        self.cold_share.set(self._segments["new"] / sum(self._segments.values()))
        for source, n in sources.items():
            if n:
                self.candidates.inc(n, tags={"source": source})
        if dropped:
            self.dropped.inc(dropped)
        for cause in degraded:
            self.degraded.inc(tags={"cause": cause})

    def event(self, kind: str, degraded: Sequence[str]) -> None:
        self.events.inc(tags={"event": kind})
        for cause in degraded:
            self.degraded.inc(tags={"cause": cause})

    def version(self, version: str, previous: str | None) -> None:
        if previous is not None:
            self.model.set(0, tags={"version": previous})
            self.promotions.inc(tags={"version": version})
        self.model.set(1, tags={"version": version})


def open_metrics(enabled: bool) -> Any:
    """ServeMetrics inside a Serve replica, NoMetrics elsewhere."""
    return ServeMetrics() if enabled else NoMetrics()
