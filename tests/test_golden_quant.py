"""golden/quant.py: the integer arithmetic every golden model is built on."""

import math
import random

import pytest
import torch

from celine.golden.quant import (mult_shift, quantize, reduce_precision, requantize, round_shift,
                                 signed_range, signed_width, wrap)


def test_wrap_and_ranges():
    assert signed_range(8) == (-128, 127)
    assert wrap(torch.tensor([128, -129, 255, 256, -128]), 8).tolist() == [-128, 127, -1, 0, -128]
    assert signed_width(-128, 127) == 8 and signed_width(0, 128) == 9 and signed_width(-129, 0) == 9


def test_round_half_up_shift():
    x = torch.tensor([-3, -2, -1, 0, 1, 2, 3])
    assert round_shift(x, 1).tolist() == [-1, -1, 0, 0, 1, 1, 2]   # halves round toward +inf
    assert round_shift(x, 0).tolist() == x.tolist()


def test_requantize_saturates():
    assert requantize(torch.tensor([1 << 20, -(1 << 20), 300]), 1, 1).tolist() == [127, -128, 127]
    assert requantize(torch.tensor([-255]), 1, 1).tolist() == [-127]


def test_reduce_precision_matches_definition():
    for p in (2, 4, 8):
        for x in range(-128, 128):
            want = max(-(1 << (p - 1)), min((1 << (p - 1)) - 1,
                                            (x + ((1 << (8 - p)) >> 1)) // (1 << (8 - p))))
            assert int(reduce_precision(torch.tensor(x), p)) == want, (p, x)
    assert int(reduce_precision(torch.tensor(127), 2)) == 1      # rounds to 2, saturates
    assert int(reduce_precision(torch.tensor(-128), 2)) == -2
    assert int(reduce_precision(torch.tensor(0x1FF), 8)) == -1   # only the low 8 bits count


def test_quantize_rounds_half_up():
    assert quantize(torch.tensor([0.5, -0.5, 1000.0]), 1.0).tolist() == [1, 0, 127]


def test_mult_shift_is_the_most_precise_16_bit_gain():
    assert mult_shift(1.0) == (32768, 15)
    assert mult_shift(65535.0) == (65535, 0) and mult_shift(65535.49) == (65535, 0)
    assert mult_shift(2.0 ** -64) == (1, 63)          # 0.5 at shift 63 rounds half up to 1
    assert mult_shift(0.75) == (49152, 16)
    # Round half up, not to even (Python's round() gives 65534 and 2 here).
    assert mult_shift(65534.5) == (65535, 0)
    assert mult_shift(5 * 2.0 ** -64) == (3, 63)       # 2.5 at shift 63 -> 3
    rng = random.Random(0)
    for _ in range(2000):
        ratio = math.ldexp(rng.uniform(0.5, 1.0), rng.randint(-62, 16))
        mult, shift = mult_shift(ratio)
        assert 0 <= shift <= 63 and 1 <= mult <= 65535
        assert mult == math.floor(ratio * 2 ** shift + 0.5)          # round half up
        # The largest shift: one more would need a 17-bit multiplier (or exceed 6 bits).
        assert shift == 63 or math.floor(ratio * 2 ** (shift + 1) + 0.5) > 65535
        assert abs(mult / 2 ** shift - ratio) <= 2.0 ** -(shift + 1)


@pytest.mark.parametrize("ratio, error, message", [
    (0.0, ValueError, "scale must be a finite number above 0, not 0.0"),
    (-1.0, ValueError, "scale must be a finite number above 0, not -1.0"),
    (float("inf"), ValueError, "scale must be a finite number above 0, not inf"),
    (float("nan"), ValueError, "scale must be a finite number above 0, not nan"),
    (65535.5, ValueError, "scale must be below 65535.5 (mult 65535 at shift 0), not 65535.5"),
    (2.0 ** -66, ValueError,
     f"scale must be at least 2^-64 (mult 1 at shift 63), not {2.0 ** -66!r}"),
    (True, TypeError, "scale must be a real number, not True"),
    ("1", TypeError, "scale must be a real number, not '1'"),
])
def test_mult_shift_validation(ratio, error, message):
    with pytest.raises(error) as info:
        mult_shift(ratio)
    assert str(info.value) == message
