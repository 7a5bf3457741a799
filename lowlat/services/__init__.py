"""lowlat services: order validator, matching service, market-data consumer, load generator, metrics.

Run them from Python (``run_services(cfg, [ValidatorService(cfg), MatcherService(cfg)])``) or from the CLI
(``lowlat serve validator|matcher``, ``lowlat loadgen``, ``lowlat demo``).  Configuration: ``ServiceConfig`` /
``load_config`` (flags > ``LOWLAT_*`` env vars > TOML file > defaults).
"""

from __future__ import annotations

from typing import Any

from .config import DEFAULT_SYMBOLS, DEFAULT_TRANSPORT, ServiceConfig, load_config
from .marketdata import GapError, LocalBook, MarketDataConsumer, md_subjects
from .metrics import LatencyHistogram, Metrics, start_metrics_server
from .runtime import BatchService, RateLimiter, run_services, setup_logging

__all__ = [
    "DEFAULT_SYMBOLS",
    "DEFAULT_TRANSPORT",
    "BatchService",
    "DurableMatcher",
    "FileJournal",
    "GapError",
    "JetStreamJournal",
    "KafkaJournal",
    "LatencyHistogram",
    "LoadGenerator",
    "LoadResult",
    "LocalBook",
    "MarketDataConsumer",
    "MatcherService",
    "Metrics",
    "RateLimiter",
    "ServiceConfig",
    "SnapshotStore",
    "ValidatorService",
    "load_config",
    "md_subjects",
    "run_services",
    "setup_logging",
    "start_metrics_server",
]

_LAZY = {"ValidatorService": ".validator", "MatcherService": ".matcher", "LoadGenerator": ".loadgen",
         "LoadResult": ".loadgen", "DurableMatcher": ".journal", "FileJournal": ".journal",
         "JetStreamJournal": ".journal", "KafkaJournal": ".journal", "SnapshotStore": ".snapshot"}


def __getattr__(name: str) -> Any:
    # the compiled core is imported only when a service class is used (config/metrics work without it)
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(name)
    import importlib

    return getattr(importlib.import_module(mod, __name__), name)
