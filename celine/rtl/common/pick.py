"""One bit of a wide vector, picked in two registered steps."""

from amaranth.hdl import Cat, Const, Signal

__all__ = ["GROUP", "picked_bit"]

# Bits a register holds between the two steps.
GROUP = 16


def picked_bit(m, bits, index, name):
    """bits[index] (0 for an index past the vector), one cycle after `index`: the group of
    GROUP bits that index's high bits pick goes into a register with its low bits, and the
    low bits pick the bit from it after that register. In one step a wide vector's
    multiplexer into a register is many levels after the index's net (a 256-to-1 pick was
    a build's worst path, a 2.8 ns net then 6 levels)."""
    low_bits = min(GROUP.bit_length() - 1, len(index))
    size = 1 << low_bits
    padded = Cat(bits, Const(0, -len(bits) % size))
    group = Signal(size, name=f"{name}_group")
    low = Signal(low_bits, name=f"{name}_low")
    m.d.sync += [low.eq(index[:low_bits]),
                 group.eq(padded.word_select(index[low_bits:], size)
                          if len(index) > low_bits else padded[:size])]
    return group.bit_select(low, 1)
