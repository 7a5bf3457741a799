"""``read_l2_updates``: the ``L2Update`` messages of a received ``MessageBatch`` as columns, in one compiled pass
(no Python object per message), for the market-data consumer's batch apply (``LocalBook.apply_updates``).

A message that fails FlatBuffer verification (the checks of ``lowlat.decode_l2_update``) is skipped, so the
columns hold the well-formed deltas in arrival order and the caller counts ``batch.n - k`` as malformed.
"""

from libc.stdint cimport int8_t, uint32_t, uint64_t

from lowlat._batch cimport MessageBatch


def read_l2_updates(MessageBatch batch not None, uint64_t[::1] sequence not None, int8_t[::1] side not None,
                    double[::1] price not None, uint64_t[::1] quantity not None,
                    uint32_t[::1] order_count not None) -> int:
    """Decode every message of ``batch`` as an ``L2Update`` into rows ``0..k-1`` of the columns (in order,
    malformed ones left out) and return ``k``.

    Every column must have at least ``batch.n`` rows (``ValueError`` otherwise, before anything is written).
    Units: ``price`` in quote currency, ``quantity`` in lots (the level's new total), ``sequence`` the symbol's
    market-data sequence.  Cost: one nogil loop, ~10-20 ns per message.
    """
    cdef Py_ssize_t i, k = 0, n = batch.n
    cdef const unsigned char* base = batch.base_c()
    cdef FbL2Update o
    if (sequence.shape[0] < n or side.shape[0] < n or price.shape[0] < n or quantity.shape[0] < n
            or order_count.shape[0] < n):
        raise ValueError(f"read_l2_updates: every column needs {n} rows")
    with nogil:
        for i in range(n):
            if fb_read_l2_update(<const char*>(base + batch._poff[i]), batch._plen[i], &o):
                continue
            sequence[k] = o.sequence
            side[k] = o.side
            price[k] = o.price
            quantity[k] = o.quantity
            order_count[k] = o.order_count
            k += 1
    return k
