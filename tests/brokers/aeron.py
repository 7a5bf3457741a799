"""aeron fixtures (owned by the aeron adapter work).  Export fixture names in __all__."""

__all__: list[str] = []
