"""dev.vitcod on the golden shell model: the host's polarization, lists and scales give
results bit-exact with attention_head_int on the same plan, and every tensor the device
cannot take is rejected before anything is sent."""

import pytest
import torch

from celine.engines.vitcod.spec import VitcodParams
from celine.firmware.device import Device
from celine.firmware.errors import SettingError
from celine.golden.vitcod.attention import attention_head_int
from celine.golden.vitcod.mask import load_deit_masks, random_mask
from celine.golden.vitcod.plan import calibrate_head, plan_head

SMALL = VitcodParams(head_dim=16, max_tokens=24, heads=2, max_global=8, sparse_capacity=400,
                     dense_macs=8, sparse_macs=8, out_lanes=4)


def expected(params, q, k, v, mask, threshold=50, scales=(1.0, 1.0, 1.0)):
    plan = plan_head(params, q, k, v, mask, threshold=threshold)
    head_scales, _ = calibrate_head(plan, params, scales=scales)
    return attention_head_int(plan.q, plan.k, plan.v, plan.kept, head_scales, params)


@pytest.fixture
def dev():
    with Device.open("model", accel="vitcod", params=SMALL) as device:
        yield device


def test_sparse_and_dense_heads(dev):
    torch.manual_seed(0)
    q, k, v = (torch.randint(-128, 128, (2, 20, 16)) for _ in range(3))
    masks = torch.stack([random_mask(20, 0.8, seed=1), random_mask(20, 0.6, seed=2)])
    outs = dev.sparse_attention(q, k, v, masks, threshold=6)
    for h in range(2):
        assert torch.equal(outs[h], expected(SMALL, q[h], k[h], v[h], masks[h], threshold=6))
    dense = dev.vitcod.sparse_attention(q[0], k[0], v[0], None, threshold=6)
    assert torch.equal(dense, expected(SMALL, q[0], k[0], v[0], None, threshold=6))
    assert dev.vitcod.last_plans[0].globals == 8                # max_global columns
    skipped = dev.sparse_attention(q, k, v, masks, head_mask=0b01, threshold=6)
    assert len(skipped) == 1 and torch.equal(skipped[0], outs[1])


def test_deit_mask_head():
    p = VitcodParams(head_dim=16, max_tokens=197, heads=1, max_global=32, sparse_capacity=4096,
                     dense_macs=8, sparse_macs=8, out_lanes=4)
    kept = load_deit_masks()[1, 1]
    torch.manual_seed(3)
    q, k, v = (torch.randint(-128, 128, (197, 16)) for _ in range(3))
    with Device.open("model", accel="vitcod", params=p) as dev:
        out = dev.sparse_attention(q, k, v, kept, scales=(0.02, 0.02, 0.05))
    assert torch.equal(out, expected(p, q, k, v, kept, scales=(0.02, 0.02, 0.05)))


@pytest.mark.parametrize("call, message", [
    (lambda d, q: d.sparse_attention(q, q, q[:, :5]),
     "v must have the shape of q (20, 16), not (20, 5)"),
    (lambda d, q: d.sparse_attention(q[:, :8], q[:, :8], q[:, :8]),
     "head_dim must be 16 (the device's), not 8"),
    (lambda d, q: d.sparse_attention(q * 2, q, q),
     "q must hold int8 values (-128..127), not values -256..254"),
    (lambda d, q: d.sparse_attention(torch.zeros(25, 16, dtype=torch.int64),
                                     torch.zeros(25, 16, dtype=torch.int64),
                                     torch.zeros(25, 16, dtype=torch.int64)),
     "tokens must be between 1 and 24, not 25"),
    (lambda d, q: d.sparse_attention(q, q, q, torch.ones(20, 19, dtype=torch.bool)),
     "mask must be None or a bool tensor of shape (20, 20) or (1, 20, 20) (True = kept), "
     "not torch.bool (20, 19)"),
    (lambda d, q: d.sparse_attention(q, q, q, torch.eye(20, dtype=torch.bool) & False),
     "head 0: mask must keep at least one entry in every row, not none in row 0"),
    (lambda d, q: d.sparse_attention(q, q, q, scales=(1.0, -1.0, 1.0)),
     "scales must be three positive numbers (s_q, s_k, s_v), not (1.0, -1.0, 1.0)"),
])
def test_rejected_before_sending(dev, call, message):
    q = torch.randint(-100, 100, (20, 16))
    q[0, 0], q[1, 1] = -128, 127
    sent = []
    write = dev.write_buffer
    dev.write_buffer = lambda *a, **k: sent.append(a) or write(*a, **k)
    with pytest.raises(SettingError) as info:
        call(dev, q)
    assert str(info.value) == message
    assert not sent


def test_over_capacity_rejected(dev):
    q = torch.zeros(21, 16, dtype=torch.int64)
    with pytest.raises(SettingError) as info:
        dev.sparse_attention(q, q, q, torch.ones(21, 21, dtype=torch.bool), threshold=50)
    assert str(info.value) == ("head 0: mask must fit the engine: 441 sparse entries after "
                               "0 global columns, capacity 400")
