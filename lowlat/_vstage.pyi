from typing import final

import numpy as np
import numpy.typing as npt

from lowlat._batch import MessageBatch
from lowlat._core import Validator

@final
class ValidateStage:
    publish_results: bool
    forward: bool
    max_payload: int
    n_in: int
    accepted: int
    rejected: int
    replies: int
    published: int
    forwarded: int
    malformed: int
    oversized: int
    dropped: int
    first_timestamp: int
    def __init__(self, validator: Validator, *, validated_subject: str = "orders.validated",
                 rejected_subject: str = "orders.rejected", match_prefix: str = "orders.match",
                 publish_results: bool = False, forward: bool = False, max_payload: int = 65536) -> None: ...
    def run(self, inb: MessageBatch, start: int, out: MessageBatch, now_ns: int) -> int: ...
    def out_size(self, inb: MessageBatch) -> tuple[int, int]: ...
    def reject_counts(self) -> npt.NDArray[np.int64]: ...
