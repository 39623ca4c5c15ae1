"""The payloads and status fields of the SD decoder's streams (parser, rebuild, decoder).

Every width comes from the packed format (celine/golden/smartdeal/format.py) and the
common requantizer's widths (celine/spec/numerics.py); docs/smartdeal.md, "The SD
decoder", describes the beats.
"""

from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from ...golden.smartdeal import format as sd_format
from ...spec.numerics import SHIFT_BITS

__all__ = ["ERROR_FLAGS", "TOO_LARGE", "coefficient_layout", "row_layout", "row_beat_layout",
           "weight_beat_layout", "header_layout", "errors_layout", "WEIGHT_BITS",
           "BEAT_FLAGS"]

WEIGHT_BITS = 8             # the MAC array's int8 weight lanes

# The error flags: one per format.FormatError kind (the same cases as format.unpack), and
# `too_large`: a well-formed layer larger than the decoder's parameters (max_outputs,
# max_length, max_block_rows), which the engine reports apart (its Errors.SHAPE).
TOO_LARGE = "too_large"
ERROR_FLAGS = (*sd_format.ERRORS, TOO_LARGE)

# Flags of a beat (parser and rebuild alike): `first`: its first row is row 0 of a block;
# `end_block`: its last valid row is a block's last; `end_output`: ... an output's last
# (the last row of the output's last block); `last`: ... the layer's last.
BEAT_FLAGS = ("first", "end_block", "end_output", "last")


def coefficient_layout(exponent_bits):
    """One Ce entry: `nonzero`, `sign` (1: negative) and the shift `f` (0 .. 2^E - 1); the
    value is sign * 2^f when nonzero, else 0 (sign and f are then 0)."""
    return data.StructLayout({"nonzero": 1, "sign": 1, "f": unsigned(exponent_bits)})


def row_layout(exponent_bits):
    """One row of Ce: its BASIS coefficients, k = 0, 1, 2."""
    return data.ArrayLayout(coefficient_layout(exponent_bits), sd_format.BASIS)


def _flags():
    return {name: 1 for name in BEAT_FLAGS}


def row_beat_layout(exponent_bits, rows_per_cycle):
    """A beat of the parser: up to R rows of one block, `valid` (bit i: row i is a row of
    the layer; the valid rows are a prefix), the block's basis B (9 int8, B[k][j] at
    3k + j) and the flags (BEAT_FLAGS)."""
    return data.StructLayout({
        "rows": data.ArrayLayout(row_layout(exponent_bits), rows_per_cycle),
        "valid": unsigned(rows_per_cycle),
        "basis": data.ArrayLayout(signed(sd_format.BASIS_BITS), sd_format.BASIS_VALUES),
        **_flags(),
    })


def weight_beat_layout(rows_per_cycle):
    """A beat of rebuilt int8 weights: row i's weight j at 3i + j (3R weights), `valid`
    per row (a prefix) and the flags (BEAT_FLAGS) of the rows they came from."""
    return data.StructLayout({
        "weights": data.ArrayLayout(signed(WEIGHT_BITS), sd_format.BASIS * rows_per_cycle),
        "valid": unsigned(rows_per_cycle),
        **_flags(),
    })


def header_layout():
    """The header fields a consumer needs: kind (index into format.KINDS), outputs,
    length, block_rows, blocks_per_output and the weights' shift S_w (M_w is 1)."""
    size = unsigned(sd_format.LENGTH_BITS)
    return data.StructLayout({
        "kind": unsigned(1),
        "outputs": size,
        "length": size,
        "block_rows": size,
        "blocks_per_output": size,
        "weight_shift": unsigned(SHIFT_BITS),
    })


def errors_layout():
    """The sticky error flags, one bit per name of ERROR_FLAGS."""
    return data.StructLayout({name: 1 for name in ERROR_FLAGS})
