"""The ViTCoD Q/K auto-encoder: float model, training, int8 quantization, integer model.

ViTCoD moves Q and K compressed across heads: per layer, and for Q and K separately, an
encoder Linear(H -> C) and a decoder Linear(C -> H), C = ceil(H/2), both with bias, act on
the vector of the H heads' values at one (token, feature) position. For x of shape
(B, H, N, d) the input vector at (b, n, c) is x[b, :, n, c]; the code z has shape
(B, C, N, d). The same two layers serve every position. V is not compressed.

Integer model (what the encoder and decoder engines compute, bit-exact):

    encoder, for every output head j < C and position (b, n, c):
        acc    = sum_{i<H} w_enc[j][i] * x[b, i, n, c] + b_enc[j]
        z[b, j, n, c] = clamp((acc * enc_mult + 2^(enc_shift-1)) >> enc_shift, -128, 127)
    decoder, for every output head h < H:
        acc    = sum_{j<C} w_dec[h][j] * z[b, j, n, c] + b_dec[h]
        x'[b, h, n, c] = clamp((acc * dec_mult + 2^(dec_shift-1)) >> dec_shift, -128, 127)

that is one MAC reduction of length H (encoder) or C (decoder) per output element, one
bias add and the common requantizer (`quant.requantize`: arithmetic shift, round half up,
saturate; no rounding term when the shift is 0). x, z, x', w_* are int8, b_* int32, mult
16-bit unsigned, shift 6-bit. The products and the sum are exact; the worst-case
accumulator width is `QuantizedAutoEncoder.enc_acc_bits` / `dec_acc_bits`.

Scales (real = scale * integer), chosen by `quantize_autoencoder` from float data:
in_scale = max|x| / 127 over the calibration data (the per-tensor scale of `quant.quantize`);
the weights' scales s_we = max|W_enc| / 127, s_wd = max|W_dec| / 127; the biases are in
the accumulators' scales, b_enc = round(b / (s_we * in_scale)), b_dec = round(b / (s_wd *
code_scale)); code_scale = max|z| / 127 of the float codes of the calibration data;
out_scale = in_scale by default, so a decoded Q or K has the scale the attention engine
expects of the original. enc_mult / 2^enc_shift ~= s_we * in_scale / code_scale and
dec_mult / 2^dec_shift ~= s_wd * code_scale / out_scale (`requant_params`).

`python -m celine.golden.vitcod.autoencoder` trains the auto-encoders on the digits ViT
(celine.golden.digits_vit) and prints `autoencoder_report()` as JSON.
"""

import dataclasses
import json
import math
import numbers

import torch
from torch import nn

from ...spec.checks import check_int
from ...spec.numerics import MULT_BITS, SHIFT_BITS
from ..activation import check_scale
from ..digits_vit import (accuracy, capture_qkv, deterministic, digits_dataset,
                          trained_vit)
from ..quant import quantize, requantize, signed_range, signed_width
from ..taylor import softmax_attention

INT8_LO, INT8_HI = signed_range(8)
INT32_LO, INT32_HI = signed_range(32)
MULT_MAX = (1 << MULT_BITS) - 1
SHIFT_MAX = (1 << SHIFT_BITS) - 1

EPOCHS = 20                 # default auto-encoder training length (passes over the data)
BATCH = 4096                # positions per Adam step
LR = 1e-2


def code_heads(heads):
    """C = ceil(H/2): the heads of the compressed representation."""
    return (check_int("heads", heads, minimum=1) + 1) // 2


# -- float model -----------------------------------------------------------------------------

class AutoEncoder(nn.Module):
    """Linear(H -> C) and Linear(C -> H) across the heads of (B, H, N, d) tensors."""

    def __init__(self, heads):
        super().__init__()
        self.heads = heads
        self.encoder = nn.Linear(heads, code_heads(heads))
        self.decoder = nn.Linear(code_heads(heads), heads)

    def encode(self, x):
        """(B, H, N, d) -> (B, C, N, d)."""
        return self.encoder(x.movedim(1, -1)).movedim(-1, 1)

    def decode(self, z):
        """(B, C, N, d) -> (B, H, N, d)."""
        return self.decoder(z.movedim(1, -1)).movedim(-1, 1)

    def forward(self, x):
        return self.decode(self.encode(x))


def _check_float_heads(name, x):
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() != 4:
        raise TypeError(f"{name} must be a 4-d float tensor (B, H, N, d), not {_describe(x)}")
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, not {_describe(x)}")
    return x


def train_autoencoder(x, *, epochs=EPOCHS, seed=0, lr=LR, batch_size=BATCH):
    """An AutoEncoder (float32, eval mode) fitted to float x (B, H, N, d) by MSE with Adam.

    Deterministic: every (b, n, c) position is one sample; the initial weights and the
    order of the samples come from `seed`; one thread and deterministic kernels
    (digits_vit.deterministic) make equal arguments give equal weights.
    """
    _check_float_heads("x", x)
    check_int("epochs", epochs, minimum=1)
    check_int("seed", seed, minimum=0)
    check_scale("lr", lr)
    check_int("batch_size", batch_size, minimum=1)
    samples = x.detach().to(torch.float32).movedim(1, -1).reshape(-1, x.shape[1])
    with deterministic(seed), torch.enable_grad():
        model = AutoEncoder(x.shape[1])
        generator = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        steps = epochs * math.ceil(len(samples) / batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        for _ in range(epochs):
            order = torch.randperm(len(samples), generator=generator)
            for first in range(0, len(order), batch_size):
                batch = samples[order[first:first + batch_size]]
                loss = nn.functional.mse_loss(model.decoder(model.encoder(batch)), batch)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
    return model.eval()


# -- integer model ---------------------------------------------------------------------------

def _describe(value):
    if isinstance(value, torch.Tensor):
        return f"tensor of dtype {value.dtype} and shape {tuple(value.shape)}"
    return repr(value)


def _int_matrix(name, value, rows, cols, lo, hi):
    """`value` as a tuple of `rows` tuples of `cols` Python ints in [lo, hi]."""
    rule = f"{rows} rows of {cols} integers"
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or \
            any(isinstance(row, (str, bytes)) or not isinstance(row, (tuple, list))
                for row in value):
        raise TypeError(f"{name} must be a tuple of {rule}, not {value!r}")
    if len(value) != rows or any(len(row) != cols for row in value):
        raise ValueError(f"{name} must be {rule}, not {value!r}")
    return tuple(_int_vector(name, row, cols, lo, hi, rule=rule) for row in value)


def _int_vector(name, value, length, lo, hi, *, rule=None):
    rule = rule or f"{length} integers"
    if isinstance(value, (str, bytes)) or not isinstance(value, (tuple, list)) or \
            any(isinstance(v, bool) or not isinstance(v, int) for v in value):
        raise TypeError(f"{name} must be a tuple of {rule}, not {value!r}")
    if len(value) != length:
        raise ValueError(f"{name} must be {rule}, not {value!r}")
    for v in value:
        if not lo <= v <= hi:
            raise ValueError(f"{name} entries must be between {lo} and {hi}, not {v!r}")
    return tuple(value)


@dataclasses.dataclass(frozen=True)
class QuantizedAutoEncoder:
    """The integer auto-encoder of one layer's Q or K (formula in the module docstring).

    w_enc: C x H int8 rows, b_enc: C int32; w_dec: H x C int8 rows, b_dec: H int32 (C =
    ceil(H/2), H = len(w_enc[0])); enc/dec_mult 16-bit unsigned, enc/dec_shift 6-bit;
    in_scale, code_scale, out_scale: the real value of one unit of x, z and x'. Lists are
    accepted and stored as tuples.
    """
    w_enc: tuple
    b_enc: tuple
    enc_mult: int
    enc_shift: int
    w_dec: tuple
    b_dec: tuple
    dec_mult: int
    dec_shift: int
    in_scale: float
    code_scale: float
    out_scale: float

    def __post_init__(self):
        w_enc = self.w_enc
        if isinstance(w_enc, (tuple, list)) and w_enc and isinstance(w_enc[0], (tuple, list)) \
                and w_enc[0]:
            heads = len(w_enc[0])
        else:
            raise TypeError(f"w_enc must be a non-empty tuple of non-empty rows of integers, "
                            f"not {w_enc!r}")
        code = code_heads(heads)
        fix = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731
        fix("w_enc", _int_matrix("w_enc", w_enc, code, heads, INT8_LO, INT8_HI))
        fix("b_enc", _int_vector("b_enc", self.b_enc, code, INT32_LO, INT32_HI))
        fix("w_dec", _int_matrix("w_dec", self.w_dec, heads, code, INT8_LO, INT8_HI))
        fix("b_dec", _int_vector("b_dec", self.b_dec, heads, INT32_LO, INT32_HI))
        for name in ("enc_mult", "dec_mult"):
            check_int(name, getattr(self, name), minimum=0, maximum=MULT_MAX)
        for name in ("enc_shift", "dec_shift"):
            check_int(name, getattr(self, name), minimum=0, maximum=SHIFT_MAX)
        for name in ("in_scale", "code_scale", "out_scale"):
            fix(name, check_scale(name, getattr(self, name)))

    @property
    def heads(self):
        return len(self.w_enc[0])

    @property
    def code_heads(self):
        return len(self.w_enc)

    @staticmethod
    def _acc_bits(weights, biases):
        # The extremes of sum(w * x) + b over int8 x, per output, taken at x in {-128, 127}.
        rows = list(zip(weights, biases))
        lo = min(b + sum(min(w * INT8_LO, w * INT8_HI) for w in row) for row, b in rows)
        hi = max(b + sum(max(w * INT8_LO, w * INT8_HI) for w in row) for row, b in rows)
        return signed_width(lo, hi)

    @property
    def enc_acc_bits(self):
        """Width of the encoder's accumulator that no int8 input can overflow."""
        return self._acc_bits(self.w_enc, self.b_enc)

    @property
    def dec_acc_bits(self):
        return self._acc_bits(self.w_dec, self.b_dec)

    def to_dict(self):
        return dataclasses.asdict(self)


def _check_int8_heads(name, x, heads):
    if not isinstance(x, torch.Tensor) or x.is_floating_point() or x.is_complex() \
            or x.dtype == torch.bool or x.dim() != 4:
        raise TypeError(f"{name} must be a 4-d integer tensor (B, heads, N, d), not {_describe(x)}")
    if x.shape[1] != heads:
        raise ValueError(f"{name} must have {heads} heads on dim 1, not {x.shape[1]!r}")
    x = x.to(torch.int64)
    if x.numel() and not (INT8_LO <= int(x.min()) and int(x.max()) <= INT8_HI):
        bad = int(x.min()) if int(x.min()) < INT8_LO else int(x.max())
        raise ValueError(f"{name} entries must be between {INT8_LO} and {INT8_HI}, not {bad!r}")
    return x


def _linear_int(weights, biases, x, mult, shift):
    """requantize(sum_i W[o, i] * x[b, i, n, c] + bias[o]) in int64: exact."""
    w = torch.tensor(weights, dtype=torch.int64)
    b = torch.tensor(biases, dtype=torch.int64)
    acc = torch.einsum("oi,bind->bond", w, x) + b[None, :, None, None]
    return requantize(acc, mult, shift, 8)


def encode_int(qae, x):
    """int8 x (B, H, N, d) -> int8 code z (B, C, N, d), as int64 tensors."""
    x = _check_int8_heads("x", x, qae.heads)
    return _linear_int(qae.w_enc, qae.b_enc, x, qae.enc_mult, qae.enc_shift)


def decode_int(qae, z):
    """int8 code z (B, C, N, d) -> int8 reconstruction x' (B, H, N, d), as int64 tensors."""
    z = _check_int8_heads("z", z, qae.code_heads)
    return _linear_int(qae.w_dec, qae.b_dec, z, qae.dec_mult, qae.dec_shift)


# -- quantization ----------------------------------------------------------------------------

def int8_scale(x):
    """The per-tensor scale max|x| / 127 (1.0 for an all-zero tensor)."""
    peak = float(torch.as_tensor(x, dtype=torch.float64).abs().max())
    return (peak if peak > 0 else 1.0) / INT8_HI


def requant_params(ratio):
    """(mult, shift) for the requantizer gain `ratio`: the largest shift in 0..63 with
    mult = round_half_up(ratio * 2^shift) <= 65535 (the most precise representation)."""
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) \
            or not (math.isfinite(ratio) and ratio > 0):
        raise ValueError(f"ratio must be a finite number above 0, not {ratio!r}")
    if not ratio < MULT_MAX + 0.5:
        raise ValueError(f"ratio must be below {MULT_MAX + 0.5} (mult {MULT_MAX} at shift 0), "
                         f"not {ratio!r}")
    for shift in range(SHIFT_MAX, -1, -1):
        mult = math.floor(math.ldexp(ratio, shift) + 0.5)
        if mult <= MULT_MAX:
            break
    if mult == 0:
        raise ValueError(f"ratio must be at least 2^-{SHIFT_MAX + 1} (mult 1 at shift "
                         f"{SHIFT_MAX}), not {ratio!r}")
    return mult, shift


def _weights(linear):
    w = linear.weight.detach().to(torch.float64)
    scale = int8_scale(w)
    return quantize(w, scale), scale, linear.bias.detach().to(torch.float64)


@torch.no_grad()
def quantize_autoencoder(ae, x, *, in_scale=None, out_scale=None):
    """The QuantizedAutoEncoder of float `ae`, its scales calibrated on float x (B, H, N, d).

    in_scale defaults to int8_scale(x), out_scale to in_scale; code_scale is int8_scale of
    the float codes of x. See the module docstring for every formula.
    """
    if not isinstance(ae, AutoEncoder):
        raise TypeError(f"ae must be an AutoEncoder, not {ae!r}")
    _check_float_heads("x", x)
    if x.shape[1] != ae.heads:
        raise ValueError(f"x must have {ae.heads} heads on dim 1, not {x.shape[1]!r}")
    in_scale = int8_scale(x) if in_scale is None else check_scale("in_scale", in_scale)
    out_scale = in_scale if out_scale is None else check_scale("out_scale", out_scale)
    code_scale = int8_scale(ae.encode(x.to(torch.float32)))
    w_enc, s_we, b_enc = _weights(ae.encoder)
    w_dec, s_wd, b_dec = _weights(ae.decoder)
    enc_mult, enc_shift = requant_params(s_we * in_scale / code_scale)
    dec_mult, dec_shift = requant_params(s_wd * code_scale / out_scale)
    return QuantizedAutoEncoder(
        w_enc=w_enc.tolist(), b_enc=quantize(b_enc, s_we * in_scale, 32).tolist(),
        enc_mult=enc_mult, enc_shift=enc_shift,
        w_dec=w_dec.tolist(), b_dec=quantize(b_dec, s_wd * code_scale, 32).tolist(),
        dec_mult=dec_mult, dec_shift=dec_shift,
        in_scale=in_scale, code_scale=code_scale, out_scale=out_scale)


def reconstruct_int(qae, x):
    """Float x through the integer path: quantize at in_scale, encode_int, decode_int,
    dequantize at out_scale (float64)."""
    x_int = quantize(x, qae.in_scale)
    return decode_int(qae, encode_int(qae, x_int)).to(torch.float64) * qae.out_scale


# -- fitting and reporting on the digits ViT --------------------------------------------------

def fit_autoencoders(model, images, *, epochs=EPOCHS, seed=0):
    """{(layer, "q" | "k"): (AutoEncoder, QuantizedAutoEncoder)} trained and calibrated on
    the Q and K that the digits ViT `model` computes for `images`."""
    fitted = {}
    for layer, (q, k, _) in capture_qkv(model, images).items():
        for name, x in (("q", q), ("k", k)):
            ae = train_autoencoder(x, epochs=epochs, seed=seed)
            fitted[layer, name] = ae, quantize_autoencoder(ae, x)
    return fitted


def _rel(approx, reference):
    reference = reference.to(torch.float64)
    return float(torch.linalg.norm(approx.to(torch.float64) - reference) /
                 torch.linalg.norm(reference))


@torch.no_grad()
def autoencoder_report(model=None, *, data=None, epochs=EPOCHS, seed=0, fitted=None):
    """Reconstruction and attention errors of the auto-encoders on the test split (JSON-ready).

    model defaults to digits_vit.trained_vit(), data to digits_dataset(); the auto-encoders
    are fitted on the train split (`fitted` reuses a `fit_autoencoders` result). Per layer
    and for Q and K: recon_rel_error (||x' - x|| / ||x||) of the float AE ("float"), of the
    integer path dequantized ("int"), and of int8 quantization alone without the AE
    ("int8_only", the floor the integer path cannot beat). Per layer: attention_rel_error,
    the relative error of softmax(q k^T / sqrt(d)) v (float64, all heads) with q and k
    reconstructed against the original q and k, for the same three variants. Bytes: int8 Q
    and K of all heads and layers per image (bytes_plain) against int8 codes of C heads
    (bytes_compressed). The top-level recon_rel_error and attention_rel_error summarize the
    integer path over all layers (norms pooled over layers, Q and K). vit_test_accuracy:
    the ViT's test accuracy as is ("plain") and with Q and K of every layer replaced by
    their float ("float") or integer ("int") reconstructions.
    """
    model = trained_vit(progress=False) if model is None else model
    data = digits_dataset() if data is None else data
    fitted = fit_autoencoders(model, data.train_images, epochs=epochs, seed=seed) \
        if fitted is None else fitted
    layers = []
    pooled = {"recon": [0.0, 0.0], "attention": [0.0, 0.0]}      # squared error, squared norm
    for layer, (q, k, v) in capture_qkv(model, data.test_images).items():
        entry = {"layer": layer}
        variants = {"float": {}, "int": {}, "int8_only": {}}
        for name, x in (("q", q), ("k", k)):
            ae, qae = fitted[layer, name]
            x64 = x.to(torch.float64)
            variants["float"][name] = ae(x).to(torch.float64)
            variants["int"][name] = reconstruct_int(qae, x)
            variants["int8_only"][name] = quantize(x, qae.in_scale).to(torch.float64) * qae.in_scale
            entry[name] = {"recon_rel_error": {label: _rel(rebuilt[name], x64)
                                               for label, rebuilt in variants.items()},
                           "enc_acc_bits": qae.enc_acc_bits, "dec_acc_bits": qae.dec_acc_bits,
                           "quantized": qae.to_dict()}
            pooled["recon"][0] += float(((variants["int"][name] - x64) ** 2).sum())
            pooled["recon"][1] += float((x64 ** 2).sum())
        reference = softmax_attention(q, k, v)
        entry["attention_rel_error"] = {}
        for label, rebuilt in variants.items():
            out = softmax_attention(rebuilt["q"], rebuilt["k"], v)
            entry["attention_rel_error"][label] = _rel(out, reference)
            if label == "int":
                pooled["attention"][0] += float(((out - reference) ** 2).sum())
                pooled["attention"][1] += float((reference ** 2).sum())
        layers.append(entry)
    def through(kind):
        def transform(layer, q, k):
            rebuilt = []
            for name, x in (("q", q), ("k", k)):
                ae, qae = fitted[layer, name]
                rebuilt.append(ae(x) if kind == "float" else reconstruct_int(qae, x).to(x.dtype))
            return tuple(rebuilt)
        return transform

    images, labels = data.test_images, data.test_labels
    vit_accuracy = {"plain": accuracy(model, images, labels),
                    "float": accuracy(model, images, labels, through("float")),
                    "int": accuracy(model, images, labels, through("int"))}
    _, heads, tokens, head_dim = q.shape
    plain = 2 * len(layers) * heads * tokens * head_dim
    compressed = 2 * len(layers) * code_heads(heads) * tokens * head_dim
    return {
        "images": len(data.test_labels), "layers": len(layers), "heads": heads,
        "code_heads": code_heads(heads), "tokens": tokens, "head_dim": head_dim,
        "epochs": epochs, "seed": seed,
        "bytes_plain": plain, "bytes_compressed": compressed,
        "bytes_saved_fraction": 1 - compressed / plain,
        "recon_rel_error": math.sqrt(pooled["recon"][0] / pooled["recon"][1]),
        "attention_rel_error": math.sqrt(pooled["attention"][0] / pooled["attention"][1]),
        "vit_test_accuracy": vit_accuracy,
        "per_layer": layers,
    }


def main():
    report = autoencoder_report()
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
