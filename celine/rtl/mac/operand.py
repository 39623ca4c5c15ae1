from amaranth.hdl import Mux

from ..common.compare import greater_than


def reduced(lane, p):
    """The operand a lane supplies at precision p (an integer).

    p <= 8: the lane's low 8 bits are a stored 8-bit value x; the operand is
    round_half_up(x / 2^(8-p)) saturated to p bits (golden/quant.py reduce_precision).
    p = 16: the whole 16-bit lane.
    """
    if p == 16:
        return lane
    x8 = lane[:8].as_signed()
    if p == 8:
        return x8
    shift = 8 - p
    half = 1 << (shift - 1)
    rounded = (x8 + half) >> shift
    hi = (1 << (p - 1)) - 1
    # rounded > hi exactly when x8 + half >= (hi + 1) << shift: a compare of x8 with a
    # constant beside the rounding add, as logic (common/compare.py), not a second carry
    # chain after it. Rounding never goes below -2^(p-1).
    saturates = greater_than(x8, ((hi + 1) << shift) - half - 1)
    return Mux(saturates, hi, rounded[:p].as_signed())

