"""Comparisons of a value with a constant as plain logic, no carry chain; of two values
as one carry chain.

yosys maps `<` and `>` onto an ECP5 carry chain (CCU2C cells) even when one side is a
constant: a 10-bit compare is then five chained cells and the LUT after them, 15 logic
levels in nextpnr's count (a requantizer's clamp verdict, 8.9 ns, was a build's worst
path). With the constant's bits known, `value > c` is an AND/OR chain over the value's
bits, from the top: at a bit where c has a 1 the value must have it too and be greater
below; where c has a 0 a 1 in the value decides. ABC maps that chain onto a shallow
tree of LUTs.
"""

from amaranth.hdl import Const, Value

__all__ = ["exceeds", "greater_than", "less_than"]


def _unsigned_greater(bits, constant):
    """Whether the unsigned `bits` (a Value) exceed `constant` (0 <= constant < 2^n)."""
    result = Const(0)                          # below bit 0: equal, so not greater
    for k in range(len(bits)):
        if constant >> k & 1:
            result = bits[k] & result
        else:
            result = bits[k] | result
    return result


def greater_than(value, constant):
    """`value > constant` (value signed or unsigned, as its shape says), without an adder."""
    value = Value.cast(value)
    width, signed = len(value), value.shape().signed
    low = -(1 << (width - 1)) if signed else 0
    high = (1 << (width - 1)) - 1 if signed else (1 << width) - 1
    if constant < low:
        return Const(1)
    if constant >= high:
        return Const(0)
    if signed:
        # Offset binary: flipping the sign bit orders signed values as unsigned ones.
        bits = value.as_unsigned() ^ (1 << (width - 1))
        return _unsigned_greater(bits, constant + (1 << (width - 1)))
    return _unsigned_greater(value, constant)


def less_than(value, constant):
    """`value < constant`, without an adder."""
    return ~greater_than(value, constant - 1)


def exceeds(a, b):
    """`a > b` for two unsigned values, as the borrow of `b - a`: one subtraction, which
    yosys maps onto a carry chain whatever feeds it. As `>` with an operand picked by a
    multiplexer, yosys gave one a ripple of LUTs instead (eleven LUT levels in a
    read-modify-write loop, 9.2 ns, an engine build's worst path)."""
    a, b = Value.cast(a), Value.cast(b)
    if a.shape().signed or b.shape().signed:
        raise TypeError("exceeds compares unsigned values (bias signed ones first)")
    width = max(len(a), len(b))
    return (b - a)[width]
