"""What README.md says about flatc producers: a builder without forceDefaults(true) leaves a zero quantity out of the
buffer, so the validator reports MISSING_FIELD; with forceDefaults(true) the same order is BAD_QUANTITY."""

from reference.ref_validator import official_build_order

import lowlat
from lowlat import InstrumentRules, Reject, Validator

ORDER = {"id": 7, "symbol": "AAPL", "price": 100.0, "quantity": 0, "side": 0, "timestamp": 1}


def test_zero_quantity_from_a_flatc_builder_is_missing_unless_forced():
    v = Validator([InstrumentRules("AAPL", tick_size=0.01)])
    skipped = official_build_order(ORDER)
    forced = official_build_order(ORDER, force_defaults=True)
    assert "quantity" not in lowlat.decode_order(skipped).present
    assert v.validate(skipped) == Reject.MISSING_FIELD
    assert v.validate(forced) == Reject.BAD_QUANTITY
    assert v.validate(lowlat.encode_order(7, "AAPL", 100.0, 0, 0, 1)) == Reject.BAD_QUANTITY  # ours write zeros


def test_wire_compatible_not_byte_identical():
    """The same values, two different buffers, the same decoded fields: compare fields, never bytes."""
    ours = lowlat.encode_order(7, "AAPL", 100.0, 5, 0, 1)
    theirs = official_build_order({**ORDER, "quantity": 5}, force_defaults=True)
    assert ours != theirs and len(ours) < len(theirs)
    assert lowlat.read_order(ours) == lowlat.read_order(theirs)
