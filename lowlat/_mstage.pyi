from collections.abc import Iterable
from typing import Any, final

import numpy as np
import numpy.typing as npt

from lowlat._batch import MessageBatch
from lowlat._book import Engine

@final
class MatchStage:
    max_payload: int
    n_in: int
    applied: int
    malformed: int
    oversized: int
    unknown_symbol: int
    early_rejects: int
    events: int
    exec_reports: int
    trades: int
    l2_updates: int
    rejects: int
    need_slots: int
    need_bytes: int
    def __init__(self, engine: Engine, read_models: Iterable[Any], *, exec_prefix: str = "exec",
                 md_prefix: str = "md", max_payload: int = 65536) -> None: ...
    def run(self, inb: MessageBatch, start: int, out: MessageBatch, now_ns: int) -> int: ...
    def encode_events(self, events: npt.NDArray[np.void], n: int, out: MessageBatch, now_ns: int) -> int: ...
    def max_message_bytes(self) -> int: ...
    def reject_counts(self) -> npt.NDArray[np.int64]: ...
