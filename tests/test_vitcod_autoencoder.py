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
from celine.golden.vitcod import autoencoder
from celine.golden.vitcod.autoencoder import (EPOCHS, AutoEncoder, FinetuneConfig,
                                              QuantizedAutoEncoder, autoencoder_report,
                                              code_heads, decode_int, encode_int,
                                              evaluate_autoencoders, finetune,
                                              finetuned_vit_autoencoders, fit_autoencoders,
                                              quantize_autoencoder, quantize_autoencoders,
                                              reconstruct_int, train_autoencoder,
                                              vit_autoencoders)

# A model small enough to train in about five seconds (test accuracy 85%); its Q and K are
# those of a real (if small) trained transformer, which is what the auto-encoder is fitted to.
TINY = DigitsViTConfig(dim=24, depth=2, mlp_ratio=1, epochs=20, lr=5e-3, batch_size=32)
AE_EPOCHS = EPOCHS           # the default: the AE converges to the PCA optimum
TINY_FINETUNE = FinetuneConfig(ae_epochs=5, epochs=10)     # a few seconds on TINY


@pytest.fixture(scope="module")
def data():
    return digits_dataset()


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    """A build directory for this module's models (TINY's cache is shared by its tests)."""
    return tmp_path_factory.mktemp("build")


@pytest.fixture(scope="module")
def tiny(build, data):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CELINE_BUILD_DIR", str(build))
        model, record = trained_vit_record(TINY, progress=False)
    return model


@pytest.fixture(scope="module")
def fitted(tiny, data):
    return fit_autoencoders(tiny, data.train_images, epochs=AE_EPOCHS, seed=0)


@pytest.fixture(scope="module")
def quantized(tiny, data, fitted):
    return quantize_autoencoders(tiny, fitted, data.train_images)


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
        (lambda: vit_autoencoders(3), TypeError, "vit_config must be a DigitsViTConfig, not 3"),
        (lambda: vit_autoencoders(None, 3), TypeError, "config must be a FinetuneConfig, not 3"),
        (lambda: finetune(None, {}, None, None), TypeError,
         "config must be a FinetuneConfig, not None"),
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


@pytest.mark.parametrize("changes, error, message", [
    (dict(ae_epochs=0), ValueError, "ae_epochs must be at least 1, not 0"),
    (dict(epochs=2.0), TypeError, "epochs must be an integer, not 2.0"),
    (dict(batch_size=0), ValueError, "batch_size must be at least 1, not 0"),
    (dict(lr=0.0), ValueError, "lr must be a finite number above 0, not 0.0"),
    (dict(ae_lr="1"), TypeError, "ae_lr must be a real number, not '1'"),
    (dict(recon_weight=-0.5), ValueError, "recon_weight must be a finite number >= 0, not -0.5"),
    (dict(recon_weight=float("nan")), ValueError,
     "recon_weight must be a finite number >= 0, not nan"),
    (dict(finetune_vit=1), TypeError, "finetune_vit must be True or False, not 1"),
    (dict(seed=-1), ValueError, "seed must be at least 0, not -1"),
])
def test_finetune_config_validation(changes, error, message):
    with pytest.raises(error) as info:
        FinetuneConfig(**changes)
    assert str(info.value) == message


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


def test_quantization_follows_the_float_scales(fitted, quantized):
    for layer, pair in fitted.items():
        for ae, qae in zip(pair, quantized[layer]):
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


def test_reconstruction_error_bounds(tiny, data, fitted, quantized):
    # Measured (TINY, 20 AE epochs, reconstruction only): error 0.44-0.53 float, the integer
    # path within 0.0005 of it, int8 rounding alone 0.008-0.009; the float AE within 0.0001
    # of the PCA optimum; attention error 0.51 and 0.40 (layers 0, 1), integer path within
    # 0.0005 of float; test accuracy 85% without AE, 63% (float) and 64% (int) with them.
    # The heads of a model trained without the AE are nearly uncorrelated, so no linear
    # 3 -> 2 map rebuilds them much better: hence the fine-tuning.
    report = evaluate_autoencoders(tiny, fitted, quantized, data)
    train_qkv, test_qkv = capture_qkv(tiny, data.train_images), capture_qkv(tiny, data.test_images)
    for entry in report["per_layer"]:
        layer = entry["layer"]
        for index, name in enumerate("qk"):
            errors = entry[name]["recon_rel_error"]
            optimum = pca_error(train_qkv[layer][index], test_qkv[layer][index])
            assert errors["float"] <= optimum + 0.005, (layer, name, errors, optimum)
            assert errors["int"] <= errors["float"] + 0.005, (layer, name, errors)
            assert errors["int8_only"] < 0.015 and errors["int"] < 0.6, (layer, name, errors)
            # The report's integer path is reconstruct_int itself.
            qae = quantized[layer][index]
            x = test_qkv[layer][index]
            rebuilt = decode_int(qae, encode_int(qae, quantize(x, qae.in_scale)))
            assert torch.equal(reconstruct_int(qae, x), rebuilt.to(torch.float64) * qae.out_scale)
        attention = entry["attention_rel_error"]
        assert attention["int"] <= attention["float"] + 0.01 and attention["int"] < 0.6, attention
        assert attention["int8_only"] < 0.015, attention
    assert report["recon_rel_error"]["int"] < 0.55 and report["attention_rel_error"]["int"] < 0.5
    accuracy = report["test_accuracy"]
    assert accuracy["without_ae"] > 0.8 and accuracy["int"] < accuracy["without_ae"] - 0.1


# -- fine-tuning with the auto-encoders in the loop ---------------------------------------------

def test_finetune_is_deterministic(tiny, data, fitted):
    config = FinetuneConfig(epochs=1, batch_size=128)
    before = [t.clone() for t in tiny.state_dict().values()]
    runs = [finetune(tiny, fitted, config, data) for _ in range(2)]
    (model, aes, _), (again, aes_again, _) = runs
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 again.state_dict().values()))
    for layer in fitted:
        for ae, other, start in zip(aes[layer], aes_again[layer], fitted[layer]):
            assert all(torch.equal(a, b) for a, b in zip(ae.state_dict().values(),
                                                         other.state_dict().values()))
            assert not torch.equal(ae.encoder.weight, start.encoder.weight)     # it trained
    # The inputs are left alone (copies are trained); the ViT's weights train too.
    assert all(torch.equal(a, b) for a, b in zip(tiny.state_dict().values(), before))
    assert not torch.equal(model.blocks[0].attn.qkv.weight, tiny.blocks[0].attn.qkv.weight)
    assert not model.training and all(p.requires_grad for p in model.parameters())
    # finetune_vit=False trains only the AEs; another seed gives other weights.
    frozen, frozen_aes, _ = finetune(tiny, fitted, dataclasses.replace(config, finetune_vit=False),
                                     data)
    assert all(torch.equal(a, b) for a, b in zip(frozen.state_dict().values(), before))
    assert not torch.equal(frozen_aes[0][0].encoder.weight, fitted[0][0].encoder.weight)
    other, _, _ = finetune(tiny, fitted, dataclasses.replace(config, seed=1), data)
    assert not torch.equal(other.blocks[0].attn.qkv.weight, model.blocks[0].attn.qkv.weight)


def test_finetuned_tiny_model(build, monkeypatch, tiny, data):
    """TINY fine-tuned in the test (TINY_FINETUNE: 5 AE epochs, 10 fine-tune epochs).

    Measured: reconstruction-only AEs in TINY: error 0.475 (int, pooled), attention 0.44,
    test accuracy 85% -> 64%; fine-tuned: error 0.28 (0.27-0.31 per layer and Q/K),
    attention 0.24, accuracy 83% (float and int; the fine-tuned ViT alone 79%).
    """
    monkeypatch.setenv("CELINE_BUILD_DIR", str(build))
    report = autoencoder_report(TINY, TINY_FINETUNE, data=data)
    path = autoencoder.finetune_cache_path(TINY, TINY_FINETUNE)
    assert path.parent == build / "models" and path.exists()
    assert report["digest"] == TINY_FINETUNE.digest(TINY) and report["default"] == "finetuned"
    assert report["vit_digest"] in report["reconstruction_only"]["qk_from"]
    assert report["digest"] in report["finetuned"]["qk_from"]
    # Q and K, 2 layers, 17 tokens, head_dim 8: 3 heads plain, 2 compressed.
    assert report["bytes_plain"] == 2 * 2 * 3 * 17 * 8
    assert report["bytes_compressed"] == 2 * 2 * 2 * 17 * 8
    assert all(entry["bytes_plain"] == 2 * 3 * 17 * 8 and
               entry["bytes_compressed"] == 2 * 2 * 17 * 8
               for entry in report["finetuned"]["per_layer"])
    assert set(report["train_seconds"]) == {"vit", "autoencoders", "finetune", "total"}
    # The top-level figures are the fine-tuned integer path, pooled.
    tuned, plain = report["finetuned"], report["reconstruction_only"]
    assert report["recon_rel_error"] == tuned["recon_rel_error"]["int"]
    assert report["attention_rel_error"] == tuned["attention_rel_error"]["int"]
    accuracy = report["test_accuracy"]
    assert accuracy["without_ae"] == plain["test_accuracy"]["without_ae"] > 0.8
    assert accuracy["reconstruction_only"]["int"] < 0.7
    assert min(accuracy["finetuned"].values()) > accuracy["reconstruction_only"]["int"] + 0.1
    assert tuned["recon_rel_error"]["int"] < 0.35 < 0.45 < plain["recon_rel_error"]["int"]
    assert tuned["attention_rel_error"]["int"] < 0.3
    for entry in tuned["per_layer"]:
        for name in "qk":
            errors = entry[name]["recon_rel_error"]
            assert errors["int"] <= errors["float"] + 0.005 and errors["int"] < 0.4, errors
            assert errors["int8_only"] < 0.015, errors
        attention = entry["attention_rel_error"]
        assert attention["int"] <= attention["float"] + 0.01 and attention["int"] < 0.35
    # Cached: loaded again, not retrained (the record, timings included, is the stored one).
    model, aes, record = finetuned_vit_autoencoders(TINY, TINY_FINETUNE)
    assert record["train_seconds"] == report["train_seconds"]
    assert sorted(aes) == [0, 1] and all(len(pair) == 2 for pair in aes.values())
    again = vit_autoencoders(TINY, TINY_FINETUNE)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(),
                                                 again.model.state_dict().values()))
    assert torch.equal(again.vit.blocks[0].attn.qkv.weight, tiny.blocks[0].attn.qkv.weight)
    assert autoencoder.finetune_cache_path(TINY, dataclasses.replace(TINY_FINETUNE, seed=1)) != path
    assert autoencoder.finetune_cache_path(dataclasses.replace(TINY, seed=1), TINY_FINETUNE) != path


@pytest.mark.sweep          # trains the default model (about a minute) unless cached
def test_full_model(data):
    """The default path (DigitsViTConfig(), FinetuneConfig()), when cached (python -m
    celine.golden.vitcod.autoencoder). Measured: reconstruction-only AEs: error 0.48
    (0.43-0.52 per layer and Q/K), attention 0.41, test accuracy 99.2% -> 79.2% (float),
    79.4% (int); fine-tuned: error 0.075 int pooled (0.046-0.108 per layer and Q/K, the
    integer path within 0.004 of float), attention 0.037 (0.014-0.076 per layer), accuracy
    98.6% (float and int), the fine-tuned ViT alone 98.9%; int8 rounding alone 0.008-0.013
    (Q/K) and 0.004-0.006 (attention). Trained in 63 s (ViT 37, AEs 8.5, fine-tune 17.5)."""
    report = autoencoder_report(data=data)
    accuracy = report["test_accuracy"]
    assert accuracy["without_ae"] > 0.98
    assert accuracy["reconstruction_only"]["float"] < 0.85
    assert min(accuracy["finetuned"].values()) > 0.97
    assert report["recon_rel_error"] < 0.1 and report["attention_rel_error"] < 0.06
    assert report["reconstruction_only"]["recon_rel_error"]["int"] > 0.45
    assert report["bytes_plain"] == 2 * 4 * 3 * 17 * 16          # Q and K, 4 layers, int8
    assert report["bytes_compressed"] == 2 * 4 * 2 * 17 * 16
    for entry in report["finetuned"]["per_layer"]:
        assert entry["attention_rel_error"]["int"] < 0.12
        for name in "qk":
            errors = entry[name]["recon_rel_error"]
            assert errors["int"] < 0.15 and errors["int"] <= errors["float"] + 0.006
            assert errors["int8_only"] < 0.015
