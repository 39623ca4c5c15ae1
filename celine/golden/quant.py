"""Exact integer quantization shared by every golden model.

All functions take and return int64 tensors (or Python ints where noted) and implement
precisely what the hardware does: two's-complement wrap-around, arithmetic shifts,
round-half-up and saturation. No floating point is involved except in `quantize`, which
maps real values onto the integer grid, and `mult_shift`, which chooses the requantizer's
integer gain for a real ratio.
"""

import math
import numbers

import torch

from ..spec.numerics import MULT_BITS, SHIFT_BITS

MULT_MAX = (1 << MULT_BITS) - 1       # the requantizer's multiplier M: 0 .. 65535
SHIFT_MAX = (1 << SHIFT_BITS) - 1     # ... and its shift S: 0 .. 63


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


def mult_shift(ratio):
    """(mult, shift) with mult / 2^shift ~= ratio: the requantizer's gain for a real `ratio`.

    The most precise representation: the largest shift <= SHIFT_MAX (63) whose multiplier
    mult = round_half_up(ratio * 2^shift) fits MULT_BITS (<= 65535). Representable gains
    are 2^-64 <= ratio < 65535.5 (mult 1 at shift 63 .. mult 65535 at shift 0); anything
    else, and ratio <= 0 or not finite, raises ValueError.
    """
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real):
        raise TypeError(f"scale must be a real number, not {ratio!r}")
    if not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"scale must be a finite number above 0, not {ratio!r}")
    if not ratio < MULT_MAX + 0.5:
        raise ValueError(f"scale must be below {MULT_MAX + 0.5} (mult {MULT_MAX} at shift 0), "
                         f"not {ratio!r}")
    # ldexp is exact; round_half_up(ratio * 2^shift) grows with shift, so the first shift
    # from the top whose multiplier fits is the largest.
    for shift in range(SHIFT_MAX, -1, -1):
        mult = math.floor(math.ldexp(ratio, shift) + 0.5)
        if mult <= MULT_MAX:
            break
    if mult == 0:
        raise ValueError(f"scale must be at least 2^-{SHIFT_MAX + 1} (mult 1 at shift "
                         f"{SHIFT_MAX}), not {ratio!r}")
    return mult, shift
