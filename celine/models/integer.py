"""The integer model of a digits ViT, and the one forward pass every way of running it uses.

`forward(model, images, ops)` is the model's computation written once, operation by
operation; `ops` decides how each linear layer and each attention is computed:
- `FloatOps`: the float model itself (the same result as `model(images)` up to float
  rounding);
- `CalibrationOps`: the float model, recording the largest magnitude of every tensor that
  gets quantized (the calibration on training images);
- `IntegerOps(quantized, executor)`: the integer model. Every matrix product and every
  attention is an engine operation (celine.models.ops) on int8 operands, run by the
  executor: the engines' golden models (`GoldenExecutor`: the integer golden model) or
  devices (`DeviceExecutor`: the hardware path). Both give the same integers, so both give
  the same logits, bit for bit.

What runs where (the integer model):
- on the engines: the patch embedding, q/k/v, the attention projection, both MLP layers
  and the classifier head (MATMUL of int8 activations, per-tensor scale calibrated on
  training images, and int8 weights, one scale per output channel); softmax attention's
  q kᵀ and P v (MATMUL, with q, k, v per-tensor int8 and the probabilities P as int8
  steps of 1/127); Taylor attention whole (TAYLOR_ATTENTION, its registers chosen per
  image by golden.taylor.calibrate from the calibrated scales); attention over fixed
  masks whole, Q and K through the layer's Q/K auto-encoders (SPARSE_ATTENTION); linear
  layers with SmartDeal weights (SD_LINEAR, the weights' unit from the engine).
- on the host, in float32: biases and the dequantizing scales, LayerNorm, GELU, the
  softmax of dense attention, residual adds, CLS and position embeddings. They are
  cheap element- or row-wise steps between products, and the host touches every product
  anyway: the MAC array returns exact sums, which the host scales per output channel.
"""

import math

import torch
from torch import nn

from ..golden.quant import quantize
from ..golden.taylor import calibrate, output_scales, taylor_attention
from ..golden.vitcod.autoencoder import quantize_autoencoder
from .ops import MATMUL, SD_LINEAR, SPARSE_ATTENTION, TAYLOR_ATTENTION, GoldenExecutor, engine_for

__all__ = ["forward", "FloatOps", "CalibrationOps", "IntegerOps", "QuantizedViT", "quantize_model"]

PEAK = 127                   # int8 values run -127..127 after scaling by max|x| / 127
CALIBRATION_IMAGES = 256     # training images the scales are calibrated on, by default
# forward's names of the linear layers: the module names, shortened
LAYER_NAMES = (("attn.qkv", "qkv"), ("attn.proj", "proj"), ("mlp.0", "fc1"), ("mlp.2", "fc2"))


def forward(model, images, ops):
    """Logits (B, 10) of `model` (a DigitsViT) for (B, 8, 8) images, computed by `ops`."""
    c = model.config
    x = ops.linear("embed", model.patches(images), model.embed)
    x = torch.cat([model.cls.expand(x.shape[0], -1, -1), x], dim=1) + model.pos
    for i, block in enumerate(model.blocks):
        b, n, dim = x.shape
        qkv = ops.linear(f"blocks.{i}.qkv", block.norm1(x), block.attn.qkv)
        q, k, v = qkv.reshape(b, n, 3, c.heads, c.head_dim).permute(2, 0, 3, 1, 4)
        heads = ops.attention(f"blocks.{i}.attn", c.attention, q, k, v, block.attn.mask)
        x = x + ops.linear(f"blocks.{i}.proj", heads.transpose(1, 2).reshape(b, n, dim),
                           block.attn.proj)
        hidden = nn.functional.gelu(ops.linear(f"blocks.{i}.fc1", block.norm2(x),
                                               block.mlp[0]))
        x = x + ops.linear(f"blocks.{i}.fc2", hidden, block.mlp[2])
    return ops.linear("head", model.norm(x[:, 0]), model.head)


class FloatOps:
    """The float model, operation by operation; `autoencoders` {attention name: (Q's, K's
    float AutoEncoder)}: Q and K of those layers go through them (ViTCoD)."""

    def __init__(self, autoencoders=None):
        self.autoencoders = autoencoders or {}

    def linear(self, name, x, layer):
        return nn.functional.linear(x, layer.weight, layer.bias)

    def attention(self, name, kind, q, k, v, mask=None):
        if kind == "taylor":
            return taylor_attention(q, k, v).to(q.dtype)
        if name in self.autoencoders:
            q, k = (ae(x) for ae, x in zip(self.autoencoders[name], (q, k)))
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
        if mask is not None:
            scores = scores.masked_fill(~mask, -math.inf)
        return torch.softmax(scores, dim=-1) @ v


class CalibrationOps(FloatOps):
    """The float model, keeping the largest |value| of each quantized tensor in `peaks`:
    "<layer>" for a linear layer's input, "<attn>.q", ".k", ".v" for attention."""

    def __init__(self, autoencoders=None):
        super().__init__(autoencoders)
        self.peaks = {}
        self.qk = {}            # {attention name: (q, k)} as the calibration images give them

    def _see(self, name, x):
        self.peaks[name] = max(self.peaks.get(name, 0.0), float(x.detach().abs().max()))

    def linear(self, name, x, layer):
        self._see(name, x)
        return super().linear(name, x, layer)

    def attention(self, name, kind, q, k, v, mask=None):
        for part, x in (("q", q), ("k", k), ("v", v)):
            self._see(f"{name}.{part}", x)
        self.qk[name] = (q.detach(), k.detach())
        return super().attention(name, kind, q, k, v, mask)


def _scale(peak):
    return peak / PEAK if peak > 0 else 1.0


class QuantizedViT:
    """A DigitsViT's integer form: int8 weights with one scale per output channel, a
    calibrated scale per quantized activation, and the precision of the linear layers'
    products. `golden(images)` runs the integer golden model."""

    def __init__(self, model, peaks, *, precision=8, sd_layers=None, autoencoders=None,
                 qk=None):
        self.model = model
        self.precision = precision
        self.scales = {name: _scale(peak) for name, peak in peaks.items()}
        # {attention name: (Q's, K's float AutoEncoder)}, and their integer form, their
        # input steps those of Q and K, calibrated on the Q and K of `qk`
        self.float_autoencoders = dict(autoencoders or {})
        self.autoencoders = {
            name: tuple(quantize_autoencoder(ae, x, in_scale=self.scales[f"{name}.{part}"])
                        for ae, x, part in zip(pair, qk[name], "qk"))
            for name, pair in self.float_autoencoders.items()}
        # {forward's layer name: SmartDealWeights}: the layers that run as SD_LINEAR
        self.sd_layers = {short_name(name): sd for name, sd in (sd_layers or {}).items()}
        # {forward's layer name: (int8 weights K x N, the real step of each output column)}:
        # the other layers, as MATMUL
        self.weights = {}
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear) and short_name(name) not in self.sd_layers:
                w = module.weight.detach().double()
                step = w.abs().amax(dim=1).clamp(min=1e-12) / PEAK
                # K x N, as the products take it
                self.weights[short_name(name)] = (quantize(w, step[:, None]).T.contiguous(),
                                                  step)

    @property
    def needs(self):
        """What the engines must offer this model (celine.models.ops.EngineLayers.params)."""
        c = self.model.config
        return {"head_dim": c.head_dim, "heads": c.heads, "tokens": c.tokens,
                "precisions": tuple(sorted({self.precision, 8})),
                "weights": [tuple(w.shape) for w, _ in self.weights.values()],
                "sd_weights": [(sd.header.length, sd.header.outputs)
                               for sd in self.sd_layers.values()],
                **({"exponent_bits": next(iter(self.sd_layers.values())).exponent_bits}
                   if self.sd_layers else {}),
                "autoencoder": bool(self.autoencoders)}

    @property
    def ops(self):
        """The engine operations the model uses."""
        sparse = any(block.attn.mask is not None for block in self.model.blocks)
        return (MATMUL,) + ((SD_LINEAR,) if self.sd_layers else ()) + \
            ((SPARSE_ATTENTION,) if sparse else ()) + \
            ((TAYLOR_ATTENTION,) if self.model.config.attention == "taylor" else ())

    def engine_params(self):
        """{engine name: params} of the engines that run this model, as each suggests."""
        return {record.name: layers.params(self.needs) for record, layers in self._engines()}

    def engine_options(self):
        """{engine name: shell options} of those engines, as each suggests."""
        return {record.name: layers.options(self.needs) for record, layers in self._engines()}

    def _engines(self):
        return [engine_for(op) for op in self.ops]

    @torch.no_grad()
    def run(self, images, executor):
        """Logits of the integer model, its operations run by `executor`."""
        self.model.eval()
        return forward(self.model, images, IntegerOps(self, executor))

    def golden(self, images, params=None):
        """Logits of the integer golden model (engine parameters: engine_params())."""
        return self.run(images, GoldenExecutor(self.engine_params() if params is None
                                               else params))


class IntegerOps:
    """The integer model's operations (see the module docstring)."""

    def __init__(self, quantized, executor):
        self.q = quantized
        self.run = executor

    def _quantize(self, name, x):
        return quantize(x, self.q.scales[name])

    def linear(self, name, x, layer):
        x_q = self._quantize(name, x)
        shape = x_q.shape
        if name in self.q.sd_layers:
            sd = self.q.sd_layers[name]
            sums = self.run(SD_LINEAR, x_q.reshape(-1, shape[-1]), sd)
            unit = self.q.scales[name] * self.run.weight_unit(SD_LINEAR, sd)
            return (sums.double() * unit).float().reshape(*shape[:-1], -1) + layer.bias
        w, w_step = self.q.weights[name]
        sums = self.run(MATMUL, x_q.reshape(-1, shape[-1]), w, self.q.precision, True)
        # At precision p < 8 the engine multiplies round(x / 2^(8-p)) operands: one unit
        # of the sums is worth 4^(8-p) units of int8 products.
        unit = self.q.scales[name] * 4.0 ** (8 - self.q.precision)
        real = sums.double() * (unit * w_step)
        return real.float().reshape(*shape[:-1], -1) + layer.bias

    def attention(self, name, kind, q, k, v, mask=None):
        s_q, s_k, s_v = (self.q.scales[f"{name}.{part}"] for part in "qkv")
        q, k, v = (self._quantize(f"{name}.{part}", x) for part, x in (("q", q), ("k", k),
                                                                          ("v", v)))
        images, heads, tokens, head_dim = q.shape
        out = torch.empty(images, heads, tokens, head_dim, dtype=torch.float32)
        for i in range(images):
            if mask is not None:
                got, steps = self.run(SPARSE_ATTENTION, q[i], k[i], v[i], mask, (s_q, s_k, s_v),
                                      self.q.autoencoders.get(name))
                out[i] = (got.double() * torch.tensor(steps, dtype=torch.float64)[:, None, None]
                          ).float()
                continue
            if kind == "taylor":
                regs = calibrate(q[i], k[i], v[i], scales=(s_q, s_k, s_v))
                steps = output_scales(regs, scales=(s_q, s_k, s_v), tokens=tokens,
                                      head_dim=head_dim)
                got = self.run(TAYLOR_ATTENTION, q[i], k[i], v[i], regs)
                out[i] = (got.double() * torch.tensor(steps, dtype=torch.float64)[:, None, None]
                          ).float()
                continue
            for h in range(heads):
                scores = self.run(MATMUL, q[i, h], k[i, h].T, 8, False).double() * \
                    (s_q * s_k / math.sqrt(head_dim))
                probs = quantize(torch.softmax(scores.float(), dim=-1), 1.0 / PEAK)
                out[i, h] = (self.run(MATMUL, probs, v[i, h], 8, False).double()
                             * (s_v / PEAK)).float()
        return out


def short_name(name):
    """forward's name of the linear layer whose module is called `name`."""
    for long, short in LAYER_NAMES:
        name = name.replace(long, short)
    return name


@torch.no_grad()
def quantize_model(model, calibration, *, precision=8, sd_layers=None, autoencoders=None):
    """The QuantizedViT of `model`, its activation scales calibrated on `calibration`
    ((B, 8, 8) training images); sd_layers {module name: SmartDealWeights}: the layers
    whose weights are SmartDeal decompositions (their nn.Linear weights are ignored);
    autoencoders {layer index: (Q's, K's float AutoEncoder)}: ViTCoD's Q/K auto-encoders
    of the layers with fixed masks."""
    model.eval()
    named = {f"blocks.{layer}.attn": pair for layer, pair in (autoencoders or {}).items()}
    ops = CalibrationOps(named)
    forward(model, calibration, ops)
    return QuantizedViT(model, ops.peaks, precision=precision, sd_layers=sd_layers,
                        autoencoders=named, qk=ops.qk)
