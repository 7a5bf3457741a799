from typing import Final, Literal, TypeAlias, final

from typing_extensions import disjoint_base

_IdleKind: TypeAlias = Literal["busy_spin", "yield", "sleep", "backoff"]

DEFAULT_MAX_SPINS: Final[int]
DEFAULT_MAX_YIELDS: Final[int]
DEFAULT_MIN_PARK_NS: Final[int]
DEFAULT_MAX_PARK_NS: Final[int]
SPIN: Final[int]
YIELD: Final[int]

@disjoint_base
class IdleStrategy:
    name: Final[_IdleKind]
    def idle(self, work_count: int = 0) -> None: ...
    def step(self, work_count: int = 0) -> int: ...
    def reset(self) -> None: ...

@final
class BusySpinIdle(IdleStrategy):
    def __init__(self) -> None: ...

@final
class YieldingIdle(IdleStrategy):
    def __init__(self) -> None: ...

@final
class SleepingIdle(IdleStrategy):
    def __init__(self, *, park_ns: int = 1000) -> None: ...
    park_ns: Final[int]

@final
class BackoffIdle(IdleStrategy):
    def __init__(
        self, *, max_spins: int = 10, max_yields: int = 5, min_park_ns: int = 1000, max_park_ns: int = 1000000
    ) -> None: ...
    max_spins: Final[int]
    max_yields: Final[int]
    min_park_ns: Final[int]
    max_park_ns: Final[int]

def idle_strategy(idle: IdleStrategy | _IdleKind | None = None) -> IdleStrategy: ...
