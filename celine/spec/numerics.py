"""Integer formats shared by every engine (docs/engines.md, "Numerics")."""

# The common requantizer y = clamp((x * M + 2^(S-1)) >> S): M unsigned, S a shift.
MULT_BITS = 16            # M: 0 .. 65535
SHIFT_BITS = 6            # S: 0 .. 63
REQUANT_LATENCY = 8       # register stages of rtl/common/requant.py's Requantizer

# Feedback masks of maximal-length Galois LFSRs (period 2^n - 1), by width; the RTL LFSR
# (rtl/common/lfsr.py) and its replay (golden/lfsr.py) both use these.
LFSR_TAPS = {8: 0xB8, 16: 0xB400, 24: 0xE10000, 32: 0xA3000000}

# Elements per stream beat of the 8-lane engines (one 64-bit word at int8).
LANES = 8
