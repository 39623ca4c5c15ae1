"""The MAC array's part in whole models (celine.models.ops): matrix products.

MATMUL(a, w, precision): the device's exact integer sums at `precision` (`dev.mac.matmul`
without requantization), and their golden model tile by tile (golden.mac.MacArrayModel,
the accumulator wrap included). The model quantizes, adds biases and scales on the host.
"""

from ...firmware.errors import SettingError
from ...firmware.tensors import as_int_tensor
from ...golden.mac import MacArrayModel, assemble, tile_matmul
from ...models.ops import MATMUL, EngineLayers, ModelOp
from .spec import MacArrayParams

__all__ = ["LAYERS", "model_params"]

# A model's products run on an 8 x 8 array of DSP PEs: 64 MACs a cycle, the tiles large
# enough that a 65-token layer is a few runs.
MODEL_ARRAY = {"rows": 8, "cols": 8, "impl": "dsp"}


def model_params(needs):
    """The array a model with `needs` ({"precisions": (..)}, default (8,)) runs on."""
    precisions = tuple(sorted(needs.get("precisions", (8,))))
    return MacArrayParams(**MODEL_ARRAY, precisions=precisions)


def _check(params, a, w, precision):
    a = as_int_tensor("a", a, ndims=(2,), rule="a 2-D integer tensor")
    w = as_int_tensor("w", w, ndims=(2,), rule="a 2-D integer tensor")
    if a.shape[1] != w.shape[0] or a.shape[1] < 1:
        raise SettingError(f"w must have {a.shape[1]} rows (the columns of a), "
                           f"not {w.shape[0]}")
    if a.shape[1] > params.max_reduction:
        raise SettingError(f"K must be at most {params.max_reduction} (max_reduction), "
                           f"not {a.shape[1]}")
    if precision not in params.precisions or precision == 16:
        rule = ", ".join(str(p) for p in params.precisions if p != 16)
        raise SettingError(f"precision must be one of {rule}, not {precision!r}")


def _golden(params, a, w, precision):
    array = MacArrayModel(params)
    a = as_int_tensor("a", a, ndims=(2,), rule="a 2-D integer tensor")
    w = as_int_tensor("w", w, ndims=(2,), rule="a 2-D integer tensor")
    tiles = [(m0, n0, array.tile(act, weight, precision))
             for m0, n0, act, weight in tile_matmul(a, w, precision, params)]
    return assemble(a.shape[0], w.shape[1], tiles, precision, params)


def _device(device, a, w, precision):
    return device.mac.matmul(a, w, precision=precision)


LAYERS = EngineLayers(ops={MATMUL: ModelOp(golden=_golden, device=_device, check=_check)},
                      params=model_params)
