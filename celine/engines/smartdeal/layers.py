"""The SmartDeal engine's part in whole models (celine.models.ops): linear layers whose
weights are SmartDeal decompositions.

SD_LINEAR(x, sd_weights): x (M x L int8) times the layer's weights as the engine rebuilds
them (golden.smartdeal.hardware.SmartDealWeights at the device's exponent width): the exact
integer sums, on the device (`dev.smartdeal.linear`; the packed weights go to the device
when the layer changes) or in the golden model (golden.smartdeal.integer.linear_int with
the int8 weights the "rebuild" implementation multiplies, or the exact rebuilt ones of
"bitop"). `weight_unit(params, sd_weights)` is the real value of one unit of those weights.
"""

from ...firmware.errors import SettingError
from ...firmware.tensors import as_int_tensor
from ...golden.smartdeal.integer import linear_int
from ...models.ops import SD_LINEAR, EngineLayers, ModelOp
from .spec import SmartDealParams

__all__ = ["LAYERS", "model_params", "weight_unit", "weights_form"]


def model_params(needs):
    """The engine's defaults at the model's exponent width, with room for its layers."""
    defaults = SmartDealParams()
    shapes = needs.get("sd_weights", ())
    inputs = max([defaults.max_inputs] + [k for k, _ in shapes])
    outputs = max([defaults.max_outputs] + [n for _, n in shapes])
    return SmartDealParams(max_inputs=inputs, max_outputs=outputs,
                           max_block_rows=max(defaults.max_block_rows, inputs),
                           exponent_bits=needs.get("exponent_bits", defaults.exponent_bits))


def weights_form(params):
    """Which weights the implementation multiplies: "int8" (rebuild) or "wide" (bitop)."""
    return "int8" if params.impl == "rebuild" else "wide"


def weight_unit(params, sd_weights):
    """The real value of one unit of the weights the engine of `params` multiplies."""
    return sd_weights.weight_scale if weights_form(params) == "int8" else sd_weights.unit


def _check(params, x, sd_weights):
    x = as_int_tensor("x", x, ndims=(2,), rule="a 2-D (tokens x inputs) integer tensor")
    h = sd_weights.header
    if h.exponent_bits != params.exponent_bits:
        raise SettingError(f"sd_weights must have {params.exponent_bits} exponent bits (the "
                           f"engine's), not {h.exponent_bits}")
    if x.shape[1] != h.length:
        raise SettingError(f"x must have {h.length} columns (the layer's inputs), "
                           f"not {x.shape[1]}")


def _golden(params, x, sd_weights):
    return linear_int(x, sd_weights, weights=weights_form(params))


def _device(device, x, sd_weights):
    return device.smartdeal.linear(x, sd_weights)


LAYERS = EngineLayers(ops={SD_LINEAR: ModelOp(golden=_golden, device=_device, check=_check,
                                               weight_unit=weight_unit)},
                      params=model_params)
