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


def test_plan_is_logical(dev):
    """Polarization does not move K or V: the global columns travel as token indices (here
    3, 7 and 12, not the first tokens), the mask stays in token order and the lists carry
    token indices outside the global columns."""
    from celine.engines.vitcod.spec import csr_fields, unpack_word
    torch.manual_seed(2)
    q, k, v = (torch.randint(-128, 128, (16, 16)) for _ in range(3))
    mask = random_mask(16, 0.8, seed=9)
    mask[:, [3, 7, 12]] = True
    mask[:, [0, 1, 2]] = False
    mask[0] = True
    plan = plan_head(SMALL, q, k, v, mask, threshold=12)
    assert plan.gcols == (3, 7, 12) and plan.globals == 3
    assert plan.q is q and plan.k is k and plan.v is v
    assert torch.equal(plan.kept, mask)
    csr = [tuple(unpack_word(csr_fields(SMALL), w).values()) for w in plan.csr_words]
    assert csr == [(i, j) for i in range(16) for j in range(16)
                   if mask[i, j] and j not in (3, 7, 12)]
    out = dev.vitcod.sparse_attention(q, k, v, mask, threshold=12)
    assert torch.equal(out, expected(SMALL, q, k, v, mask, threshold=12))


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


# -- Q and K sent compressed (autoencoder=) --------------------------------------------------

AE = VitcodParams(head_dim=16, max_tokens=24, heads=3, max_global=8, sparse_capacity=400,
                  dense_macs=8, sparse_macs=8, out_lanes=4, autoencoder=True)


def random_qae(seed, heads=3):
    """A QuantizedAutoEncoder of random int8 weights, small biases and scales that keep
    most values inside int8."""
    from celine.golden.vitcod.autoencoder import QuantizedAutoEncoder, code_heads
    g = torch.Generator().manual_seed(seed)
    code = code_heads(heads)

    def ints(*shape, lo=-128, hi=127):
        return torch.randint(lo, hi + 1, shape, generator=g).tolist()
    return QuantizedAutoEncoder(w_enc=ints(code, heads), b_enc=ints(code, lo=-999, hi=999),
                                enc_mult=40000, enc_shift=22, w_dec=ints(heads, code),
                                b_dec=ints(heads, lo=-999, hi=999), dec_mult=40000,
                                dec_shift=21, in_scale=1.0, code_scale=1.0, out_scale=1.0)


def test_compressed_q_and_k():
    """The device decodes what the host encoded: the result is attention on
    decode_int(encode_int(.)) of Q and of K, both in token order for every head (the heads'
    masks differ: their global columns are different tokens), with the plan built on the
    decoded heads; a plain call on the same device after it turns the decoders off."""
    from celine.golden.vitcod.autoencoder import decode_int, encode_int
    torch.manual_seed(4)
    q, k, v = (torch.randint(-128, 128, (3, 20, 16)) for _ in range(3))
    masks = torch.stack([random_mask(20, 0.8, seed=5), random_mask(20, 0.6, seed=6),
                         random_mask(20, 0.7, seed=7)])
    gcols = [plan_head(AE, q[h], k[h], v[h], masks[h], threshold=6).gcols for h in range(3)]
    assert len(set(gcols)) == 3 and all(gcols)          # per-head global columns
    qaes = (random_qae(1), random_qae(2))
    with Device.open("model", accel="vitcod", params=AE) as dev:
        outs = dev.sparse_attention(q, k, v, masks, threshold=6, autoencoder=qaes)
        q_dec = decode_int(qaes[0], encode_int(qaes[0], q[None]))[0]
        k_dec = decode_int(qaes[1], encode_int(qaes[1], k[None]))[0]
        q_host, k_host, _ = dev.vitcod.compress(q, k, v, masks, threshold=6, autoencoder=qaes)
        assert torch.equal(q_host, q_dec) and torch.equal(k_host, k_dec)
        for h in range(3):
            assert torch.equal(outs[h], expected(AE, q_dec[h], k_dec[h], v[h], masks[h],
                                                 threshold=6))
            assert torch.equal(dev.vitcod.last_plans[h].q, q_dec[h])
            assert torch.equal(dev.vitcod.last_plans[h].k, k_dec[h])
        assert not torch.equal(q_dec, q)
        assert dev.vitcod.last_link_bytes == {"plain": 2 * 3 * 20 * 16,
                                              "compressed": 2 * 2 * 20 * 16,
                                              "ae_registers": 4 * 2 * (2 + 3 + 2)}
        skipped = dev.sparse_attention(q, k, v, masks, threshold=6, head_mask=0b010,
                                       autoencoder=qaes)
        assert len(skipped) == 2
        assert dev.vitcod.last_link_bytes["plain"] == 2 * 2 * 20 * 16
        plain = dev.sparse_attention(q, k, v, masks, threshold=6)
        assert all(torch.equal(plain[h], expected(AE, q[h], k[h], v[h], masks[h], threshold=6))
                   for h in range(3))
        assert dev.vitcod.last_link_bytes == {"plain": 2 * 3 * 20 * 16,
                                              "compressed": 2 * 3 * 20 * 16, "ae_registers": 0}


def test_autoencoder_rejected():
    q = torch.randint(-100, 100, (3, 20, 16))
    cases = [
        (SMALL, q[:2], (random_qae(1), random_qae(2)),
         "autoencoder must be None on a device built without the auto-encoder, not a pair "
         "of QuantizedAutoEncoders"),
        (AE, q, random_qae(1),
         "autoencoder must be None or a pair (Q's, K's) of QuantizedAutoEncoders, not "
         + repr(random_qae(1))),
        (AE, q, (random_qae(1), random_qae(2, heads=4)),
         "the k autoencoder must have 3 heads (the device's), not 4"),
        (AE, q[:2], (random_qae(1), random_qae(2)),
         "q must hold all 3 heads (the device's) with an autoencoder, not 2"),
        (AE, q[0], (random_qae(1), random_qae(2)),
         "q must hold all 3 heads (the device's) with an autoencoder, not 1"),
    ]
    for params, x, qaes, message in cases:
        with Device.open("model", accel="vitcod", params=params) as dev:
            sent = []
            write = dev.write_buffer
            dev.write_buffer = lambda *a, **kw: sent.append(a) or write(*a, **kw)
            with pytest.raises(SettingError) as info:
                dev.sparse_attention(x, x, x, autoencoder=qaes)
            assert str(info.value) == message
            assert not sent


# -- Q and K encoded on chip (encode_on_chip=, encode) ------------------------------------------


def test_encoded_on_chip():
    """encode_on_chip: Q and K travel plain and the engine's encoders compress them before
    its decoders rebuild them: the same result as the host's compression, bit for bit, and
    the code slots hold encode_int of every head (the skipped one too)."""
    from celine.engines.vitcod.spec import code_word
    from celine.firmware.words import unpack_words
    from celine.golden.vitcod.autoencoder import decode_int, encode_int
    torch.manual_seed(8)
    q, k, v = (torch.randint(-128, 128, (3, 20, 16)) for _ in range(3))
    masks = torch.stack([random_mask(20, 0.8, seed=9), random_mask(20, 0.6, seed=10),
                         random_mask(20, 0.7, seed=11)])
    qaes = (random_qae(3), random_qae(4))
    q_dec = decode_int(qaes[0], encode_int(qaes[0], q[None]))[0]
    k_dec = decode_int(qaes[1], encode_int(qaes[1], k[None]))[0]
    with Device.open("model", accel="vitcod", params=AE) as dev:
        outs = dev.sparse_attention(q, k, v, masks, threshold=6, autoencoder=qaes,
                                    encode_on_chip=True, head_mask=0b100)
        assert len(outs) == 2
        for h in range(2):
            assert torch.equal(outs[h], expected(AE, q_dec[h], k_dec[h], v[h], masks[h],
                                                 threshold=6))
        assert dev.vitcod.last_link_bytes == {"plain": 2 * 2 * 20 * 16,
                                              "compressed": 2 * 3 * 20 * 16,
                                              "ae_registers": 4 * 2 * ((2 + 3 + 2) + (2 + 2 + 2))}
        for name, x, qae in (("q", q, qaes[0]), ("k", k, qaes[1])):
            z = encode_int(qae, x[None])[0]
            for c in range(2):
                data = dev.read_buffer(name, code_word(AE, c, 0) * 16, 20 * 16)
                assert torch.equal(unpack_words(data, 20, 16, 8, 16), z[c])
        # The host's compression gives the same words.
        assert all(torch.equal(a, b) for a, b in zip(outs, dev.sparse_attention(
            q, k, v, masks, threshold=6, autoencoder=qaes, head_mask=0b100)))


def test_encode_reads_the_codes_back():
    """dev.vitcod.encode: the engine's encoders alone (no head runs), the code slots read
    back == encode_int; then a plain call on the same device is plain again."""
    from celine.golden.vitcod.autoencoder import encode_int
    torch.manual_seed(12)
    q, k, v = (torch.randint(-128, 128, (3, 17, 16)) for _ in range(3))
    q[0, 0], k[2, 16] = -128, -128
    qaes = (random_qae(5), random_qae(6))
    with Device.open("model", accel="vitcod", params=AE) as dev:
        codes = dev.vitcod.encode(q, k, autoencoder=qaes)
        assert len(codes) == 2 and codes[0].shape == (2, 17, 16)
        assert torch.equal(codes[0], encode_int(qaes[0], q[None])[0])
        assert torch.equal(codes[1], encode_int(qaes[1], k[None])[0])
        assert dev.vitcod.last_link_bytes == {"plain": 2 * 3 * 17 * 16,
                                              "compressed": 2 * 2 * 17 * 16,
                                              "ae_registers": 4 * 2 * (2 + 2 + 2)}
        plain = dev.sparse_attention(q, k, v, None, threshold=6)
        assert all(torch.equal(plain[h], expected(AE, q[h], k[h], v[h], None, threshold=6))
                   for h in range(3))


def test_encoding_rejected():
    q = torch.randint(-100, 100, (3, 20, 16))
    qaes = (random_qae(1), random_qae(2))
    cases = [
        (AE, lambda d: d.sparse_attention(q, q, q, autoencoder=qaes, encode_on_chip=1),
         "encode_on_chip must be True or False, not 1"),
        (AE, lambda d: d.sparse_attention(q, q, q, encode_on_chip=True),
         "encode_on_chip must be False without an autoencoder, not True"),
        (AE, lambda d: d.sparse_attention(q[:2], q[:2], q[:2], autoencoder=qaes,
                                          encode_on_chip=True),
         "q must hold all 3 heads (the device's) with an autoencoder, not 2"),
        (SMALL, lambda d: d.vitcod.encode(q[:2], q[:2], autoencoder=qaes),
         "autoencoder must be None on a device built without the auto-encoder, not a pair "
         "of QuantizedAutoEncoders"),
        (AE, lambda d: d.vitcod.encode(q, q, autoencoder=qaes[0]),
         "autoencoder must be None or a pair (Q's, K's) of QuantizedAutoEncoders, not "
         + repr(qaes[0])),
        (AE, lambda d: d.vitcod.encode(q[1], q[1], autoencoder=qaes),
         "q must hold all 3 heads (the device's) with an autoencoder, not 1"),
        (AE, lambda d: d.vitcod.encode(q, q[:, :5], autoencoder=qaes),
         "k must have the shape of q (3, 20, 16), not (3, 5, 16)"),
        (AE, lambda d: d.vitcod.encode(q * 2, q, autoencoder=qaes),
         "q must hold int8 values (-128..127), not values -200..198"),
    ]
    for params, call, message in cases:
        with Device.open("model", accel="vitcod", params=params) as dev:
            sent = []
            write = dev.write_buffer
            dev.write_buffer = lambda *a, **kw: sent.append(a) or write(*a, **kw)
            with pytest.raises(SettingError) as info:
                call(dev)
            assert str(info.value) == message
            assert not sent
