"""celine/firmware/tensors.py: operands of the engines' host calls, checked on the host."""

import pytest
import torch

from celine.engines.taylor.spec import TaylorParams
from celine.firmware.device import Device
from celine.firmware.errors import SettingError
from celine.firmware.protocol import Command
from celine.firmware.tensors import as_int_tensor

RULE = "a 2-D integer tensor"


def matrix(value):
    return as_int_tensor("x", value, ndims=(2,), rule=RULE)


def test_accepts_tensors_arrays_and_nested_sequences():
    np = pytest.importorskip("numpy")
    want = torch.tensor([[1, -2], [3, 4]])
    for value in (want, want.to(torch.int8), [[1, -2], [3, 4]], ((1, -2), (3, 4)),
                  np.array([[1, -2], [3, 4]], dtype=np.int16), [[np.int64(1), -2], [3, 4]]):
        out = matrix(value)
        assert out.dtype == torch.int64 and torch.equal(out, want)
    assert matrix([[], []]).shape == (2, 0) and matrix([[]]).dtype == torch.int64


@pytest.mark.parametrize("value,what", [
    ([[1, 2], [3]], r"a ragged list \[\[1, 2\], \[3\]\]"),
    ([[1, 2], 3], r"a ragged list \[\[1, 2\], 3\]"),
    ("abc", r"'abc'"),
    (b"ab", r"b'ab'"),
    ([["a", "b"]], r"\[\['a', 'b'\]\]"),
    ([[None]], r"\[\[None\]\]"),
    (5, r"5"),
    (None, r"None"),
    ([[1 << 64]], r"\[\[18446744073709551616\]\]"),
    ([[1.5]], r"torch\.float32 of shape \(1, 1\)"),
    ([[True]], r"torch\.bool of shape \(1, 1\)"),
    ([1, 2], r"torch\.int64 of shape \(2,\)"),
    (torch.zeros(2, 2), r"torch\.float32 of shape \(2, 2\)"),
])
def test_rejects_what_is_no_integer_matrix(value, what):
    with pytest.raises(SettingError, match=rf"^x must be a 2-D integer tensor, not {what}$"):
        matrix(value)


def test_rejects_numpy_non_integers():
    np = pytest.importorskip("numpy")
    with pytest.raises(SettingError, match=r"^x must be a 2-D integer tensor, not <U1 of shape"):
        matrix(np.array([["a"]]))
    with pytest.raises(SettingError, match=r"^x must be a 2-D integer tensor, not uint64 of "):
        matrix(np.array([[1 << 63]], dtype=np.uint64))


@pytest.mark.parametrize("value,what", [
    ([[[1] * 16] * 2, [[1] * 16]], r"a ragged list"),
    ("qqq", r"'qqq'"),
])
def test_attention_operands_use_the_converter(value, what):
    # before: torch.as_tensor raised a raw ValueError / TypeError
    dev = Device.open("model", accel="taylor", params=TaylorParams(head_dim=16, max_tokens=8,
                                                                   heads=2))
    ok = torch.zeros(2, 16, dtype=torch.int64)
    with pytest.raises(SettingError, match=rf"^q must be a 2-D \(tokens x head_dim\) or 3-D "
                                           rf"\(heads x tokens x head_dim\) integer tensor, "
                                           rf"not {what}"):
        dev.attention(value, ok, ok)
    assert dev.transport.commands == [Command.INFO]
