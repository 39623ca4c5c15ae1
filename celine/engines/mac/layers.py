"""The MAC array's part in whole models (celine.models.ops): matrix products.

MATMUL(a, w, precision, constant): the device's exact integer sums at `precision`
(`dev.mac.matmul` without requantization), and their golden model: the exact product when
the accumulators cannot overflow (acc_width derived from max_reduction, K <=
max_reduction), else tile by tile (golden.mac.MacArrayModel, the accumulator wrap
included). The model adds biases and scales on the host. A constant w (a model's weights) is stored on the device
the first time (`dev.mac.store`) and only the activations cross the link afterwards, as
long as the weight buffer keeps RESERVE of its words free for the other products;
`model_options` sizes the buffers so that a model's weights fit.
"""

from ...firmware.errors import SettingError
from ...firmware.tensors import as_int_tensor
from ...golden.mac import MacArrayModel, assemble, reference_matmul, tile_matmul
from ...models.ops import MATMUL, EngineLayers, ModelOp
from .spec import MacArrayParams

__all__ = ["LAYERS", "model_params", "model_options"]

RESERVE = 1024        # weight words left free for products whose w changes every call

# A model's products run on an 8 x 8 array of DSP PEs: 64 MACs a cycle, the tiles large
# enough that a 65-token layer is a few runs.
MODEL_ARRAY = {"rows": 8, "cols": 8, "impl": "dsp"}


def model_params(needs):
    """The array a model with `needs` ({"precisions": (..)}, default (8,)) runs on."""
    precisions = tuple(sorted(needs.get("precisions", (8,))))
    return MacArrayParams(**MODEL_ARRAY, precisions=precisions)


def model_options(needs):
    """Operand buffers (a power of two deep) that hold every constant w of the model
    (needs["weights"]: their (K, N) shapes) and RESERVE words more."""
    params = model_params(needs)
    cols = params.tile_cols(max(params.precisions))
    words = sum(k * -(-n // cols) for k, n in needs.get("weights", ())) + RESERVE
    return {"operand_depth": 1 << (words - 1).bit_length()}


def _check(params, a, w, precision, constant=False):
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


def _golden(params, a, w, precision, constant=False):
    a = as_int_tensor("a", a, ndims=(2,), rule="a 2-D integer tensor")
    w = as_int_tensor("w", w, ndims=(2,), rule="a 2-D integer tensor")
    if params.acc_width is None:            # sums of K <= max_reduction never wrap
        sums = reference_matmul(a, w, precision)
    else:
        array = MacArrayModel(params)
        tiles = [(m0, n0, array.tile(act, weight, precision))
                 for m0, n0, act, weight in tile_matmul(a, w, precision, params)]
        sums = assemble(a.shape[0], w.shape[1], tiles, precision, params)
    return sums


def _device(device, a, w, precision, constant=False):
    host = device.mac
    if not constant:
        return host.matmul(a, w, precision=precision)
    entry = host.kept.get(id(w))                 # id(w) -> (w, StoredWeights)
    if entry is None or entry[0] is not w or not host.holds(entry[1]):
        if host.weight_words(w.shape, precision) > host.free_words - RESERVE:
            return host.matmul(a, w, precision=precision)     # no room: sent every call
        entry = host.kept[id(w)] = (w, host.store(w, precision=precision))
    return host.matmul(a, entry[1])


LAYERS = EngineLayers(ops={MATMUL: ModelOp(golden=_golden, device=_device, check=_check)},
                      params=model_params, options=model_options)
