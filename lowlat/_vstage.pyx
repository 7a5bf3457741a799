"""``ValidateStage``: validate a received ``MessageBatch`` of orders and write every resulting message into an
output ``MessageBatch`` in one compiled call (no Python object per message).

For each order, in order, it writes (destination subject in the output message's ``reply`` field, so one
``Transport.publish_batch_to(out)`` sends everything):

- the ``ValidationResult`` to the order's reply subject, when it has one;
- the same result to ``validated_subject``/``rejected_subject`` when ``publish_results`` is on, and always for
  an order without a reply subject (pipelined use);
- an accepted order, unchanged, to ``<match_prefix>.<SYMBOL>`` when ``forward`` is on.

Bad input never stops the batch: a frame that fails FlatBuffer verification, or is longer than
``max_payload`` bytes, gets a MALFORMED result (order id 0, no symbol); a symbol that is not UTF-8 is left out
of its (UNKNOWN_SYMBOL) result.  A message whose outputs do not all fit in ``out`` (slots or arena) is not
started: ``run`` returns its index and the caller publishes, clears ``out`` and calls again from there
(nothing lost).  Only a message that cannot fit even an empty ``out`` is dropped, and counted (``dropped``).
"""

from cpython.mem cimport PyMem_RawFree, PyMem_RawMalloc
from libc.stdint cimport INT64_MAX, int64_t, uint8_t, uint64_t
from libc.string cimport memcpy

import numpy as np

from lowlat._batch cimport MessageBatch, check_stage_args
from lowlat._core cimport FbOrder, Validator, fb_read_order
from lowlat._encode cimport fb_build_validation_result, fb_validation_result_size
from lowlat._types cimport REJ_MALFORMED, REJ_UNKNOWN_SYMBOL, reject_t
from lowlat._utf8 cimport utf8_ok


cdef class ValidateStage:
    """The validator service's data plane for one ``Validator`` and one set of subjects.

    Cost: ~45-75 ns per order with the copies into ``out``, 1.2-1.9 x ``Validator.validate_many`` plus the
    result encoding on the same batch (benchmarks/bench_vstage.py).
    Counters (cumulative, ints): ``n_in``, ``accepted``, ``rejected``, ``replies``, ``published``,
    ``forwarded``, ``malformed``, ``oversized``, ``dropped``; ``reject_counts()`` by reason code;
    ``first_timestamp``: the ``timestamp`` (ns) of message 0 of the batch last run from ``start`` 0 (0 when
    unreadable), so a caller resuming a batch still sees its oldest order's.
    """

    def __cinit__(self, Validator validator not None, *, str validated_subject="orders.validated",
                  str rejected_subject="orders.rejected", str match_prefix="orders.match",
                  bint publish_results=False, bint forward=False, Py_ssize_t max_payload=65536):
        if max_payload < 1 or max_payload > (1 << 30):
            raise ValueError(f"max_payload must be in 1..2**30, got {max_payload}")
        self._v = validator
        self._validated = validated_subject.encode()
        self._rejected = rejected_subject.encode()
        self._prefix = (match_prefix + ".").encode()
        self.publish_results = publish_results
        self.forward = forward
        self.max_payload = max_payload
        # a result is 52 bytes + its symbol string; a forward subject is the prefix + the symbol
        self._scratch_len = max_payload + len(self._prefix) + 128
        self._scratch = <char*>PyMem_RawMalloc(self._scratch_len)
        if self._scratch == NULL:
            raise MemoryError()
        self._reasons_arr = np.zeros(256, dtype=np.int64)
        self._reasons = self._reasons_arr

    def __init__(self, Validator validator not None, *, str validated_subject="orders.validated",
                 str rejected_subject="orders.rejected", str match_prefix="orders.match",
                 bint publish_results=False, bint forward=False, Py_ssize_t max_payload=65536):
        pass  # everything happens in __cinit__

    def __dealloc__(self):
        PyMem_RawFree(self._scratch)

    cdef Py_ssize_t run_c(self, MessageBatch inb, Py_ssize_t start, MessageBatch out,
                          int64_t now_ns) except -1:
        cdef const unsigned char* base = inb.base_c()
        cdef const unsigned char* p
        cdef const unsigned char* rp
        cdef const char* sym
        cdef Py_ssize_t i, n, rlen, slen, rsize, need, n_out
        cdef Py_ssize_t lval = len(self._validated), lrej = len(self._rejected), lpre = len(self._prefix)
        cdef const char* val = self._validated
        cdef const char* rej = self._rejected
        cdef const char* pre = self._prefix
        cdef const char* dest
        cdef Py_ssize_t ldest
        cdef bint to_reply, to_pub, fwd
        cdef reject_t code
        cdef FbOrder o
        cdef uint64_t oid
        cdef char* scratch = self._scratch
        if start == 0:
            self.first_timestamp = 0
        for i in range(start, inb.n):
            p = base + inb._poff[i]
            n = inb._plen[i]
            rlen = inb._rlen[i]
            rp = base + inb._roff[i]
            if n > self.max_payload:
                code = REJ_MALFORMED
                self.oversized += 1
            elif fb_read_order(<const char*>p, n, &o):
                code = REJ_MALFORMED
            else:
                code = self._v.validate_order_c(&o)
                if i == 0 and o.timestamp <= <uint64_t>INT64_MAX:
                    self.first_timestamp = <int64_t>o.timestamp
            sym = NULL
            slen = -1
            oid = 0
            if code != REJ_MALFORMED:
                oid = o.id
                if o.symbol != NULL and (code != REJ_UNKNOWN_SYMBOL
                                         or utf8_ok(<const unsigned char*>o.symbol, o.symbol_len)):
                    sym = o.symbol
                    slen = o.symbol_len
            rsize = fb_validation_result_size(slen)
            to_reply = rlen > 0
            to_pub = self.publish_results or not to_reply
            fwd = self.forward and code == 0
            if code:
                dest, ldest = rej, lrej
            else:
                dest, ldest = val, lval
            n_out = 0
            need = 0
            if to_reply:
                n_out += 1
                need += rsize + rlen
            if to_pub:
                n_out += 1
                need += rsize + ldest
            if fwd:
                n_out += 1
                need += n + lpre + slen
            if out.n + n_out > out.capacity or need > out.arena_bytes - out.used:
                if out.n > 0:
                    return i                    # resume here with an empty output batch
                self.dropped += 1               # larger than the whole output batch: counted, not retried
                self.n_in += 1
                continue
            fb_build_validation_result(scratch, oid, code == 0, code, <uint64_t>now_ns, sym, slen)
            if to_reply:
                out.append_c(<const unsigned char*>scratch, rsize, NULL, 0, rp, rlen)
                self.replies += 1
            if to_pub:
                out.append_c(<const unsigned char*>scratch, rsize, NULL, 0, <const unsigned char*>dest, ldest)
                self.published += 1
            if fwd:
                memcpy(scratch, pre, lpre)
                memcpy(scratch + lpre, sym, slen)
                out.append_c(p, n, NULL, 0, <const unsigned char*>scratch, lpre + slen)
                self.forwarded += 1
            self.n_in += 1
            if code == 0:
                self.accepted += 1
            else:
                self.rejected += 1
                self._reasons[code] += 1
                if code == REJ_MALFORMED:
                    self.malformed += 1
        return inb.n

    def run(self, MessageBatch inb not None, Py_ssize_t start, MessageBatch out not None, int64_t now_ns) -> int:
        """Process ``inb`` from message ``start``; append outputs to ``out``; return the index of the first message
        not processed (``inb.n`` when done).  ``now_ns`` stamps every result (ns since the epoch)."""
        check_stage_args(inb, start, out)
        return self.run_c(inb, start, out, now_ns)

    def out_size(self, MessageBatch inb not None) -> tuple:
        """``(slots, arena_bytes)`` of an output batch for what ``run(inb, 0, out, now)`` writes: every output
        slot it can use, and the bytes when symbols are at most 16 bytes (a longer one can make the run stop
        early; the caller resumes in a fresh batch), plus room for the largest single message's outputs, so that
        no message is dropped.  One pass over the offsets, ~1-2 ns per message; much smaller than a bound from
        the payload sizes alone, and a fresh output batch costs time in proportion to its size."""
        cdef Py_ssize_t i, n = inb.n, slots = 0, nbytes = 0, one, worst = 0, plen, rlen
        cdef Py_ssize_t lsub = max(len(self._validated), len(self._rejected)), lpre = len(self._prefix)
        cdef Py_ssize_t r16 = fb_validation_result_size(16)
        cdef bint to_pub
        for i in range(n):
            plen = inb._plen[i]
            rlen = inb._rlen[i]
            to_pub = self.publish_results or rlen == 0
            slots += (rlen > 0) + to_pub + self.forward
            nbytes += (r16 + rlen if rlen > 0 else 0) + (r16 + lsub if to_pub else 0)
            if self.forward:
                nbytes += plen + lpre + 16
            # this message alone: its symbol is at most its payload (or absent when it is oversized, so MALFORMED)
            if plen > self.max_payload:
                one = 2 * fb_validation_result_size(-1) + rlen + lsub
            else:
                one = 2 * fb_validation_result_size(plen) + rlen + lsub + (2 * plen + lpre if self.forward else 0)
            if one > worst:
                worst = one
        return max(slots, 3), nbytes + worst

    def reject_counts(self):
        """A copy of the reject counts by ``Reject`` code (numpy int64[256], index = code)."""
        return self._reasons_arr.copy()
