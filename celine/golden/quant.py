"""Exact integer quantization shared by every golden model.

All functions take and return int64 tensors (or Python ints where noted) and implement
precisely what the hardware does: two's-complement wrap-around, arithmetic shifts,
round-half-up and saturation. No floating point is involved except in `quantize`, which
maps real values onto the integer grid.
"""

import torch


def signed_range(bits):
    """The (lo, hi) range of a `bits`-wide two's-complement integer."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def signed_width(lo, hi):
    """The narrowest two's-complement width that holds every integer in [lo, hi]."""
    width = 1
    while not (-(1 << (width - 1)) <= lo and hi <= (1 << (width - 1)) - 1):
        width += 1
    return width


def wrap(x, bits):
    """Reduce `x` modulo 2**bits into the signed range, as a `bits`-wide register does.

    `bits` is an int or an int tensor broadcast against `x` (a width per element); widths
    of 64 leave values unchanged.
    """
    x = torch.as_tensor(x, dtype=torch.int64)
    bits = torch.as_tensor(bits, dtype=torch.int64)
    narrow = bits.clamp(max=63)
    one = torch.ones((), dtype=torch.int64)
    half = one << (narrow - 1)
    return torch.where(bits >= 64, x, ((x + half) & ((one << narrow) - 1)) - half)


def saturate(x, bits):
    lo, hi = signed_range(bits)
    return torch.clamp(torch.as_tensor(x, dtype=torch.int64), lo, hi)


def round_shift(x, shift):
    """Arithmetic right shift by `shift` with round-half-up: floor((x + 2^(shift-1)) / 2^shift)."""
    x = torch.as_tensor(x, dtype=torch.int64)
    if shift == 0:
        return x.clone()
    return (x + (1 << (shift - 1))) >> shift


def requantize(x, multiplier, shift, bits=8):
    """y = clamp((x * M + 2^(S-1)) >> S, lo, hi): the requantizer of docs/engines.md, "Numerics"."""
    return saturate(round_shift(torch.as_tensor(x, dtype=torch.int64) * multiplier, shift), bits)


def reduce_precision(x8, precision):
    """The p-bit operand derived from a stored 8-bit value (docs/mac.md).

    round_half_up(x / 2^(8-p)), saturated to p bits. Only the low 8 bits of `x8` are
    read, as the hardware does (values outside int8 wrap first).
    """
    if precision > 8:
        raise ValueError(f"precision must be at most 8 for a stored 8-bit operand, not {precision!r}")
    return saturate(round_shift(wrap(x8, 8), 8 - precision), precision)


def quantize(x, scale, bits=8):
    """Real values to `bits`-bit integers: clamp(round_half_up(x / scale))."""
    q = torch.floor(torch.as_tensor(x, dtype=torch.float64) / scale + 0.5).to(torch.int64)
    return saturate(q, bits)
