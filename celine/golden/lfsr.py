"""Bit-exact model of rtl/common/lfsr.py: a Galois LFSR and the uniform draw built on it."""

# Feedback masks of maximal-length Galois LFSRs (period 2^n - 1), by width.
from ..spec.numerics import LFSR_TAPS as TAPS


class LFSR:
    def __init__(self, *, width=16, seed=1):
        if width not in TAPS:
            raise ValueError(f"width must be one of {sorted(TAPS)}, not {width!r}")
        if not 0 < seed < (1 << width):
            raise ValueError(f"seed must be between 1 and {(1 << width) - 1}, not {seed!r}")
        self.width = width
        self.state = seed

    def step(self):
        lsb = self.state & 1
        self.state >>= 1
        if lsb:
            self.state ^= TAPS[self.width]
        return self.state

    def draw(self, n):
        """An index in [0, n): (state * n) >> width from the current state, then one step."""
        index = (self.state * n) >> self.width
        self.step()
        return index
