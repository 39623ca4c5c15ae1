"""dev.linear on the golden shell model and on the simulated device (Device.open("sim"):
the shell's Verilog): bit-exact with the integer SD linear layer, the weights sent once,
the issue's call dev.linear(x, smartdeal.decompose(w)), every bad input rejected before
anything is sent."""

import dataclasses

import pytest
import torch

from celine.engines.smartdeal.spec import SmartDealParams
from celine.firmware.device import Device
from celine.firmware.errors import SettingError
from celine.golden.smartdeal.integer import linear_int
from celine.sim.smartdeal_cases import random_layer

PARAMS = SmartDealParams(array_rows=2, array_cols=3, max_inputs=48, max_outputs=20,
                         max_tokens=5, weight_words=1024)


@pytest.fixture
def dev():
    with Device.open("model", accel="smartdeal", params=PARAMS) as device:
        yield device


def test_linear_is_the_integer_layer_and_sends_the_weights_once(dev):
    sd = random_layer(7, 10, seed=1)
    x = torch.randint(-128, 128, (12, 10), generator=torch.Generator().manual_seed(2))
    assert torch.equal(dev.linear(x, sd), linear_int(x, sd))             # 3 runs of <= 5
    assert dev.smartdeal.last_link_bytes["weights"] == 4 * sd.packed_words
    assert torch.equal(dev.linear(x[:3], sd, requant=(500, 14)),
                       linear_int(x[:3], sd, mult=500, shift=14))
    assert dev.smartdeal.last_link_bytes["weights"] == 0                 # still there
    other = random_layer(4, 10, seed=3)
    assert torch.equal(dev.linear(x, other.pack()), linear_int(x, other))
    assert dev.smartdeal.last_link_bytes["weights"] == 4 * other.packed_words


@pytest.mark.parametrize("impl", ["rebuild", "bitop"])
def test_linear_takes_a_decomposition(impl):
    """The issue's call, dev.linear(x, smartdeal.decompose(w)): the float decomposition is
    put in hardware form for the device's E (quantize_decomposition) and the result is the
    golden integer layer's of that form, bit for bit (impl "rebuild": the int8 weights;
    "bitop": the exact w_int); a second call with a fresh decomposition of the same w (the
    same packed words) sends no weight byte, a new weight sends its words."""
    from celine.golden import smartdeal
    params = SmartDealParams(**{**PARAMS.to_dict(), "impl": impl})
    generator = torch.Generator().manual_seed(7)
    w = torch.randn(9, 40, generator=generator)
    x = torch.randint(-128, 128, (11, 40), generator=generator)
    weights = "int8" if impl == "rebuild" else "wide"
    with Device.open("model", accel="smartdeal", params=params) as device:
        golden = smartdeal.quantize_decomposition(smartdeal.decompose(w),
                                                  exponent_bits=params.exponent_bits)
        assert torch.equal(device.linear(x, smartdeal.decompose(w)),
                           linear_int(x, golden, weights=weights))
        assert device.smartdeal.last_link_bytes["weights"] == 4 * golden.packed_words
        assert torch.equal(device.linear(x[:4], smartdeal.decompose(w), requant=(700, 16)),
                           linear_int(x[:4], golden, weights=weights, mult=700, shift=16))
        assert device.smartdeal.last_link_bytes["weights"] == 0
        other = smartdeal.decompose(torch.randn(9, 40, generator=generator))
        assert torch.equal(device.linear(x, other), linear_int(
            x, smartdeal.quantize_decomposition(other, exponent_bits=params.exponent_bits),
            weights=weights))
        assert device.smartdeal.last_link_bytes["weights"] > 0


# The simulated device's parameters and shell: test_smartdeal_shell's rebuild case's (one
# Verilator build for both).
SIM_PARAMS = SmartDealParams(max_tokens=16, max_inputs=48, max_outputs=48, weight_words=512)
SIM_SHELL = dict(max_payload=1024, timeout_bits=64)


@pytest.mark.cocotb
def test_linear_on_the_simulated_device_takes_a_decomposition():
    """dev.linear(x, smartdeal.decompose(w)) on Device.open("sim"), the shell's Verilog
    under cocotb: 20 rows (runs of 16 and 4) bit-exact with the golden integer layer of
    the decomposition's hardware form; the weights once (the second call, requantized,
    sends 0 weight bytes); the simulation ends when the device is closed."""
    from celine.golden import smartdeal
    generator = torch.Generator().manual_seed(8)
    w = torch.randn(12, 40, generator=generator)
    x = torch.randint(-128, 128, (20, 40), generator=generator)
    x[0] = -128
    x[1] = 127
    sd_weights = smartdeal.decompose(w)
    golden = smartdeal.quantize_decomposition(sd_weights, exponent_bits=2)
    with Device.open("sim", accel="smartdeal", params=SIM_PARAMS, **SIM_SHELL) as dev:
        process = dev.transport.process
        assert torch.equal(dev.linear(x, sd_weights), linear_int(x, golden))
        assert dev.smartdeal.last_link_bytes["weights"] == 4 * golden.packed_words
        assert torch.equal(dev.linear(x[:5], sd_weights, requant=(700, 16)),
                           linear_int(x[:5], golden, mult=700, shift=16))
        assert dev.smartdeal.last_link_bytes["weights"] == 0
        assert dev.status().engine_errors == 0
    assert process.returncode == 0


X = torch.zeros(2, 10, dtype=torch.int64)


def _weight_mult(sd, mult):
    return dataclasses.replace(sd, header=dataclasses.replace(sd.header, weight_mult=mult))


@pytest.mark.parametrize("call, message", [
    (lambda d, sd: d.linear(torch.zeros(2, 9, dtype=torch.int64), sd),
     "x must have 10 columns (the layer's inputs), not 9"),
    (lambda d, sd: d.linear(torch.full((2, 10), 128), sd),
     "x must hold int8 values (-128..127), not values 128..128"),
    (lambda d, sd: d.linear(torch.zeros(2, 10, dtype=torch.int64), sd, requant=(1 << 16, 0)),
     "requant multiplier must be between 0 and 65535, not 65536"),
    (lambda d, sd: d.linear(torch.zeros(2, 10, dtype=torch.int64), "weights"),
     "sd_weights must be SmartDealWeights, a smartdeal Decomposition or packed words, not str"),
    (lambda d, sd: d.linear(torch.zeros(2, 10, dtype=torch.int64), [1, 2, 3]),
     "sd_weights must be a valid packed layer: wrong length: a layer has at least 5 words, not 3"),
    (lambda d, sd: d.linear(torch.zeros(2, 51, dtype=torch.int64), random_layer(4, 51, seed=4)),
     "sd_weights must have at most 48 inputs (the device's), not 51"),
    (lambda d, sd: d.linear(X, random_layer(4, 10, seed=4, exponent_bits=3)),
     "sd_weights must have 2 exponent bits (the device's), not 3"),
    (lambda d, sd: d.linear(X, _weight_mult(sd, 3)),
     "sd_weights must have a power-of-two weight scale (weight multiplier 1), not 3"),
    (lambda d, sd: d.linear(X, random_layer(21, 10, seed=6)),
     "sd_weights must have at most 20 outputs (the device's), not 21"),
    (lambda d, sd: d.linear(X, sd, requant=(1, 64)),
     "requant shift must be between 0 and 63, not 64"),
    (lambda d, sd: d.linear(X, sd, requant=(1, 2, 3)),
     "requant must be None or a (multiplier, shift) pair of integers, not (1, 2, 3)"),
    (lambda d, sd: d.linear(X, sd, requant=(1.0, 2)),
     "requant must be None or a (multiplier, shift) pair of integers, not (1.0, 2)"),
    (lambda d, sd: d.linear(torch.zeros(0, 10, dtype=torch.int64), sd),
     "x must have at least one row, not 0"),
])
def test_bad_input_is_rejected_before_anything_is_sent(dev, call, message):
    sd = random_layer(7, 10, seed=1)
    sent = len(dev.transport.commands)              # INFO, at open
    with pytest.raises(SettingError) as error:
        call(dev, sd)
    assert str(error.value) == message
    assert dev.transport.commands[sent:] == []      # no request at all
    assert dev.smartdeal.last_link_bytes is None


@pytest.mark.parametrize("sd, message", [
    (random_layer(7, 30, seed=3), "sd_weights must have at most 8 block rows (the device's), "
                                  "not 10"),
    (random_layer(20, 24, seed=3), "sd_weights must have at most 64 packed words (the "
                                   "device's), not 103"),
])
def test_layers_beyond_the_device_are_rejected_before_anything_is_sent(sd, message):
    """A device with max_block_rows 8 and a 64-word weights buffer: a layer of 10-row
    blocks, a layer of 103 packed words (in every other limit)."""
    params = SmartDealParams(**{**PARAMS.to_dict(), "max_block_rows": 8, "weight_words": 64})
    with Device.open("model", accel="smartdeal", params=params) as device:
        sent = len(device.transport.commands)
        with pytest.raises(SettingError) as error:
            device.linear(torch.zeros(2, sd.header.length, dtype=torch.int64), sd)
        assert str(error.value) == message
        assert device.transport.commands[sent:] == []
        assert device.smartdeal.last_link_bytes is None
