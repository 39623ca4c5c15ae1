"""The digits ViT (golden/digits_vit.py) and the ViTCoD Q/K auto-encoder
(golden/vitcod/autoencoder.py): validation, determinism, and the integer model against an
independent reference written here in plain Python integers."""

import dataclasses
import random

import pytest
import torch

from celine.golden import digits_vit
from celine.golden.digits_vit import (DigitsViTConfig, attention_maps, capture_qkv, digits_dataset,
                                      train_vit, trained_vit, trained_vit_record)
from celine.golden.quant import quantize
from celine.golden.vitcod.autoencoder import (EPOCHS, AutoEncoder, QuantizedAutoEncoder,
                                              autoencoder_report, code_heads, decode_int,
                                              encode_int, fit_autoencoders, quantize_autoencoder,
                                              reconstruct_int, requant_params, train_autoencoder)

# A model small enough to train in a few seconds; its Q and K are those of a real (if
# weakly) trained transformer, which is what the auto-encoder is fitted to.
TINY = DigitsViTConfig(dim=24, depth=2, mlp_ratio=1, epochs=15)
AE_EPOCHS = EPOCHS           # the default: the AE converges to the PCA optimum


@pytest.fixture(scope="module")
def data():
    return digits_dataset()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, data):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CELINE_BUILD_DIR", str(tmp_path_factory.mktemp("build")))
        model, record = trained_vit_record(TINY, progress=False)
    return model


@pytest.fixture(scope="module")
def fitted(tiny, data):
    return fit_autoencoders(tiny, data.train_images, epochs=AE_EPOCHS, seed=0)


# -- reference integer model (independent of the module under test) ----------------------------

def ref_requantize(acc, mult, shift):
    y = (acc * mult + ((1 << shift) >> 1)) >> shift       # Python >> is an arithmetic shift
    return max(-128, min(127, y))


def ref_linear(weights, biases, mult, shift, x):
    """Plain loops: out[b][o][n][c] = requantize(sum_i W[o][i] * x[b][i][n][c] + bias[o])."""
    batch, inputs, tokens, dim = len(x), len(x[0]), len(x[0][0]), len(x[0][0][0])
    return [[[[ref_requantize(sum(weights[o][i] * x[b][i][n][c] for i in range(inputs)) + biases[o],
                              mult, shift)
               for c in range(dim)] for n in range(tokens)] for o in range(len(weights))]
            for b in range(batch)]


def random_qae(rng, heads, *, extreme=False):
    code = code_heads(heads)
    weight = (lambda: rng.choice([-128, 127])) if extreme else (lambda: rng.randint(-128, 127))
    bias = (lambda: rng.choice([-(1 << 31), (1 << 31) - 1, 0])) if extreme \
        else (lambda: rng.randint(-(1 << 20), 1 << 20))
    return QuantizedAutoEncoder(
        w_enc=[[weight() for _ in range(heads)] for _ in range(code)],
        b_enc=[bias() for _ in range(code)],
        enc_mult=rng.randint(0, 65535), enc_shift=rng.randint(0, 63),
        w_dec=[[weight() for _ in range(code)] for _ in range(heads)],
        b_dec=[bias() for _ in range(heads)],
        dec_mult=rng.randint(0, 65535), dec_shift=rng.randint(0, 63),
        in_scale=0.1, code_scale=0.2, out_scale=0.1)


def small_qae(heads=3, **changes):
    code = code_heads(heads)
    fields = dict(w_enc=[[1] * heads] * code, b_enc=[0] * code, enc_mult=1, enc_shift=0,
                  w_dec=[[1] * code] * heads, b_dec=[0] * heads, dec_mult=1, dec_shift=0,
                  in_scale=1.0, code_scale=1.0, out_scale=1.0)
    fields.update(changes)
    return QuantizedAutoEncoder(**fields)


# -- the integer model -------------------------------------------------------------------------

@pytest.mark.parametrize("heads", [1, 2, 3, 4, 6])
def test_integer_model_matches_reference(heads):
    rng = random.Random(heads)
    for trial in range(6):
        qae = random_qae(rng, heads, extreme=trial % 2 == 1)
        shape = (2, heads, 3, 4)
        x = torch.randint(-128, 128, shape, generator=torch.Generator().manual_seed(trial))
        if trial == 1:
            x = torch.full(shape, -128)                    # most-negative operands everywhere
        z = encode_int(qae, x)
        assert z.dtype == torch.int64 and z.shape == (2, code_heads(heads), 3, 4)
        assert z.tolist() == ref_linear(qae.w_enc, qae.b_enc, qae.enc_mult, qae.enc_shift,
                                        x.tolist())
        rebuilt = decode_int(qae, z)
        assert rebuilt.dtype == torch.int64 and rebuilt.shape == shape
        assert rebuilt.tolist() == ref_linear(qae.w_dec, qae.b_dec, qae.dec_mult, qae.dec_shift,
                                              z.tolist())


def test_integer_model_corner_cases():
    # -128 * -128 summed over 3 heads plus the largest bias, gain 1: saturates high; the
    # most negative bias saturates low; shift 63 with mult 65535 rounds everything to 0 or 1.
    x = torch.full((1, 3, 1, 2), -128)
    high = small_qae(w_enc=[[-128] * 3] * 2, b_enc=[(1 << 31) - 1, -(1 << 31)])
    assert encode_int(high, x).tolist() == [[[[127, 127]], [[-128, -128]]]]
    tiny_gain = small_qae(w_enc=[[-128] * 3] * 2, b_enc=[(1 << 31) - 1, -(1 << 31)],
                          enc_mult=65535, enc_shift=63)
    assert encode_int(tiny_gain, x).tolist() == \
        ref_linear(tiny_gain.w_enc, tiny_gain.b_enc, 65535, 63, x.tolist()) == \
        [[[[0, 0]], [[0, 0]]]]
    # Round half up: acc 3 at shift 1 is 1.5 -> 2, acc -3 -> -1.5 -> -1.
    half = small_qae(w_enc=[[1, 1, 1], [-1, -1, -1]], enc_shift=1)
    assert encode_int(half, torch.ones(1, 3, 1, 1, dtype=torch.int64)).flatten().tolist() == [2, -1]
    # The accumulator widths cover the worst case: 3 * 128 * 128 + 2^31 - 1 needs 33 bits;
    # all-one weights reach -384..381 over 3 heads (10 bits), -256..254 over 2 (9 bits).
    assert high.enc_acc_bits == 33 and small_qae().enc_acc_bits == 10
    assert small_qae().dec_acc_bits == 9


def test_integer_model_accepts_any_integer_dtype():
    qae = small_qae()
    x = torch.tensor([[[[-128, 127]], [[1, 2]], [[3, 4]]]], dtype=torch.int8)
    assert encode_int(qae, x).tolist() == encode_int(qae, x.to(torch.int32)).tolist()


# -- validation --------------------------------------------------------------------------------

@pytest.mark.parametrize("changes, error, message", [
    (dict(w_enc=[]), TypeError,
     "w_enc must be a non-empty tuple of non-empty rows of integers, not []"),
    (dict(w_enc=[[1, 1, 1]]), ValueError,
     "w_enc must be 2 rows of 3 integers, not [[1, 1, 1]]"),
    (dict(w_enc=[[1, 1, 1], [1, 1.0, 1]]), TypeError,
     "w_enc must be a tuple of 2 rows of 3 integers, not [1, 1.0, 1]"),
    (dict(w_enc=[[1, 1, 1], [1, 128, 1]]), ValueError,
     "w_enc entries must be between -128 and 127, not 128"),
    (dict(w_enc=[[1, 1, 1], [1, True, 1]]), TypeError,
     "w_enc must be a tuple of 2 rows of 3 integers, not [1, True, 1]"),
    (dict(b_enc=[0]), ValueError, "b_enc must be 2 integers, not [0]"),
    (dict(b_enc=[0, 1 << 31]), ValueError,
     "b_enc entries must be between -2147483648 and 2147483647, not 2147483648"),
    (dict(w_dec=[[1, 1]] * 2), ValueError,
     "w_dec must be 3 rows of 2 integers, not [[1, 1], [1, 1]]"),
    (dict(w_dec=[[1, 1], [1, 1], [1, -129]]), ValueError,
     "w_dec entries must be between -128 and 127, not -129"),
    (dict(b_dec="abc"), TypeError, "b_dec must be a tuple of 3 integers, not 'abc'"),
    (dict(enc_mult=65536), ValueError, "enc_mult must be between 0 and 65535, not 65536"),
    (dict(dec_mult=-1), ValueError, "dec_mult must be between 0 and 65535, not -1"),
    (dict(enc_shift=64), ValueError, "enc_shift must be between 0 and 63, not 64"),
    (dict(dec_shift=1.0), TypeError, "dec_shift must be an integer, not 1.0"),
    (dict(in_scale=0.0), ValueError, "in_scale must be a finite number above 0, not 0.0"),
    (dict(code_scale="1"), TypeError, "code_scale must be a real number, not '1'"),
    (dict(out_scale=float("inf")), ValueError,
     "out_scale must be a finite number above 0, not inf"),
])
def test_quantized_autoencoder_validation(changes, error, message):
    with pytest.raises(error) as info:
        small_qae(**changes)
    assert str(info.value) == message


def test_quantized_autoencoder_is_frozen_and_normalized():
    qae = small_qae()
    assert qae.w_enc == ((1, 1, 1), (1, 1, 1)) and qae.b_dec == (0, 0, 0)
    assert (qae.heads, qae.code_heads) == (3, 2)
    assert qae == small_qae() and hash(qae) == hash(small_qae())
    with pytest.raises(dataclasses.FrozenInstanceError):
        qae.enc_mult = 2


def test_integer_input_validation():
    qae = small_qae()
    cases = [
        (lambda: encode_int(qae, torch.zeros(1, 3, 2, 2)), TypeError,
         "x must be a 4-d integer tensor (B, heads, N, d), not tensor of dtype torch.float32 "
         "and shape (1, 3, 2, 2)"),
        (lambda: encode_int(qae, torch.zeros(3, 2, 2, dtype=torch.int64)), TypeError,
         "x must be a 4-d integer tensor (B, heads, N, d), not tensor of dtype torch.int64 "
         "and shape (3, 2, 2)"),
        (lambda: encode_int(qae, [[[[0]]]]), TypeError,
         "x must be a 4-d integer tensor (B, heads, N, d), not [[[[0]]]]"),
        (lambda: encode_int(qae, torch.zeros(1, 2, 2, 2, dtype=torch.int64)), ValueError,
         "x must have 3 heads on dim 1, not 2"),
        (lambda: encode_int(qae, torch.full((1, 3, 1, 1), 128)), ValueError,
         "x entries must be between -128 and 127, not 128"),
        (lambda: decode_int(qae, torch.zeros(1, 3, 1, 1, dtype=torch.int64)), ValueError,
         "z must have 2 heads on dim 1, not 3"),
        (lambda: decode_int(qae, torch.full((1, 2, 1, 1), -129)), ValueError,
         "z entries must be between -128 and 127, not -129"),
    ]
    for call, error, message in cases:
        with pytest.raises(error) as info:
            call()
        assert str(info.value) == message


def test_training_parameter_validation():
    x = torch.zeros(2, 3, 4, 5)
    cases = [
        (lambda: train_autoencoder(x, epochs=0), ValueError, "epochs must be at least 1, not 0"),
        (lambda: train_autoencoder(x, epochs=1.5), TypeError, "epochs must be an integer, not 1.5"),
        (lambda: train_autoencoder(x, seed=-1), ValueError, "seed must be at least 0, not -1"),
        (lambda: train_autoencoder(x, lr=0), ValueError,
         "lr must be a finite number above 0, not 0.0"),
        (lambda: train_autoencoder(x, batch_size=0), ValueError,
         "batch_size must be at least 1, not 0"),
        (lambda: train_autoencoder(x.to(torch.int64)), TypeError,
         "x must be a 4-d float tensor (B, H, N, d), not tensor of dtype torch.int64 and shape "
         "(2, 3, 4, 5)"),
        (lambda: train_autoencoder(torch.zeros(0, 3, 4, 5)), ValueError,
         "x must not be empty, not tensor of dtype torch.float32 and shape (0, 3, 4, 5)"),
        (lambda: quantize_autoencoder(AutoEncoder(3), torch.zeros(2, 4, 4, 5)), ValueError,
         "x must have 3 heads on dim 1, not 4"),
        (lambda: quantize_autoencoder(None, x), TypeError, "ae must be an AutoEncoder, not None"),
        (lambda: code_heads(0), ValueError, "heads must be at least 1, not 0"),
        (lambda: requant_params(0.0), ValueError, "ratio must be a finite number above 0, not 0.0"),
        (lambda: requant_params(65536.0), ValueError,
         "ratio must be below 65535.5 (mult 65535 at shift 0), not 65536.0"),
        (lambda: requant_params(2.0 ** -66), ValueError,
         f"ratio must be at least 2^-64 (mult 1 at shift 63), not {2.0 ** -66!r}"),
    ]
    for call, error, message in cases:
        with pytest.raises(error) as info:
            call()
        assert str(info.value) == message


def test_vit_config_validation():
    cases = [
        (dict(patch=3), ValueError, "patch must be 1 or 2 or 4 or 8, not 3"),
        (dict(dim=50), ValueError, "dim must be a multiple of heads (3), not 50"),
        (dict(heads=0), ValueError, "heads must be at least 1, not 0"),
        (dict(depth=True), TypeError, "depth must be an integer, not True"),
        (dict(epochs=0), ValueError, "epochs must be at least 1, not 0"),
        (dict(lr=-1.0), ValueError, "lr must be a finite number above 0, not -1.0"),
        (dict(weight_decay=-0.1), ValueError,
         "weight_decay must be a finite number >= 0, not -0.1"),
    ]
    for changes, error, message in cases:
        with pytest.raises(error) as info:
            DigitsViTConfig(**changes)
        assert str(info.value) == message
    with pytest.raises(TypeError, match=r"^config must be a DigitsViTConfig, not 3$"):
        trained_vit(3)


def test_requant_params_is_the_most_precise_representation():
    assert requant_params(1.0) == (32768, 15)
    assert requant_params(65535.0) == (65535, 0)
    assert requant_params(2.0 ** -64) == (1, 63)
    mult, shift = requant_params(0.3)
    assert 32768 <= mult <= 65535 and abs(mult / 2 ** shift - 0.3) <= 2.0 ** -(shift + 1)


# -- the digits ViT ----------------------------------------------------------------------------

def test_dataset_split_is_fixed(data):
    assert data.train_images.shape == (1437, 8, 8) and data.test_images.shape == (360, 8, 8)
    assert float(data.train_images.max()) == 1.0 and float(data.train_images.min()) == 0.0
    again = digits_dataset()
    assert torch.equal(again.test_labels, data.test_labels)
    assert torch.bincount(data.test_labels).tolist() == [36, 36, 35, 37, 36, 37, 36, 36, 35, 36]


def test_vit_training_is_deterministic_and_cached(tmp_path, monkeypatch, data):
    config = DigitsViTConfig(dim=12, depth=1, mlp_ratio=1, epochs=1)
    first, _ = train_vit(config, data, progress=False)
    second, _ = train_vit(config, data, progress=False)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    monkeypatch.setenv("CELINE_BUILD_DIR", str(tmp_path))
    model, record = trained_vit_record(config, progress=False)
    path = digits_vit.cache_path(config)
    assert path.parent == tmp_path / "models" and path.exists()
    assert record["digest"] == config.digest and set(record) >= {"test_accuracy", "train_seconds"}
    loaded = trained_vit(config, progress=False)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 loaded.state_dict().values()))
    assert digits_vit.cache_path(dataclasses.replace(config, seed=1)) != path


def test_capture_shapes(tiny, data):
    images = data.test_images[:5]
    qkv = capture_qkv(tiny, images)
    assert sorted(qkv) == [0, 1]
    for q, k, v in qkv.values():
        assert q.shape == k.shape == v.shape == (5, 3, 17, 8) and q.dtype == torch.float32
    maps = attention_maps(tiny, images)
    assert maps.shape == (2, 3, 17, 17)
    assert torch.allclose(maps.sum(-1), torch.ones(2, 3, 17))
    q, k, _ = qkv[1]
    scores = torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5, dim=-1).mean(0)
    assert torch.allclose(maps[1], scores, atol=1e-6)


# -- the auto-encoder on real Q and K ----------------------------------------------------------

def test_autoencoder_training_is_deterministic(tiny, data):
    q = capture_qkv(tiny, data.train_images[:200])[0][0]
    a, b = (train_autoencoder(q, epochs=2, seed=7) for _ in range(2))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    c = train_autoencoder(q, epochs=2, seed=8)
    assert not torch.equal(a.encoder.weight, c.encoder.weight)
    assert a.encode(q).shape == (200, 2, 17, 8) and a(q).shape == q.shape


def test_quantization_follows_the_float_scales(fitted):
    for (layer, name), (ae, qae) in fitted.items():
        assert max(abs(w) for row in qae.w_enc for w in row) == 127
        assert max(abs(w) for row in qae.w_dec for w in row) == 127
        assert qae.out_scale == qae.in_scale
        s_we = float(ae.encoder.weight.detach().abs().max()) / 127
        ratio = s_we * qae.in_scale / qae.code_scale
        assert abs(qae.enc_mult / 2 ** qae.enc_shift / ratio - 1) < 2 ** -15
        assert qae.enc_acc_bits <= 32 and qae.dec_acc_bits <= 32


def pca_error(train, test):
    """The best any affine rank-C reconstruction across heads can do (independent check)."""
    heads = train.shape[1]
    rows = train.double().movedim(1, -1).reshape(-1, heads)
    mean = rows.mean(0)
    basis = torch.linalg.svd(rows - mean, full_matrices=False).Vh[:code_heads(heads)]
    test_rows = test.double().movedim(1, -1).reshape(-1, heads)
    rebuilt = (test_rows - mean) @ basis.T @ basis + mean
    return float(torch.linalg.norm(rebuilt - test_rows) / torch.linalg.norm(test_rows))


def test_reconstruction_error_bounds(tiny, data, fitted):
    # Measured (tiny model, 20 AE epochs): reconstruction error 0.29-0.52 float, the integer
    # path within 0.0004 of it, int8 rounding alone 0.007-0.009; the float AE within 0.001
    # of the PCA optimum; attention error 0.17 and 0.57 (layers 0, 1), integer path within
    # 0.0005 of float. The heads of a model trained without the AE are nearly uncorrelated,
    # so no linear 3 -> 2 map rebuilds them much better.
    report = autoencoder_report(tiny, data=data, epochs=AE_EPOCHS, fitted=fitted)
    train_qkv, test_qkv = capture_qkv(tiny, data.train_images), capture_qkv(tiny, data.test_images)
    for entry in report["per_layer"]:
        layer = entry["layer"]
        for index, name in enumerate("qk"):
            errors = entry[name]["recon_rel_error"]
            optimum = pca_error(train_qkv[layer][index], test_qkv[layer][index])
            assert errors["float"] <= optimum + 0.005, (layer, name, errors, optimum)
            assert errors["int"] <= errors["float"] + 0.005, (layer, name, errors)
            assert errors["int8_only"] < 0.015 and errors["int"] < 0.65, (layer, name, errors)
            # The report's integer path is reconstruct_int itself.
            ae, qae = fitted[layer, name]
            x = test_qkv[layer][index]
            rebuilt = decode_int(qae, encode_int(qae, quantize(x, qae.in_scale)))
            assert torch.equal(reconstruct_int(qae, x), rebuilt.to(torch.float64) * qae.out_scale)
        attention = entry["attention_rel_error"]
        assert attention["int"] <= attention["float"] + 0.01 and attention["int"] < 0.7, attention
        assert attention["int8_only"] < 0.01, attention
    # Q and K, 2 layers, 17 tokens, head_dim 8: 3 heads plain, 2 compressed.
    assert report["bytes_plain"] == 2 * 2 * 3 * 17 * 8
    assert report["bytes_compressed"] == 2 * 2 * 2 * 17 * 8
    assert report["recon_rel_error"] < 0.5 and report["attention_rel_error"] < 0.5   # 0.42, 0.41


def test_full_model_if_cached(data):
    """On the default (cached) digits ViT, when present, 10 AE epochs: measured integer
    reconstruction error 0.43-0.52 per layer and Q/K (0.48 pooled), attention error 0.35-0.48 (0.43
    pooled), int8 rounding alone 0.008-0.010 and 0.005-0.006."""
    if not digits_vit.cache_path(DigitsViTConfig()).exists():
        pytest.skip("the default digits ViT is not cached (python -m celine.golden.digits_vit)")
    model, record = trained_vit_record(progress=False)
    assert record["test_accuracy"] > 0.95
    report = autoencoder_report(model, data=data, epochs=10)      # half the default: faster
    assert report["recon_rel_error"] < 0.55 and report["attention_rel_error"] < 0.55
    for entry in report["per_layer"]:
        assert entry["attention_rel_error"]["int"] < 0.6
        for name in "qk":
            assert entry[name]["recon_rel_error"]["int"] < 0.6
            assert entry[name]["recon_rel_error"]["int8_only"] < 0.015
