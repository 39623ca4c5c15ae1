"""sim.payload: bit layout of flattened stream payloads."""

import random

import pytest
from amaranth.hdl import signed, unsigned
from amaranth.lib import data

from celine.sim.payload import layout_width, pack, unpack

FRAME = data.StructLayout({"data": data.ArrayLayout(signed(8), 4), "last": 1})
NESTED = data.StructLayout({
    "rows": data.ArrayLayout(data.ArrayLayout(signed(3), 2), 2),
    "scale": unsigned(5),
    "first": 1,
    "last": 1,
})


def test_frame_bits_follow_field_offsets():
    bits = pack(FRAME, {"data": [1, -1, -128, 127], "last": 1})
    assert bits == (1 << 32) | (0x7F << 24) | (0x80 << 16) | (0xFF << 8) | 0x01
    assert layout_width(FRAME) == 33


@pytest.mark.parametrize("shape,values", [
    (signed(8), [-128, -1, 0, 1, 127]),
    (signed(1), [-1, 0]),
    (unsigned(8), [0, 1, 255]),
    (signed(33), [-(1 << 32), (1 << 32) - 1]),
])
def test_scalar_round_trip_including_extremes(shape, values):
    for value in values:
        assert unpack(shape, pack(shape, value)) == value


@pytest.mark.parametrize("layout", [FRAME, NESTED, data.ArrayLayout(signed(16), 7)])
def test_random_round_trip(layout):
    rng = random.Random(0)
    width = layout_width(layout)
    for _ in range(200):
        bits = rng.getrandbits(width)
        assert pack(layout, unpack(layout, bits)) == bits


def test_most_negative_lanes():
    value = {"data": [-128] * 4, "last": 0}
    assert unpack(FRAME, pack(FRAME, value)) == value


@pytest.mark.parametrize("shape,value", [(signed(8), 128), (signed(8), -129), (unsigned(4), -1)])
def test_out_of_range_value_is_rejected(shape, value):
    with pytest.raises(ValueError, match=r"^value -?\d+ does not fit "):
        pack(shape, value)


def test_array_length_is_checked():
    with pytest.raises(ValueError, match=r"must have 4 elements, not 3$"):
        pack(FRAME, {"data": [0, 0, 0], "last": 0})


def test_agrees_with_amaranth_const():
    value = {"rows": [[-4, 3], [1, -1]], "scale": 31, "first": 1, "last": 0}
    assert pack(NESTED, value) == NESTED.const(value).as_value().value
