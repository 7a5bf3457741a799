# The one price -> ticks rule of lowlat, cimported by the Validator (lowlat._core) and the book's FlatBuffer path
# (lowlat._book: apply_frames, to_ticks).  A .pxd of inline functions: it compiles into each user, no module.
#
# The rule (user-visible through the Validator's reject codes and lowlat.to_ticks; tests/property/test_price_rule.py
# checks every path against a plain-Python copy of it):
#   BAD_PRICE  the price is not a finite number > 0 (NaN, +-inf, 0, -0, negative), or its tick count
#              t = price / tick_size is not below 2**63 (out of the int64 tick range; inf after an overflowing
#              division included);
#   OFF_TICK   t is not within 1e-6 of a whole number >= 1 (a positive price under half a tick rounds to 0
#              ticks: not a positive multiple of the tick);
#   otherwise  ACCEPTED, ticks = t rounded to the nearest integer (ties to even).
# The 1e-6 tick tolerance absorbs the binary rounding of decimal prices (100.01 / 0.01 = 10000.999999999998).
# From 2**52 ticks up every double is a whole number, so any such t below 2**63 is a whole number of ticks.
# tick_size is checked (finite, > 0) where it enters (InstrumentRules, Book); a bad one gives BAD_PRICE here.
from lowlat._types cimport price_t, reject_t, REJ_ACCEPTED, REJ_BAD_PRICE, REJ_OFF_TICK

cdef extern from *:
    """
    /* 2**52 and 2**63 as doubles.  The magic-number rounding in price_to_ticks needs strict IEEE double
     * arithmetic (SSE2 on x86-64, no -ffast-math), which is how setup.py builds. */
    #define LL_TWO52 4503599627370496.0
    #define LL_TWO63 9223372036854775808.0
    """
    const double LL_TWO52
    const double LL_TWO63


cdef inline reject_t price_to_ticks(double price, double tick_size, price_t* out) noexcept nogil:
    # out[0] is written only on ACCEPTED.  Cost: one division, no libm call.
    cdef double t, rt
    # x - x is 0 for a finite x and NaN for +-inf (and NaN fails every comparison): no libm isfinite call
    if not (price > 0.0) or price - price != 0.0:
        return REJ_BAD_PRICE
    if not (tick_size > 0.0) or tick_size - tick_size != 0.0:
        return REJ_BAD_PRICE
    t = price / tick_size
    if not (t < LL_TWO63):
        return REJ_BAD_PRICE
    # 0 <= t < 2**52: (t + 2**52) - 2**52 is t rounded to an integer, ties to even (the sum's ulp is 1).
    rt = (t + LL_TWO52) - LL_TWO52 if t < LL_TWO52 else t
    if rt < 1.0 or t - rt > 1e-6 or rt - t > 1e-6:
        return REJ_OFF_TICK
    out[0] = <price_t>rt
    return REJ_ACCEPTED
