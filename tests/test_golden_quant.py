"""golden/quant.py: the integer arithmetic every golden model is built on."""

import torch

from celine.golden.quant import (quantize, reduce_precision, requantize, round_shift, signed_range,
                          signed_width, wrap)


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
