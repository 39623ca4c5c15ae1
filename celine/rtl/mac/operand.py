from amaranth.hdl import Mux


def reduce_operand(lane, precision, params):
    """The operand a lane supplies at the runtime precision (an index into params.precisions).

    p <= 8: the lane's low 8 bits are a stored 8-bit value x; the operand is
    round_half_up(x / 2^(8-p)) saturated to p bits (golden/quant.py reduce_precision).
    p = 16: the whole 16-bit lane.
    """
    x8 = lane[:8].as_signed()
    value = 0
    for k, p in enumerate(params.precisions):
        if p == 16:
            reduced = lane
        elif p == 8:
            reduced = x8
        else:
            shift = 8 - p
            rounded = (x8 + (1 << (shift - 1))) >> shift
            hi = (1 << (p - 1)) - 1
            reduced = Mux(rounded > hi, hi, rounded)   # rounding never goes below -2^(p-1)
        value = Mux(precision == k, reduced, value)
    return value
