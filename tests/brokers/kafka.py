"""kafka fixtures (owned by the kafka adapter work).  Export fixture names in __all__."""

__all__: list[str] = []
