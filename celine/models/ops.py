"""The operations a whole model asks of the engines, and who computes them.

A model (celine.models.integer) never names an engine: it asks for an operation by name
(the constants below), and the registry's records say which engine runs it (the record
field `layers`, docs/engines.md). Each engine that takes part in models has a
`layers.py` whose `LAYERS` is an `EngineLayers`: its operations (`ModelOp`, one golden and
one device implementation of the same integer function) and the generator parameters it
suggests for a model's needs.

An `Executor` runs operations either way:
- `GoldenExecutor(params)`: the engines' golden models in process, at the parameters of
  each engine (the integer model);
- `DeviceExecutor(devices)`: the engines' host APIs on open devices (`Device.open("sim")`,
  a board), one device per engine ("one build per engine, the runtime choosing").
Both compute the same integers bit for bit; everything between the operations (LayerNorm,
GELU, the softmax of dense attention, residuals, scales) is the model's own host code.

The operations:
- MATMUL(a, w, precision, constant): a (M x K) and w (K x N) int8 values, the product's
  exact integer sums at `precision` (the engine derives p-bit operands from the int8
  values below 8 bits): an M x N int64 tensor. `constant`: w is one of the model's
  weights (the same tensor object on every call), which a device may keep from one call
  to the next; the others (attention's k and v) are new on every call.
- SD_LINEAR(x, sd_weights): x (M x L) int8 times a linear layer's SmartDeal weights
  (golden.smartdeal.hardware.SmartDealWeights, N x L) as the engine rebuilds them: the
  M x N int64 exact sums (the engine's layers module says the weights' real unit).
- SPARSE_ATTENTION(q, k, v, masks, scales, autoencoders): ViTCoD's softmax attention of
  H heads over fixed kept masks (H x N x N bool), q, k, v H x N x d int8 at the real
  steps `scales` (s_q, s_k, s_v), Q and K through the layer's Q/K auto-encoders
  (golden.vitcod.autoencoder.QuantizedAutoEncoder pair, or None): (the H x N x d int64
  outputs, each head's real output step).
- TAYLOR_ATTENTION(q, k, v, registers): ViTALiTy Taylor attention of H heads, q, k, v
  H x N x d int8, `registers` a golden.taylor.TaylorRegisters with one output scale per
  head: the H x N x d int64 outputs.
"""

from dataclasses import dataclass, field
from typing import Callable

from ..firmware.errors import SettingError

__all__ = ["MATMUL", "SD_LINEAR", "SPARSE_ATTENTION", "TAYLOR_ATTENTION", "OPS", "ModelOp", "EngineLayers", "engine_for",
           "GoldenExecutor", "DeviceExecutor"]

MATMUL = "matmul"
SD_LINEAR = "sd_linear"
SPARSE_ATTENTION = "sparse_attention"
TAYLOR_ATTENTION = "taylor_attention"
OPS = (MATMUL, SD_LINEAR, SPARSE_ATTENTION, TAYLOR_ATTENTION)


@dataclass(frozen=True)
class ModelOp:
    """One operation: golden(params, *args) and device(device, *args) give equal results;
    check(params, *args) raises SettingError when a device of `params` cannot take args;
    weight_unit(params, weights), where the op has weights of its own format, is the real
    value of one unit of the weights the engine of `params` multiplies."""
    golden: Callable
    device: Callable
    check: Callable = lambda params, *args: None
    weight_unit: Callable = None


@dataclass(frozen=True)
class EngineLayers:
    """An engine's part in whole models: `ops` {op name: ModelOp}; `params(needs)` the
    generator parameters (a params object) and `options(needs)` the shell options (a
    dict) it suggests for a model's `needs` (a dict: head_dim, heads, tokens, precisions,
    weights: the (K, N) shape of each constant MATMUL operand)."""
    ops: dict
    params: Callable
    options: Callable = field(default=lambda needs: {})


def _layers(record):
    return None if record.layers is None else record.layers.load()


def engine_for(op):
    """(record, EngineLayers) of the first registered engine that runs `op`."""
    from .. import registry
    if op not in OPS:
        raise SettingError(f"op must be one of {', '.join(OPS)}, not {op!r}")
    for record in registry.ENGINES:
        layers = _layers(record)
        if layers is not None and op in layers.ops:
            return record, layers
    raise SettingError(f"no registered engine runs {op!r}")


class GoldenExecutor:
    """Operations on the engines' golden models. params: {engine name: params object}."""

    def __init__(self, params):
        self.params = dict(params)
        self.calls = {}

    def _engine(self, op):
        record, layers = engine_for(op)
        if record.name not in self.params:
            raise SettingError(f"no parameters for the {record.name!r} engine that runs {op!r}")
        return self.params[record.name], layers.ops[op]

    def __call__(self, op, *args):
        params, model_op = self._engine(op)
        model_op.check(params, *args)
        self.calls[op] = self.calls.get(op, 0) + 1
        return model_op.golden(params, *args)

    def weight_unit(self, op, weights):
        """The real value of one unit of `weights` as the engine running `op` uses them."""
        params, model_op = self._engine(op)
        return model_op.weight_unit(params, weights)


class DeviceExecutor:
    """Operations on open devices, each running one engine: the first device whose engine
    runs an op gets it."""

    def __init__(self, devices):
        self.devices = list(devices)
        if not self.devices:
            raise SettingError("devices must hold at least one open Device")
        self.calls = {}

    @property
    def params(self):
        """{engine name: params} of the devices."""
        return {dev.accelerator.name: dev.accelerator.params.from_dict(dev.info["params"])
                for dev in self.devices}

    def device_for(self, op):
        for dev in self.devices:
            layers = _layers(dev.accelerator)
            if layers is not None and op in layers.ops:
                return dev, layers.ops[op]
        names = ", ".join(dev.accelerator.name for dev in self.devices)
        raise SettingError(f"none of the devices ({names}) runs {op!r}")

    def __call__(self, op, *args):
        dev, model_op = self.device_for(op)
        model_op.check(dev.accelerator.params.from_dict(dev.info["params"]), *args)
        self.calls[op] = self.calls.get(op, 0) + 1
        return model_op.device(dev, *args)

    def weight_unit(self, op, weights):
        """The real value of one unit of `weights` as the device running `op` uses them."""
        dev, model_op = self.device_for(op)
        return model_op.weight_unit(dev.accelerator.params.from_dict(dev.info["params"]),
                                    weights)
