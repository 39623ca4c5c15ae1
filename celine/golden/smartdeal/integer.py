"""Bit-exact integer models of the SD decoder and of the SD linear layer, both orders.

Notation (one layer, SmartDealWeights `sd`, E its exponent bits): block i has the int8
basis B_i (3 x 3) and, per row r of its m0 rows, three coefficients c[r][k] = s * 2^f
(s in {-1, 0, +1}, 0 <= f < 2^E). Everything below is exact integer arithmetic in int64;
the only rounding is the common requantizer (`quant.requantize`: arithmetic shift, round
half up, saturate), in the places named here, so that each hardware implementation is
bit-exact with its model.

Rebuild (the SD decoder, then the MAC array):
    w_int[r][j] = sum_k s_rk * (B[k][j] << f_rk)           exact, `rebuild_int`
    w8          = requantize(w_int, M_w, S_w) -> int8       `weights_int8` (M_w, S_w from
                                                            the packed header)
    acc[n][o]   = sum_i x[n][i] * w8[o][i] (+ bias[o])      exact, the MAC array
    y           = requantize(acc, M, S) -> int8             `linear_int`
Bit-op computing (Ce first, skipping zeros, then B; no weight is ever rebuilt):
    t[k][j]     = sum_r s_rk * (x[3r + j] << f_rk)          per block: shifts and adds of
                                                            activations
    acc[n][o]   = sum_blocks sum_{k,j} t[k][j] * B[k][j] (+ bias[o])
    y           = requantize(acc, M, S)                     `linear_bitop_int`
The bit-op accumulator equals x . w_int exactly (`linear_int(..., weights="wide")`): both
are the same sum of products reordered, with no rounding in between. It differs from the
rebuild path, whose weights are rounded to int8 before the MACs: the two paths need their
own output requantizers (`output_requantizer`).

Padding: each output's weights are rebuilt to 3 m0 (blocks per output) values; those past
the layer's length are dropped here (a decoder that feeds them to the MAC array must pair
them with zero activations: the same sum).
"""

import torch

from ..quant import mult_shift, requantize, signed_range, signed_width
from .format import BASIS, BASIS_BITS
from .hardware import SmartDealWeights

INT8_LO, INT8_HI = signed_range(8)
INT32_LO, INT32_HI = signed_range(32)
WEIGHTS = ("int8", "wide")


def _weights(sd):
    if isinstance(sd, SmartDealWeights):
        return sd
    return SmartDealWeights.from_packed(sd)


def _describe(value):
    if isinstance(value, torch.Tensor):
        return f"tensor of dtype {value.dtype} and shape {tuple(value.shape)}"
    return repr(value)


def shift_codes(ce):
    """(s, f) of integer Ce: the sign in {-1, 0, 1} and the shift (0 where c = 0)."""
    ce = torch.as_tensor(ce, dtype=torch.int64)
    magnitude = ce.abs()
    f = torch.where(magnitude > 0, torch.frexp(magnitude.to(torch.float64))[1] - 1, 0)
    return torch.sign(ce), f.to(torch.int64)


def rebuild_blocks_int(sd):
    """w_int of every block, (blocks, m0, 3) int64: sum_k s_rk * (B[k, :] << f_rk), by
    shifts and adds as the decoder does. `sd`: SmartDealWeights or packed words."""
    sd = _weights(sd)
    s, f = shift_codes(sd.ce)                                   # (blocks, m0, 3)
    basis = sd.basis.to(torch.int64)                            # (blocks, 3, 3)
    rebuilt = torch.zeros(sd.ce.shape, dtype=torch.int64)
    for k in range(BASIS):
        term = torch.bitwise_left_shift(basis[:, None, k, :], f[:, :, k, None])
        rebuilt += s[:, :, k, None] * term
    return rebuilt


def rebuild_int(sd):
    """The rebuilt weights w_int, (outputs, length) int64, exact (padding dropped)."""
    sd = _weights(sd)
    layout = sd.layout
    return rebuild_blocks_int(sd).reshape(layout.outputs, layout.padded)[:, :layout.length]


def weights_int8(sd):
    """The int8 weight lanes: requantize(w_int, M_w, S_w), (outputs, length) int64."""
    sd = _weights(sd)
    return requantize(rebuild_int(sd), sd.header.weight_mult, sd.header.weight_shift, 8)


def rebuilt_width(exponent_bits, block_rows=1):
    """Bits of w_int (block_rows=1), or of a bit-op partial sum t over `block_rows` rows of
    int8 activations: the two's-complement width no code or value can overflow."""
    largest = BASIS * (1 << BASIS_BITS - 1) * (1 << ((1 << exponent_bits) - 1)) \
        if block_rows == 1 else block_rows * (1 << 7) * (1 << ((1 << exponent_bits) - 1))
    return signed_width(-largest, largest)


def _check_x(x, length):
    if not isinstance(x, torch.Tensor) or x.is_floating_point() or x.is_complex() \
            or x.dtype == torch.bool or x.dim() != 2:
        raise TypeError(f"x must be a 2-d integer tensor (N, {length}), not {_describe(x)}")
    if x.shape[1] != length:
        raise ValueError(f"x must have {length} columns (the layer's inputs), "
                         f"not {x.shape[1]!r}")
    x = x.to(torch.int64)
    if x.numel() and not (INT8_LO <= int(x.min()) and int(x.max()) <= INT8_HI):
        bad = int(x.min()) if int(x.min()) < INT8_LO else int(x.max())
        raise ValueError(f"x entries must be between {INT8_LO} and {INT8_HI}, not {bad!r}")
    return x


def _finish(acc, bias, mult, shift, outputs):
    if bias is not None:
        bias = torch.as_tensor(bias)
        if bias.is_floating_point() or bias.shape != (outputs,):
            raise ValueError(f"bias must be {outputs} integers, not {_describe(bias)}")
        bias = bias.to(torch.int64)
        if bias.numel() and not (INT32_LO <= int(bias.min()) and int(bias.max()) <= INT32_HI):
            raise ValueError(f"bias entries must be int32, not {_describe(bias)}")
        acc = acc + bias
    if (mult is None) != (shift is None):
        raise ValueError(f"mult and shift must be given together, not {mult!r} and {shift!r}")
    return acc if mult is None else requantize(acc, mult, shift, 8)


def linear_int(x, sd, *, mult=None, shift=None, bias=None, weights="int8"):
    """The SD linear layer, rebuild-then-multiply: x (N, length) int8 -> (N, outputs).

    weights="int8": the MAC array's int8 weights (`weights_int8`); "wide": w_int itself.
    acc = x . w^T (+ bias, int32), exact; returned as is when mult and shift are None, else
    requantize(acc, mult, shift) to int8. `sd`: SmartDealWeights or packed words.
    """
    sd = _weights(sd)
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be 'int8' or 'wide', not {weights!r}")
    x = _check_x(x, sd.header.length)
    w = weights_int8(sd) if weights == "int8" else rebuild_int(sd)
    return _finish(x @ w.T, bias, mult, shift, sd.header.outputs)


def linear_bitop_int(x, sd, *, mult=None, shift=None, bias=None):
    """The SD linear layer, bit-op computing (module docstring): x . Ce by shifts and adds of
    activations, then . B; equal to linear_int(x, sd, weights="wide") exactly.

    Multiplying by c = s * 2^f is the shift s * (x << f): the same integer, computed here as
    a product so that whole batches run at once.
    """
    sd = _weights(sd)
    x = _check_x(x, sd.header.length)
    layout = sd.layout
    h = sd.header
    padded = torch.nn.functional.pad(x, (0, layout.padded - layout.length))
    rows = padded.reshape(len(x), h.blocks_per_output, h.block_rows, BASIS)   # x[3r + j]
    ce = sd.ce.reshape(h.outputs, h.blocks_per_output, h.block_rows, BASIS)
    basis = sd.basis.reshape(h.outputs, h.blocks_per_output, BASIS, BASIS).to(torch.int64)
    partial = torch.einsum("nbrj,obrk->nobkj", rows, ce)                   # t[k][j]
    acc = torch.einsum("nobkj,obkj->no", partial, basis)
    return _finish(acc, bias, mult, shift, h.outputs)


def output_requantizer(sd, x_scale, y_scale, *, weights="int8"):
    """(mult, shift) for int8 outputs of scale `y_scale` from int8 inputs of scale `x_scale`:
    M / 2^S ~ x_scale * w_scale / y_scale, w_scale the real value of one unit of the
    weights used (weight_scale for "int8", unit for "wide" and the bit-op path)."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be 'int8' or 'wide', not {weights!r}")
    scale = sd._scale("weight_scale" if weights == "int8" else "unit")
    return mult_shift(x_scale * scale / y_scale)
