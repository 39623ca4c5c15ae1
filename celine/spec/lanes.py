"""Lanes of signed integers packed into one word (lane 0 in the lowest bits): the layout
of every stream beat and buffer word (docs/protocol.md)."""

__all__ = ["pack_lanes", "unpack_lanes"]


def pack_lanes(values, width):
    """Lanes (lane 0 lowest) of `width`-bit two's complement into one integer."""
    word = 0
    for lane, value in enumerate(values):
        word |= (int(value) & ((1 << width) - 1)) << (lane * width)
    return word


def unpack_lanes(word, lanes, width):
    """Inverse of pack_lanes: signed lane values."""
    out = []
    for lane in range(lanes):
        value = (word >> (lane * width)) & ((1 << width) - 1)
        out.append(value - (1 << width) if value >> (width - 1) else value)
    return out
