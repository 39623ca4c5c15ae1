"""SmartDeal golden models (celine/golden/smartdeal): the decomposition against the
reference's rules, the packed format (round trips, hand-computed words, every corruption
case), the integer models (hand-computed cases, the two computation orders), and the report
on a small digits ViT trained here; the default model's report is a sweep test."""

import dataclasses
import inspect
import math
import random
import re
import subprocess
import sys

import pytest
import torch

from celine.golden.digits_vit import digits_dataset, trained_vit_record
from celine.golden.smartdeal import decomposition as decompose_module
from celine.golden.smartdeal import format as fmt
from celine.golden.smartdeal.decomposition import (Decomposition, decompose, padded_length, pow2,
                                               reference_block_rows, weight_layout)
from celine.golden.smartdeal.finetune import (FinetuneConfig, finetune, finetune_cache_path,
                                              smartdeal_vit)
from celine.golden.smartdeal.format import FormatError, LayerHeader, pack, packed_words, unpack
from celine.golden.smartdeal.hardware import (SmartDealWeights, quantize_decomposition, weight_shift,
                                              window)
from celine.golden.smartdeal.integer import (linear_bitop_int, linear_int, output_requantizer,
                                             rebuild_int, rebuilt_width, weights_int8)
from celine.golden.smartdeal.report import bench_record, format_report, smartdeal_report
from celine.golden.quant import mult_shift, round_shift
# A real, quickly trained transformer with the default model's layer widths (in_features 48
# and 96, so the blocks are those of the default model): one block, 15 epochs, about 3 s;
# test accuracy 70%. Its fine-tuning (5 epochs) takes about a second.
from celine.sim.smartdeal_cases import SMALL_FINETUNE, SMALL_VIT as SMALL


@pytest.fixture(scope="module")
def data():
    return digits_dataset()


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    return tmp_path_factory.mktemp("build")


@pytest.fixture(scope="module")
def small(build):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CELINE_BUILD_DIR", str(build))
        return trained_vit_record(SMALL, progress=False)[0]


def header(**fields):
    base = dict(kind="linear", outputs=1, length=5, block_rows=2, blocks_per_output=1,
                exponent_bits=2, weight_mult=1, weight_shift=1)
    return LayerHeader(**{**base, **fields})


# The hand-worked example of docs/smartdeal.md ("A worked example"): one output of 5 inputs
# (padded to 6: two rows of 3), E = 2.
HAND_BASIS = [[[1, 2, 3], [4, 5, 6], [7, 8, -9]]]
HAND_CE = [[[1, -2, 0], [0, 0, 8]]]
HAND_WORDS = (0x215D, 0x50001, 0x10002, 0x10001, 8, 0x4030201, 0x201C1814, 0x3943F70)


def hand_weights():
    return SmartDealWeights(header(), (1, 5), torch.tensor(HAND_BASIS), torch.tensor(HAND_CE))


def random_weights(rng, exponent_bits, *, outputs=None, length=None, block_rows=None,
                   density=0.5):
    """SmartDealWeights with random codes and bases (every field width exercised)."""
    block_rows = block_rows or rng.randint(1, 12)
    blocks_per_output = rng.randint(1, 3)
    padded = 3 * block_rows * blocks_per_output
    length = length or rng.randint(padded - 2 if padded > 2 else padded, padded)
    outputs = outputs or rng.randint(1, 5)
    h = header(outputs=outputs, length=length, block_rows=block_rows,
               blocks_per_output=blocks_per_output, exponent_bits=exponent_bits,
               weight_mult=rng.randint(0, 65535), weight_shift=rng.randint(0, 63))
    top = 1 << exponent_bits
    ce = [[[rng.choice((-1, 1)) << rng.randrange(top) if rng.random() < density else 0
            for _ in range(3)] for _ in range(block_rows)] for _ in range(h.blocks)]
    basis = [[[rng.randint(-128, 127) for _ in range(3)] for _ in range(3)]
             for _ in range(h.blocks)]
    return SmartDealWeights(h, (outputs, length), torch.tensor(basis), torch.tensor(ce))


# -- the decomposition: the reference's rules -------------------------------------------------

def test_reference_defaults():
    defaults = {name: p.default for name, p in inspect.signature(decompose).parameters.items()
                if p.default is not inspect.Parameter.empty}
    assert defaults == {"iterations": 30, "threshold": 1e-3, "decay": 0.5, "max_exponent": 5,
                        "block_rows": None, "max_retries": 10, "tolerance": 1e-10,
                        "rcond": 1e-10}
    assert decompose_module.MAX_BLOCK_ROWS == 192 and fmt.BASIS == 3
    assert 2 ** fmt.MAX_EXPONENT == 32


@pytest.mark.parametrize("rows, m0", [(1, 1), (16, 16), (192, 192), (193, 193), (389, 389),
                                      (342, 171), (684, 171), (1368, 171), (429, 143),
                                      (320, 160), (1024, 128), (1026, 171), (2 * 211, 211)])
def test_reference_block_rows(rows, m0):
    assert reference_block_rows(rows) == m0


@pytest.mark.parametrize("length, padded", [(1, 3), (4, 6), (48, 48), (50, 51), (96, 96),
                                            (512, 513), (2048, 2052), (4096, 4104)])
def test_padding(length, padded):
    assert padded_length(length) == padded


@pytest.mark.parametrize("shape, kind, rows, m0, blocks", [
    ((144, 48), "linear", 16, 16, 144),
    ((48, 96), "linear", 32, 32, 48),
    ((10, 50), "linear", 17, 17, 10),               # width not a multiple of 3
    ((5, 7, 1, 1), "linear", 3, 3, 5),              # 1x1 conv
    ((8, 4, 3, 3), "conv3x3", 12, 12, 8),           # (Cin * 3) x 3 per output channel
    ((2, 2048), "linear", 684, 171, 8),
    ((1, 1), "linear", 1, 1, 1),
])
def test_layout(shape, kind, rows, m0, blocks):
    layout = weight_layout(shape)
    assert (layout.kind, layout.rows, layout.block_rows, layout.blocks) == (kind, rows, m0, blocks)
    weight = torch.arange(math.prod(shape), dtype=torch.float64).reshape(shape)
    assert torch.equal(layout.from_blocks(layout.to_blocks(weight)), weight)


def test_conv_rows_are_cin_kh_by_kw():
    weight = torch.arange(2 * 4 * 9, dtype=torch.float64).reshape(2, 4, 3, 3)
    blocks = weight_layout(weight.shape).to_blocks(weight)
    assert torch.equal(blocks[1], weight[1].reshape(12, 3))


def test_pow2_rule():
    """k: the nearer of floor/ceil(log2|c|) by linear error, ties to the floor; clip at 32;
    zeros stay zero; no minimum exponent."""
    values = torch.tensor([3.0, 3.01, 1.0, -5.0, 6.0, 100.0, 48.0, 0.1, 0.0, 0.75, -2.0 ** -20])
    expected = [2.0, 4.0, 1.0, -4.0, 4.0, 32.0, 32.0, 0.125, 0.0, 0.5, -2.0 ** -20]
    assert pow2(values).tolist() == expected
    assert pow2(torch.tensor([100.0]), max_exponent=2).tolist() == [4.0]


def is_pow2_or_zero(ce, max_exponent=5):
    magnitude = ce.abs()
    exponent = torch.frexp(magnitude)[1] - 1
    exact = torch.ldexp(torch.ones_like(magnitude), exponent) == magnitude
    return bool(((magnitude == 0) | (exact & (exponent <= max_exponent))).all())


def test_real_layer(small):
    """The small ViT's qkv (144 x 48): blocks of 16 x 3. Measured: relative error 0.163
    after the first pass alone (iterations=1), 0.140 at the defaults; the error of every
    block falls from the first B fit to the last; about 1% of Ce is zero."""
    weight = small.blocks[0].attn.qkv.weight
    d = decompose(weight)
    assert isinstance(d, Decomposition) and d.shape == (144, 48)
    assert d.ce.shape == (144, 16, 3) and d.basis.shape == (144, 3, 3)
    assert is_pow2_or_zero(d.ce)
    assert d.relative_error < 0.15 < decompose(weight, iterations=1).relative_error < 0.17
    assert bool((d.errors[-1] <= d.errors[0] + 1e-12).all())
    assert d.sparsity < 0.02
    assert 1 < int(d.iterations_run.max()) <= 30
    assert torch.equal(d.reconstruct(), d.layout.from_blocks(d.ce @ d.basis))
    again = decompose(weight)
    assert torch.equal(again.ce, d.ce) and torch.equal(again.basis, d.basis)


def test_threshold_sparsifies(small):
    weight = small.blocks[0].mlp[0].weight
    sparsity = [decompose(weight, threshold=t).sparsity for t in (1e-3, 0.04, 0.08)]
    assert sparsity[0] < 0.05 < sparsity[1] < sparsity[2]


def test_all_zero_blocks():
    weight = torch.zeros(3, 48)
    weight[1] = torch.linspace(-1, 1, 48)
    d = decompose(weight)
    assert not d.ce[0].any() and not d.basis[0].any() and not d.ce[2].any()
    assert d.ce[1].any() and torch.equal(d.thresholds, torch.full((3,), 1e-3, dtype=torch.float64))
    assert not d.reconstruct()[0].any() and d.relative_error < 0.2


def test_ce_at_the_magnitude_clip():
    """|Ce| > 32 is clipped to 32 (B grows to compensate)."""
    weight = torch.full((1, 6), 100.0)
    weight[0, 1] = 3.0
    d = decompose(weight)
    assert float(d.ce.abs().max()) == 32.0 and d.relative_error < 1e-12
    d = decompose(torch.randn(2, 30, generator=torch.Generator().manual_seed(1)) * 100)
    assert float(d.ce.abs().max()) == 32.0 and is_pow2_or_zero(d.ce)


def test_negative_exponents():
    weight = torch.randn(3, 12, generator=torch.Generator().manual_seed(2)) * 0.01
    d = decompose(weight)
    signs, exponents = d.signs_exponents()
    assert int(exponents[signs != 0].max()) < 0 and is_pow2_or_zero(d.ce)
    assert d.relative_error < 0.1


def test_decay_and_retry():
    """A block whose third column is below the threshold everywhere: that basis vector ends
    unused, so the block is decomposed again at threshold * 0.5 (twice, here)."""
    weight = torch.randn(10, 3, generator=torch.Generator().manual_seed(0)) * 0.3
    weight[:, 2] = 7e-4 * torch.tensor([1.0, -1.0] * 5)
    weight = weight.reshape(1, 30)
    d = decompose(weight)
    assert float(d.thresholds[0]) == 2.5e-4 and bool((d.ce[0, :, 2] != 0).all())
    assert not decompose(weight, max_retries=0).ce[0, :, 2].any()
    assert not decompose(weight, threshold=0).ce[0, :, 2].eq(0).all()


@pytest.mark.parametrize("shape", [(1, 1), (4, 10), (2, 3, 3, 3), (3, 5, 1, 1)])
def test_small_and_odd_shapes(shape):
    weight = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    d = decompose(weight)
    assert d.reconstruct().shape == shape and is_pow2_or_zero(d.ce)
    assert d.relative_error < 0.2
    sd = quantize_decomposition(d, exponent_bits=3)
    assert sd.shape == shape and sd.layout.kind == d.layout.kind
    back = SmartDealWeights.from_packed(sd.pack(), shape)
    assert torch.equal(rebuild_int(back), rebuild_int(sd))
    x = torch.randint(-128, 128, (7, sd.header.length), generator=torch.Generator().manual_seed(4))
    assert torch.equal(linear_bitop_int(x, sd), linear_int(x, sd, weights="wide"))


@pytest.mark.parametrize("kwargs, error, message", [
    ({"iterations": 0}, ValueError, "iterations must be at least 1, not 0"),
    ({"iterations": 2.0}, TypeError, "iterations must be an integer, not 2.0"),
    ({"iterations": True}, TypeError, "iterations must be an integer, not True"),
    ({"threshold": -1e-3}, ValueError, "threshold must be a finite number >= 0, not -0.001"),
    ({"threshold": math.inf}, ValueError, "threshold must be a finite number >= 0, not inf"),
    ({"threshold": "1e-3"}, TypeError, "threshold must be a real number, not '1e-3'"),
    ({"decay": 1.0}, ValueError, r"decay must be a number between 0 and 1 \(exclusive\), not 1.0"),
    ({"decay": 0}, ValueError, r"decay must be a number between 0 and 1 \(exclusive\), not 0"),
    ({"max_exponent": 5.0}, TypeError, "max_exponent must be an integer, not 5.0"),
    ({"max_exponent": 65}, ValueError, "max_exponent must be between -64 and 64, not 65"),
    ({"block_rows": 5}, ValueError,
     "block_rows must divide the 16 rows of 3 of each output, not 5"),
    ({"block_rows": 0}, ValueError, "block_rows must be between 1 and 16, not 0"),
    ({"block_rows": 17}, ValueError, "block_rows must be between 1 and 16, not 17"),
    ({"max_retries": -1}, ValueError, "max_retries must be at least 0, not -1"),
    ({"tolerance": -1.0}, ValueError, "tolerance must be a finite number >= 0, not -1.0"),
    ({"rcond": 0.0}, ValueError, "rcond must be a finite number above 0, not 0.0"),
])
def test_decompose_checks(kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        decompose(torch.ones(2, 48), **kwargs)


def test_decompose_block_rows_choice():
    d = decompose(torch.randn(2, 48, generator=torch.Generator().manual_seed(5)), block_rows=4)
    assert d.ce.shape == (8, 4, 3) and d.layout.blocks_per_output == 4


@pytest.mark.parametrize("weight, error, message", [
    (torch.ones(5), ValueError, re.escape("weight must be a linear (out, in), 1x1 conv (out, in, "
                                          "1, 1) or 3x3 conv (out, in, 3, 3) weight, not of "
                                          "shape (5,)")),
    (torch.ones(2, 3, 2, 2), ValueError,
     "weight must be a linear .* not of shape \\(2, 3, 2, 2\\)"),
    (torch.ones(0, 4), ValueError, re.escape("weight must not be empty, not of shape (0, 4)")),
    (torch.tensor([[1.0, math.nan]]), ValueError, "weight must be finite, not tensor of dtype "
                                                  "torch.float64 and shape \\(1, 2\\) with "
                                                  "non-finite entries"),
    (torch.ones(2, 2, dtype=torch.bool), TypeError, "weight must be a real tensor, not tensor of "
                                                    "dtype torch.bool and shape \\(2, 2\\)"),
    ("weights", TypeError, "weight must be a real tensor, not 'weights'"),
])
def test_weight_checks(weight, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        decompose(weight)


# -- the hardware form ------------------------------------------------------------------------

def test_hardware_form(small):
    """Ce codes are 0 or +-2^f, f < 2^E; the layer's largest is 2^(2^E - 1) (exponent 5);
    B is int8; the rebuilt weights' unit and the int8 weights' scale are consistent."""
    d = decompose(small.blocks[0].attn.qkv.weight)
    for bits in (2, 3, 4):
        sd = quantize_decomposition(d, exponent_bits=bits)
        top = 1 << ((1 << bits) - 1)
        assert int(sd.ce.abs().max()) == top and is_pow2_or_zero(sd.ce.double(), top.bit_length())
        assert int(sd.basis.abs().max()) == 127
        wide, int8 = sd.wide_weight(), sd.float_weight()
        assert (wide - d.weight()).norm() / d.weight().norm() < 0.17
        assert (int8 - wide).norm() / wide.norm() < 0.02
        # M_w = 1 and the smallest S that keeps every rebuilt weight in int8 unsaturated.
        h, largest = sd.header, int(rebuild_int(sd).abs().max())
        assert h.weight_mult == 1 and h.weight_shift > 0
        assert 64 <= int(weights_int8(sd).abs().max()) <= 127
        assert round_shift(largest, h.weight_shift - 1) > 127 >= round_shift(largest, h.weight_shift)
        assert largest < 1 << (rebuilt_width(bits) - 1)
        assert sd.weight_scale == sd.unit * 2 ** sd.header.weight_shift
        assert output_requantizer(sd, 0.5, 0.25) == mult_shift(sd.weight_scale * 2)
        assert output_requantizer(sd, 0.5, 0.25, weights="wide") == mult_shift(sd.unit * 2)
        x = torch.randint(-128, 128, (40, 48), generator=torch.Generator().manual_seed(bits))
        assert torch.equal(linear_bitop_int(x, sd), linear_int(x, sd, weights="wide"))
        assert torch.equal(linear_int(x, sd), x @ weights_int8(sd).T)


@pytest.mark.parametrize("largest, shift", [(0, 0), (127, 0), (128, 1), (254, 1), (255, 2),
                                            (509, 2), (510, 3), (4095, 6), (3 * 127 * 8, 5)])
def test_weight_shift(largest, shift):
    """The smallest S with round_half_up(largest / 2^S) <= 127 (M_w = 1)."""
    assert weight_shift(largest) == shift
    assert int(round_shift(largest, shift)) <= 127 < (int(round_shift(largest, shift - 1))
                                                      if shift else 128)


def test_weight_shift_checks():
    with pytest.raises(ValueError, match="^largest must be an integer >= 0, not -1$"):
        weight_shift(-1)


def test_window_below():
    """A coefficient 2^6 below the layer's largest: outside the window of E = 2 (4 exponents),
    zeroed or clamped to e_min; inside that of E = 3 (an exponent of -1 after the shift)."""
    weight = torch.tensor([[8.0, 0.0, 0.0, 0.0, 0.125, 0.0]])
    d = decompose(weight)
    assert d.ce.abs().max() == 8.0 and d.ce.abs()[d.ce != 0].min() == 0.125
    zeroed, shift = window(d, 2, "zero")
    clamped, _ = window(d, 2, "clamp")
    wide, _ = window(d, 3)
    assert shift == 2
    assert sorted(zeroed.abs().flatten().tolist())[-2:] == [0, 8]
    assert sorted(clamped.abs().flatten().tolist())[-2:] == [1, 8]
    assert sorted(wide.abs().flatten().tolist())[-2:] == [2, 128]      # f = 1: exponent -1
    assert fmt.min_exponent(3) == -2 and fmt.min_exponent(2) == 2 and fmt.min_exponent(4) == -10
    with pytest.raises(ValueError, match="^below must be 'zero' or 'clamp', not 'round'$"):
        window(d, 2, "round")
    with pytest.raises(ValueError, match="^exponent_bits must be 2 or 3 or 4, not 5$"):
        quantize_decomposition(d, exponent_bits=5)


# -- the packed format ------------------------------------------------------------------------

def test_format_declarations():
    assert [fmt.symbol_bits(e) for e in (2, 3, 4)] == [3, 4, 5]
    assert [fmt.symbols_per_word(e) for e in (2, 3, 4)] == [10, 8, 6]
    assert [fmt.basis_symbols(e) for e in (2, 3, 4)] == [24, 18, 15]
    assert rebuilt_width(2) == 13 and rebuilt_width(3) == 17 and rebuilt_width(4) == 25


def test_format_needs_no_torch():
    code = ("import sys; import celine.golden.smartdeal.format; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_hand_worked_example():
    """docs/smartdeal.md, "A worked example": the words, the rebuilt weights, both orders."""
    sd = hand_weights()
    assert sd.pack() == HAND_WORDS
    h, basis, ce = unpack(HAND_WORDS)
    assert h == header() and basis == ((tuple(HAND_BASIS[0][0]), tuple(HAND_BASIS[0][1]),
                                        tuple(HAND_BASIS[0][2])),)
    assert ce == (((1, -2, 0), (0, 0, 8)),)
    # w = 1 * B0 - 2 * B1 = (-7, -8, -9); 8 * B2 = (56, 64, -72), the last one padding.
    assert rebuild_int(sd).tolist() == [[-7, -8, -9, 56, 64]]
    assert rebuild_int(HAND_WORDS).tolist() == [[-7, -8, -9, 56, 64]]
    # M = 1, S = 1: (w + 1) >> 1.
    assert weights_int8(sd).tolist() == [[-3, -4, -4, 28, 32]]
    x = torch.tensor([[1, 2, 3, 4, 5]])
    assert linear_int(x, sd, weights="wide").tolist() == [[494]]
    assert linear_bitop_int(x, sd).tolist() == [[494]]     # 14 - 64 + 544
    assert linear_int(x, sd).tolist() == [[249]]
    assert linear_int(x, sd, mult=1, shift=2, bias=[10]).tolist() == [[(259 + 2) >> 2]]
    assert linear_int(x, sd, mult=1, shift=0).tolist() == [[127]]           # saturated


@pytest.mark.parametrize("exponent_bits", [2, 3, 4])
def test_round_trip(exponent_bits):
    rng = random.Random(exponent_bits)
    for trial in range(60):
        sd = random_weights(rng, exponent_bits, density=rng.random())
        words = sd.pack()
        assert all(0 <= w < 1 << 32 for w in words) and len(words) == sd.packed_words
        assert words[4] == len(words) == packed_words(sd.header, sd.nonzeros)
        back = SmartDealWeights.from_packed(words)
        assert back.header == sd.header
        assert torch.equal(back.basis, sd.basis) and torch.equal(back.ce, sd.ce)
        assert back.pack() == words


@pytest.mark.parametrize("exponent_bits", [2, 3, 4])
def test_two_orders_equal(exponent_bits):
    """x . Ce by shifts and adds, then . B == x . (rebuilt w_int), bias and requantizer
    included, on random codes at every exponent width."""
    rng = random.Random(10 + exponent_bits)
    generator = torch.Generator().manual_seed(exponent_bits)
    for trial in range(25):
        sd = random_weights(rng, exponent_bits)
        x = torch.randint(-128, 128, (9, sd.header.length), generator=generator)
        bias = torch.randint(-2 ** 31, 2 ** 31, (sd.header.outputs,), generator=generator)
        wide = linear_int(x, sd, weights="wide", bias=bias)
        assert torch.equal(linear_bitop_int(x, sd, bias=bias), wide)
        assert torch.equal(wide - bias, x @ rebuild_int(sd).T)
        mult, shift = rng.randint(0, 65535), rng.randint(0, 63)
        assert torch.equal(linear_bitop_int(x, sd, mult=mult, shift=shift, bias=bias),
                           linear_int(x, sd, mult=mult, shift=shift, bias=bias, weights="wide"))


def test_rebuild_by_hand_random():
    """rebuild_int against plain Python integers: sum_k s * (B[k][j] << f)."""
    rng = random.Random(7)
    for exponent_bits in (2, 3, 4):
        sd = random_weights(rng, exponent_bits, outputs=2, block_rows=5)
        expected = []
        for o in range(2):
            row = []
            for b in range(sd.header.blocks_per_output):
                block = o * sd.header.blocks_per_output + b
                basis, ce = sd.basis[block].tolist(), sd.ce[block].tolist()
                for r in range(5):
                    for j in range(3):
                        total = 0
                        for k in range(3):
                            c = ce[r][k]
                            if c:
                                shifted = basis[k][j] << (abs(c).bit_length() - 1)
                                total += shifted if c > 0 else -shifted
                        row.append(total)
            expected.append(row[:sd.header.length])
        assert rebuild_int(sd).tolist() == expected


# One block of 8 zero rows, E = 2: 24 symbols of B and 8 mask symbols, 4 words after the
# header; the last holds the masks of rows 6 and 7.
ZERO_ROWS = pack(header(length=24, block_rows=8), HAND_BASIS, [[[0, 0, 0]] * 8])


def corrupt(words, index, value):
    words = list(words)
    words[index] = value
    return words


def hand_e3():
    """The hand example with E = 3 (4-bit symbols, whose mask symbols have a reserved bit)."""
    sd = hand_weights()
    return dataclasses.replace(sd, header=dataclasses.replace(sd.header, exponent_bits=3)).pack()


@pytest.mark.parametrize("case, words, kind, message", [
    ("short", HAND_WORDS[:4], fmt.WRONG_LENGTH,
     "wrong length: a layer has at least 5 words, not 4"),
    ("magic", corrupt(HAND_WORDS, 0, 0x215E), fmt.BAD_HEADER,
     "bad header: magic must be 0x5d, not 0x5e"),
    ("version", corrupt(HAND_WORDS, 0, 0x225D), fmt.BAD_HEADER,
     "bad header: version must be 1, not 2"),
    ("reserved", corrupt(HAND_WORDS, 0, 0x215D | 1 << 20), fmt.BAD_HEADER,
     "bad header: reserved bits must be 0"),
    ("kind", corrupt(HAND_WORDS, 0, 0x215D | 2 << 16), fmt.BAD_HEADER,
     "bad header: kind must be 0 or 1, not 2"),
    ("exponent bits", corrupt(HAND_WORDS, 0, 0x515D), fmt.BAD_HEADER,
     "bad header: exponent_bits must be 2 or 3 or 4, not 5"),
    ("outputs", corrupt(HAND_WORDS, 1, 0x50000), fmt.BAD_HEADER,
     "bad header: outputs must be between 1 and 65535, not 0"),
    ("padding block", corrupt(HAND_WORDS, 2, 0x20002), fmt.BAD_HEADER,
     "bad header: blocks_per_output must not give a block of padding only, not 2"),
    ("length", HAND_WORDS[:-1], fmt.WRONG_LENGTH, "wrong length: the header says 8 words, "
                                                  "the stream has 7"),
    ("extra word", corrupt(HAND_WORDS, 4, 9) + [0], fmt.WRONG_LENGTH,
     "wrong length: the blocks end at word 8, the stream has 9"),
    ("truncated", corrupt(ZERO_ROWS[:-1], 4, 8), fmt.TRUNCATED_BLOCK,
     "truncated block 0: the words end in row 6"),
    ("truncated basis", corrupt(HAND_WORDS[:-1], 4, 7), fmt.TRUNCATED_BLOCK,
     "truncated block 0: the words end in its basis"),
    ("spare bits", corrupt(HAND_WORDS, 6, 0x201C1814 | 1 << 31), fmt.BAD_CODE,
     "bad code: word 6 has spare bits set (0xa01c1814)"),
    ("padding", corrupt(HAND_WORDS, 7, 0x3943F70 | 1 << 27), fmt.BAD_CODE,
     "bad code: the padding after the last block is not 0 (0x1)"),
    ("mask", corrupt(hand_e3(), 7, hand_e3()[7] | 0x8 << 8), fmt.BAD_CODE,
     "bad code: block 0, row 0 has mask symbol 0xb"),
])
def test_corrupt_streams(case, words, kind, message):
    with pytest.raises(FormatError, match=f"^{re.escape(message)}$") as info:
        unpack(words)
    assert info.value.kind == kind and kind in fmt.ERRORS and isinstance(info.value, ValueError)
    with pytest.raises(FormatError):
        rebuild_int(words)


def test_bits_above_the_basis():
    """E = 4: B's 72 bits take 15 five-bit symbols; the 3 bits above are reserved."""
    sd = hand_weights()
    sd = dataclasses.replace(sd, header=dataclasses.replace(sd.header, exponent_bits=4))
    words = list(sd.pack())
    words[7] |= 1 << 12                         # symbol 14 (word 7, slot 2, bits 70-74): bit 72
    with pytest.raises(FormatError, match="^bad code: block 0 has bits set above its basis$"):
        unpack(words)


@pytest.mark.parametrize("words, message", [
    ("words", "words must be a sequence of 32-bit integers, not 'words'"),
    ([1, 2, -1], "words must be a sequence of 32-bit integers, not -1"),
    ([1 << 32], "words must be a sequence of 32-bit integers, not 4294967296"),
    ([1.0], "words must be a sequence of 32-bit integers, not 1.0"),
])
def test_unpack_types(words, message):
    with pytest.raises(TypeError, match=f"^{message}$"):
        unpack(words)


@pytest.mark.parametrize("basis, ce, error, message", [
    (HAND_BASIS, [[[3, 0, 0], [0, 0, 0]]], ValueError,
     "ce entries must be 0 or +-2^f with 0 <= f < 4, not 3 at block 0, row 0"),
    (HAND_BASIS, [[[16, 0, 0], [0, 0, 0]]], ValueError,
     "ce entries must be 0 or +-2^f with 0 <= f < 4, not 16 at block 0, row 0"),
    (HAND_BASIS, [[[1.0, 0, 0], [0, 0, 0]]], TypeError,
     "ce entries must be integers, not 1.0 at block 0, row 0"),
    ([[[128, 0, 0], [0, 0, 0], [0, 0, 0]]], HAND_CE, ValueError,
     "basis entries must be between -128 and 127, not 128 in block 0"),
    (HAND_BASIS, [[[1, 0, 0]]], ValueError,
     "ce must have shape (1, 2, 3), not length 1 at a level of length 2"),
])
def test_pack_checks(basis, ce, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        pack(header(), basis, ce)


@pytest.mark.parametrize("fields, error, message", [
    ({"kind": "conv"}, ValueError, "kind must be 'linear' or 'conv3x3', not 'conv'"),
    ({"exponent_bits": 1}, ValueError, "exponent_bits must be 2 or 3 or 4, not 1"),
    ({"exponent_bits": 2.0}, TypeError, "exponent_bits must be an integer, not 2.0"),
    ({"block_rows": 0}, ValueError, "block_rows must be between 1 and 65535, not 0"),
    ({"weight_shift": 64}, ValueError, "weight_shift must be between 0 and 63, not 64"),
    ({"length": 7}, ValueError, "blocks_per_output must give at least length 7 weights per "
                                "output (3 * block_rows * blocks_per_output), not 1"),
])
def test_header_checks(fields, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        header(**fields)


def test_weights_checks():
    sd = hand_weights()
    with pytest.raises(ValueError, match=r"^ce must have shape \(1, 2, 3\), not \(1, 3, 3\)$"):
        dataclasses.replace(sd, ce=torch.zeros(1, 3, 3, dtype=torch.int64))
    with pytest.raises(TypeError, match="^basis must be an integer tensor, not "):
        dataclasses.replace(sd, basis=sd.basis.double())
    with pytest.raises(ValueError, match=r"^shape must hold 1 x 5 weights, not \(1, 6\)$"):
        dataclasses.replace(sd, shape=(1, 6))
    with pytest.raises(ValueError, match="^weight_scale is not known for weights read from a "
                                         "packed stream$"):
        SmartDealWeights.from_packed(HAND_WORDS).float_weight()
    with pytest.raises(ValueError, match="^unit is not known for weights read from a packed "
                                         "stream$"):
        output_requantizer(sd, 1.0, 1.0, weights="wide")


def test_integer_checks():
    sd = hand_weights()
    with pytest.raises(ValueError, match=r"^x must have 5 columns \(the layer's inputs\), not 4$"):
        linear_int(torch.zeros(1, 4, dtype=torch.int64), sd)
    with pytest.raises(ValueError, match="^x entries must be between -128 and 127, not 128$"):
        linear_bitop_int(torch.full((1, 5), 128), sd)
    with pytest.raises(TypeError, match=r"^x must be a 2-d integer tensor \(N, 5\), not tensor "
                                        r"of dtype torch.float32 and shape \(1, 5\)$"):
        linear_int(torch.zeros(1, 5), sd)
    with pytest.raises(ValueError, match="^weights must be 'int8' or 'wide', not 'float'$"):
        linear_int(torch.zeros(1, 5, dtype=torch.int64), sd, weights="float")
    with pytest.raises(ValueError, match="^mult and shift must be given together, not 1 and None$"):
        linear_int(torch.zeros(1, 5, dtype=torch.int64), sd, mult=1)


# -- the report --------------------------------------------------------------------------------

def test_small_model_report(build, monkeypatch, small, data):
    """The report on SMALL fine-tuned for 5 epochs (about 3 s). Measured: 3.597 bits per
    weight in every layer (2.22x against int8, the budget of 3.6); the hardware form loses
    1-2% of the fine-tuned weights (recon 0.009-0.018, output 0.005-0.022; through the
    integer layer 0.011-0.030); the plain decomposition at those thresholds loses 0.31-0.63
    of the trained weights; accuracy float 70.3%, int8 70.3%, SmartDeal 71.4%, plain 22%."""
    monkeypatch.setenv("CELINE_BUILD_DIR", str(build))
    report = smartdeal_report(SMALL, SMALL_FINETUNE, data=data)
    assert finetune_cache_path(SMALL, SMALL_FINETUNE).exists()
    names = [layer["name"] for layer in report["layers"]]
    assert names == ["blocks.0.attn.qkv", "blocks.0.attn.proj", "blocks.0.mlp.0",
                     "blocks.0.mlp.2", "head"] and report["kept_int8"] == ["embed"]
    for layer in report["layers"]:
        assert 2.0 <= layer["compression_vs_int8"] and layer["bits_per_weight"] <= 3.6
        assert layer["compression_vs_float32"] == pytest.approx(4 * layer["compression_vs_int8"])
        assert layer["recon_rel_error"] < 0.03 and layer["output_rel_error"] < 0.03
        assert layer["output_rel_error_int"] < 0.04 and layer["output_rel_error_bitop"] < 0.04
        assert layer["plain"]["recon_rel_error"] > 0.25
        assert layer["reference_default"]["recon_rel_error"] < 0.2
        assert layer["reference_default"]["compression_vs_int8"] < 1.5
    accuracy = report["model_accuracy"]
    assert accuracy["smartdeal"] >= accuracy["float"] - 0.02 > accuracy["smartdeal_plain"] + 0.2
    record = bench_record(report)
    assert set(record) == {"layers", "model_accuracy"}
    assert set(record["model_accuracy"]) == {"float", "int8", "smartdeal"}
    assert set(record["layers"][0]) == {"name", "shape", "bits_per_weight", "compression_vs_int8",
                                        "ce_sparsity", "recon_rel_error", "output_rel_error"}
    formats = report["formats"]["finetuned"]
    assert formats["symbol_stream"]["bits_per_weight"] == report["total"]["bits_per_weight"]
    assert formats["symbol_stream"]["bits_per_weight"] < formats["mask_groups"]["bits_per_weight"]
    assert "blocks.0.attn.qkv" in format_report(report)
    # Cached: loaded again, not retrained (the record, timings included, is the stored one).
    again = smartdeal_vit(SMALL, SMALL_FINETUNE)
    assert again.record["finetune_seconds"] == report["finetune_seconds"]
    assert again.record["digest"] == report["digest"] == SMALL_FINETUNE.digest(SMALL)
    assert finetune_cache_path(SMALL, dataclasses.replace(SMALL_FINETUNE, seed=1)) != \
        finetune_cache_path(SMALL, SMALL_FINETUNE)


def test_finetune_is_deterministic(small, data):
    first = finetune(small, dataclasses.replace(SMALL_FINETUNE, epochs=2), data)[1]
    second = finetune(small, dataclasses.replace(SMALL_FINETUNE, epochs=2), data)[1]
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name].ce, second[name].ce)
        assert torch.equal(first[name].basis, second[name].basis)
        assert is_pow2_or_zero(first[name].ce)


@pytest.mark.parametrize("fields, error, message", [
    ({"threshold": 0}, ValueError, "threshold must be a finite number above 0, not 0.0"),
    ({"bits_per_weight": -1.0}, ValueError,
     "bits_per_weight must be a finite number above 0, not -1.0"),
    ({"exponent_bits": 5}, ValueError, "exponent_bits must be 2 or 3 or 4, not 5"),
    ({"epochs": -1}, ValueError, "epochs must be at least 0, not -1"),
])
def test_finetune_config_checks(fields, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        FinetuneConfig(**fields)


@pytest.mark.sweep          # fine-tunes the default model (about 25 s, plus the ViT) unless cached
def test_default_model_report(data):
    """The default path (DigitsViTConfig(), FinetuneConfig()), as `python -m
    celine.golden.smartdeal` prints it. Measured (2026-12-02, the cached default model of
    this code): 2.22x against int8 in every layer; the hardware form (its int8 weights a
    power-of-two shift of the rebuilt ones, M_w = 1) loses 0.9-2.2% of the fine-tuned
    weights (output 0.5-2.03%, the worst blocks.3.mlp.2; the integer layer 1.0-3.2%);
    accuracy float 99.17%, int8 99.17%, SmartDeal 98.89%, plain 63.6%, the reference's
    default decomposition 97.5%. (An earlier default model measured output 0.5-1.9% and
    plain 71.1%; the output bound is 2.5%, a float approximation's.)"""
    report = smartdeal_report(data=data)
    for layer in report["layers"]:
        assert layer["compression_vs_int8"] >= 2.2 and layer["recon_rel_error"] < 0.03
        assert layer["output_rel_error"] < 0.025 and layer["output_rel_error_int"] < 0.04
    accuracy = report["model_accuracy"]
    assert accuracy["float"] > 0.98 and accuracy["smartdeal"] >= accuracy["float"] - 0.01
    assert accuracy["smartdeal_plain"] < 0.9
