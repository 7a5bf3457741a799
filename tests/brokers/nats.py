"""nats fixtures (owned by the nats adapter work).  Export fixture names in __all__."""

__all__: list[str] = []
