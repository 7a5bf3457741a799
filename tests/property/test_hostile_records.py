"""Hostile bytes into the Python-level parsers (journal records, book snapshots, transport meta frames):
truncated, mutated, oversized or random input raises ``lowlat.DecodeError`` and never anything else."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lowlat import COMMAND_DTYPE, Book, DecodeError, Engine
from lowlat.services.journal import decode_record, encode_record
from lowlat.services.snapshot import decode_snapshot, dump_engine, encode_snapshot
from lowlat.transport.base import decode_meta, encode_meta


def _record() -> bytes:
    rows = np.zeros(3, COMMAND_DTYPE)
    rows["oid"] = [1, 2, 3]
    return encode_record(rows, input_pos=7)


def _snapshot() -> bytes:
    eng = Engine()
    eng.add_book("AAPL", 9_000, 2_000, 1_000)
    book: Book = eng["AAPL"]
    book.submit(1, 0, 9_500, 10)
    book.submit(2, 1, 9_600, 5)
    return encode_snapshot(dump_engine(eng, journal_pos=3))


RECORD, SNAPSHOT = _record(), _snapshot()


def test_valid_inputs_round_trip():
    pos, rows = decode_record(RECORD)
    assert pos == 7 and list(rows["oid"]) == [1, 2, 3]
    assert decode_snapshot(SNAPSHOT).journal_pos == 3
    assert decode_meta(encode_meta("r.1", {"a": "b"})) == ("r.1", {"a": "b"})


@pytest.mark.parametrize("good,parse", [(RECORD, decode_record), (SNAPSHOT, decode_snapshot)])
def test_every_truncation_raises_decode_error(good, parse):
    for n in range(len(good)):
        with pytest.raises(DecodeError):
            parse(good[:n])


@pytest.mark.parametrize("good,parse", [(RECORD, decode_record), (SNAPSHOT, decode_snapshot)])
def test_oversized_raises_decode_error(good, parse):
    with pytest.raises(DecodeError):
        parse(good + b"\0" * 64)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_mutated_or_random_bytes_raise_decode_error_or_parse(data):
    which = data.draw(st.sampled_from(["record", "snapshot", "random"]))
    if which == "random":
        buf = data.draw(st.binary(max_size=512))
        parse = data.draw(st.sampled_from([decode_record, decode_snapshot, decode_meta]))
    else:
        good = bytearray(RECORD if which == "record" else SNAPSHOT)
        for _ in range(data.draw(st.integers(1, 4))):
            good[data.draw(st.integers(0, len(good) - 1))] = data.draw(st.integers(0, 255))
        buf, parse = bytes(good), (decode_record if which == "record" else decode_snapshot)
    try:
        parse(buf)  # a mutation outside checked bytes may still parse
    except DecodeError:
        pass  # the only exception allowed: anything else fails the test
