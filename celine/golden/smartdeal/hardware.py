"""The hardware form of a decomposition: int8 B, Ce as codes in a fixed exponent window.

`quantize_decomposition` turns a float Decomposition into SmartDealWeights, what the packed
format holds (format.py) and the integer models compute with (integer.py):

1. Normalize. Ce B = (Ce 2^d)(B 2^-d) for any integer d, so the exponents of Ce can be
   shifted without changing the product; the whole layer is shifted by one d so that its
   largest exponent is the window's top, MAX_EXPONENT = 5 (the reference's clip). The
   window [e_min, 5] of 2^E exponents (E = exponent_bits) is thus relative to the layer's
   largest coefficient.
2. Window. A coefficient below 2^e_min after the shift becomes 0 (below="zero", the
   default: a smaller reconstruction error than clamping it to 2^e_min on the digits
   ViT, docs/smartdeal.md) or 2^e_min (below="clamp").
3. Refit B (refit=True, default): with Ce fixed, B = argmin ||Ce B - A|| per block, as
   the reference's final pass does (the window may have changed Ce).
4. Quantize B to int8 with one scale per layer: s_B = max|B| / 127, B_int =
   clamp(round_half_up(B / s_B)). One scale per layer, not per block: after step 1 the
   blocks' B have similar magnitudes, per-block scales reduce the error by 0.01-0.03% of
   itself on the digits ViT (docs/smartdeal.md), and one scale keeps the rebuilt weights
   of all blocks in one unit, so one requantizer serves the layer.
5. Ce in integer form: c = +-2^f, f = e - e_min in [0, 2^E - 1] (0 where Ce is 0). Then
   the rebuilt weights w_int = c B_int are exact integers in units of s_B 2^e_min, and
   w8 = requantize(w_int, 1, S) = round_half_up(w_int / 2^S) are the int8 weights the MAC
   array takes: the weight multiplier M_w is 1 and S the smallest shift that brings every
   |w_int| into the int8 range (`weight_shift`), so the int8 weights' scale is a power of
   two times the unit. Why M_w = 1: the SD decoder rebuilds and requantizes with shifts and
   adds only (no multiplier; issue 10: the decoder alone synthesizes to 0 MULT18X18D);
   the SD decoder Celine generates flags a layer with M_w != 1 as bad_header. The price:
   the largest rebuilt weight maps to 64..127 rather than exactly 127 (up to one bit of
   the int8 range unused); docs/smartdeal.md has the measured cost.
"""

import dataclasses
import math

import torch

from ..quant import quantize, signed_range
from .decomposition import Decomposition, Layout, RCOND, least_squares
from .format import (BASIS, BASIS_BITS, HARDWARE_WEIGHT_MULT, MAX_EXPONENT, WORD_BITS,
                     LayerHeader, min_exponent, pack, packed_words, unpack)

EXPONENT_BITS = 2           # the default exponent field: a window of 4 exponents [2, 5]
BELOW = ("zero", "clamp")
INT8_LO, INT8_HI = signed_range(8)
BASIS_HI = (1 << BASIS_BITS - 1) - 1


@dataclasses.dataclass(frozen=True, eq=False)
class SmartDealWeights:
    """A layer's weights in hardware form.

    header: the LayerHeader (shape, block rows, exponent bits, the weights' requantizer);
    shape: the weight's original shape; basis (blocks, 3, 3) int64 in [-127, 127] (-128 is
    valid in the format, never produced); ce (blocks, m0, 3) int64, each 0 or +-2^f with
    0 <= f < 2^E. unit: the real value of one unit of the rebuilt weights w_int (s_B *
    2^e_min); weight_scale: the real value of one unit of the int8 weights. Both are None
    for weights read back from a packed stream (which carries no scale).
    """
    header: LayerHeader
    shape: tuple
    basis: torch.Tensor
    ce: torch.Tensor
    unit: float | None = None
    weight_scale: float | None = None

    def __post_init__(self):
        if not isinstance(self.header, LayerHeader):
            raise TypeError(f"header must be a LayerHeader, not {self.header!r}")
        h = self.header
        for name, shape in (("basis", (h.blocks, BASIS, BASIS)),
                            ("ce", (h.blocks, h.block_rows, BASIS))):
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor) or value.is_floating_point() \
                    or value.is_complex() or value.dtype == torch.bool:
                raise TypeError(f"{name} must be an integer tensor, not {value!r}")
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, not {tuple(value.shape)}")
        if math.prod(self.shape) != h.outputs * h.length:
            raise ValueError(f"shape must hold {h.outputs} x {h.length} weights, "
                             f"not {self.shape!r}")

    def _scale(self, name):
        value = getattr(self, name)
        if value is None:
            raise ValueError(f"{name} is not known for weights read from a packed stream")
        return value

    @property
    def layout(self):
        h = self.header
        return Layout(self.shape, h.kind, h.outputs, h.length, h.padded, h.block_rows)

    @property
    def exponent_bits(self):
        return self.header.exponent_bits

    @property
    def nonzeros(self):
        return int((self.ce != 0).sum())

    @property
    def ce_sparsity(self):
        """The fraction of Ce entries that are 0 (padding rows included)."""
        return 1.0 - self.nonzeros / self.ce.numel()

    @property
    def packed_words(self):
        return packed_words(self.header, self.nonzeros)

    @property
    def bits_per_weight(self):
        """Packed bits (header, every B, every code and the padding) per weight of the
        original shape."""
        return self.packed_words * WORD_BITS / (self.header.outputs * self.header.length)

    def pack(self):
        """The packed words (format.pack)."""
        return pack(self.header, self.basis.tolist(), self.ce.tolist())

    @classmethod
    def from_packed(cls, words, shape=None):
        """SmartDealWeights from packed words (format.unpack; FormatError for a bad stream).
        shape defaults to (outputs, length), or (outputs, length / 9, 3, 3) for a 3x3 conv."""
        header, basis, ce = unpack(words)
        if shape is None:
            shape = (header.outputs, header.length) if header.kind == "linear" else \
                (header.outputs, header.length // (BASIS * BASIS), BASIS, BASIS)
        return cls(header, tuple(shape), torch.tensor(basis, dtype=torch.int64),
                   torch.tensor(ce, dtype=torch.int64))

    def float_weight(self):
        """The int8 weights as real values (weight_scale * w8), float64, original shape."""
        from .integer import weights_int8
        scale = self._scale("weight_scale")
        return weights_int8(self).to(torch.float64).reshape(self.shape) * scale

    def wide_weight(self):
        """The rebuilt weights before requantization as real values (unit * w_int)."""
        from .integer import rebuild_int
        unit = self._scale("unit")
        return rebuild_int(self).to(torch.float64).reshape(self.shape) * unit


def weight_shift(largest):
    """S: the smallest shift with round_half_up(largest / 2^S) <= 127, i.e. every rebuilt
    weight of magnitude at most `largest` requantized (M_w = 1) into the int8 range
    without saturation (module docstring, step 5). 0 for largest <= 127."""
    if isinstance(largest, bool) or not isinstance(largest, int) or largest < 0:
        raise ValueError(f"largest must be an integer >= 0, not {largest!r}")
    shift = 0
    while (largest + ((1 << shift) >> 1)) >> shift > INT8_HI:
        shift += 1
    return shift


def window(decomposition, exponent_bits=EXPONENT_BITS, below="zero"):
    """(ce, shift): Ce of `decomposition` in integer form (steps 1, 2, 5 of the module
    docstring), int64 (blocks, m0, 3), and the layer's shift d."""
    if not isinstance(decomposition, Decomposition):
        raise TypeError(f"decomposition must be a Decomposition, not {decomposition!r}")
    if below not in BELOW:
        raise ValueError(f"below must be {' or '.join(map(repr, BELOW))}, not {below!r}")
    e_min = min_exponent(exponent_bits)
    signs, exponents = decomposition.signs_exponents()
    nonzero = signs != 0
    top = int(exponents[nonzero].max()) if bool(nonzero.any()) else MAX_EXPONENT
    shift = MAX_EXPONENT - top
    exponents = exponents + shift
    keep = nonzero & (exponents >= e_min) if below == "zero" else nonzero
    f = (exponents - e_min).clamp(min=0)
    return torch.where(keep, signs * (1 << f), 0), shift


def quantize_decomposition(decomposition, *, exponent_bits=EXPONENT_BITS, below="zero",
                           refit=True, rcond=RCOND):
    """The SmartDealWeights of a float Decomposition (the steps of the module docstring).

    exponent_bits E: 2, 3 or 4 (window [6 - 2^E, 5]); below: "zero" or "clamp" for
    coefficients under the window; refit: refit B by least squares to the decomposed weight
    after the window (else B is only rescaled by 2^-d).
    """
    if isinstance(exponent_bits, bool) or exponent_bits not in (2, 3, 4):
        raise ValueError(f"exponent_bits must be 2 or 3 or 4, not {exponent_bits!r}")
    ce, shift = window(decomposition, exponent_bits, below)
    e_min = min_exponent(exponent_bits)
    coefficients = torch.ldexp(ce.to(torch.float64), torch.tensor(e_min))
    if refit:
        basis = least_squares(coefficients, decomposition.target, rcond)
    else:
        basis = torch.ldexp(decomposition.basis, torch.tensor(-shift))
    peak = float(basis.abs().max())
    basis_scale = peak / BASIS_HI if peak > 0 else 1.0
    basis_int = quantize(basis, basis_scale, BASIS_BITS).clamp(-BASIS_HI, BASIS_HI)
    unit = math.ldexp(basis_scale, e_min)
    layout = decomposition.layout
    rebuilt = layout.from_blocks(ce @ basis_int).to(torch.int64)
    shift_bits = weight_shift(int(rebuilt.abs().max()))
    header = LayerHeader(kind=layout.kind, outputs=layout.outputs, length=layout.length,
                         block_rows=layout.block_rows,
                         blocks_per_output=layout.blocks_per_output,
                         exponent_bits=exponent_bits, weight_mult=HARDWARE_WEIGHT_MULT,
                         weight_shift=shift_bits)
    return SmartDealWeights(header, layout.shape, basis_int, ce, unit,
                            unit * math.ldexp(1.0, shift_bits))
