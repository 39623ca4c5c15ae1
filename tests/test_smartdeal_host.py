"""dev.linear on the golden shell model: bit-exact with the integer SD linear layer, the
weights sent once, every bad input rejected before anything is sent."""

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
])
def test_bad_input_is_rejected_before_anything_is_sent(dev, call, message):
    sd = random_layer(7, 10, seed=1)
    with pytest.raises(SettingError) as error:
        call(dev, sd)
    assert str(error.value) == message
    assert dev.smartdeal.last_link_bytes is None
