"""The activation engine: the bit-exact table lookup of rtl/activation, the GELU table
from scales, the float reference, and the golden engine model for the shell
(docs/activation.md).

Integer semantics: y = table[x + 128] for every int8 element x, the table being 256 int8
values. `gelu_table(in_scale, out_scale)` is the host's table for GELU:

    entry x + 128 = clamp(floor(gelu(x * in_scale) / out_scale + 0.5), -128, 127)

for x = -128 .. 127 (round half up, then saturate, as golden.quant.quantize), with
gelu(r) = 0.5 * r * (1 + erf(r / sqrt(2))) evaluated in float64 in exactly that order
(Python's math.erf). The table is computed on the host and sent with the data, so the
device and this model always use the same table; the lookup itself is exact.

Nothing here imports torch at module level: the table functions and the engine model are
plain Python (the host runtime uses them without torch); `lookup` and `gelu` take and
return torch tensors and import torch when called.
"""

import math
import numbers

from ..engines.activation.cycles import run_cycles
from ..engines.activation.spec import (ELEMENT_BITS, TABLE_OFFSET, TABLE_SIZE, Errors,
                                       buffers, registers)
from ..spec.lanes import pack_lanes, unpack_lanes
from .shell import EngineModel, RunResult

__all__ = ["INT8_MIN", "INT8_MAX", "check_table", "check_scale", "gelu_value", "gelu_table",
           "table_from_function", "lookup", "lookup_values", "gelu", "table_error",
           "ActivationEngineModel"]

INT8_MIN, INT8_MAX = -(1 << (ELEMENT_BITS - 1)), (1 << (ELEMENT_BITS - 1)) - 1


def _is_int(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_table(table):
    """The table as a list of 256 Python ints in -128 .. 127; TypeError or ValueError
    ("table must be ..., not ...") otherwise. Accepts any sequence or 1-D tensor/array."""
    if isinstance(table, (str, bytes)) or not hasattr(table, "__len__"):
        raise TypeError(f"table must be a sequence of {TABLE_SIZE} integers, not {table!r}")
    if hasattr(table, "tolist"):
        table = table.tolist()
    values = list(table)
    if len(values) != TABLE_SIZE:
        raise ValueError(f"table must have {TABLE_SIZE} entries (entry x + {TABLE_OFFSET} "
                         f"for input x), not {len(values)}")
    for index, value in enumerate(values):
        if not _is_int(value):
            raise TypeError(f"table entries must be integers, not {value!r} "
                            f"(entry {index})")
        if not INT8_MIN <= value <= INT8_MAX:
            raise ValueError(f"table entries must be between {INT8_MIN} and {INT8_MAX}, "
                             f"not {value!r} (entry {index})")
    return [int(value) for value in values]


def check_scale(name, value):
    """`value` as a float if it is a finite real number > 0; TypeError/ValueError else."""
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, not {value!r}")
    value = float(value)
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number above 0, not {value!r}")
    return value


# -- tables ------------------------------------------------------------------------------

def gelu_value(r):
    """GELU of one real number in float64: 0.5 * r * (1 + erf(r / sqrt(2)))."""
    return 0.5 * r * (1.0 + math.erf(r / math.sqrt(2.0)))


def table_from_function(function, in_scale, out_scale):
    """The table of `function` (float -> float) for int8 inputs of scale `in_scale` and
    int8 outputs of scale `out_scale`: entry x + 128 =
    clamp(floor(function(x * in_scale) / out_scale + 0.5), -128, 127)."""
    in_scale = check_scale("in_scale", in_scale)
    out_scale = check_scale("out_scale", out_scale)
    table = []
    for x in range(INT8_MIN, INT8_MAX + 1):
        ratio = function(x * in_scale) / out_scale
        if not math.isfinite(ratio):
            raise ValueError(f"in_scale {in_scale!r} with out_scale {out_scale!r} overflows "
                             f"a float at input {x}")
        code = math.floor(ratio + 0.5)
        table.append(min(max(code, INT8_MIN), INT8_MAX))
    return table


def gelu_table(in_scale, out_scale):
    """The GELU table (see the module docstring): a list of 256 ints, entry x + 128 for
    input x. With out_scale = in_scale no entry saturates (|gelu(r)| <= |r|)."""
    return table_from_function(gelu_value, in_scale, out_scale)


# -- the lookup --------------------------------------------------------------------------

def lookup_values(values, table):
    """Python ints -> Python ints: table[x + 128] for each x."""
    return [table[x + TABLE_OFFSET] for x in values]


def lookup(x, table):
    """The engine's result, bit-exact: table[x + 128] for each element of the int8 tensor
    `x` (any shape); an int64 tensor of x's shape. ValueError for values outside int8."""
    import torch
    x = torch.as_tensor(x)
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise TypeError(f"x must be an integer tensor, not {x.dtype}")
    x = x.to(torch.int64)
    if x.numel() and (int(x.min()) < INT8_MIN or int(x.max()) > INT8_MAX):
        raise ValueError(f"x must hold int8 values ({INT8_MIN}..{INT8_MAX}), not values "
                         f"{int(x.min())}..{int(x.max())}")
    entries = torch.tensor(check_table(table), dtype=torch.int64)
    return entries[x + TABLE_OFFSET]


def gelu(x):
    """The float reference: GELU of a real tensor, float64 (the erf form, not tanh)."""
    import torch
    x = torch.as_tensor(x, dtype=torch.float64)
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def table_error(table, function, in_scale, out_scale):
    """How far the int8 table is from the float function over all 256 inputs, in output
    steps (units of out_scale): max_abs and mean_abs of |table[x] * out_scale -
    function(x * in_scale)| / out_scale, the same without saturated entries
    (max_abs_unsaturated: at most 0.5 by construction) and how many entries saturate."""
    table = check_table(table)
    errors, unsaturated, saturated = [], [], 0
    for x in range(INT8_MIN, INT8_MAX + 1):
        exact = function(x * in_scale) / out_scale
        error = abs(table[x + TABLE_OFFSET] - exact)
        errors.append(error)
        if INT8_MIN - 0.5 <= exact < INT8_MAX + 0.5:
            unsaturated.append(error)
        else:
            saturated += 1
    return {"max_abs": max(errors), "mean_abs": sum(errors) / len(errors),
            "max_abs_unsaturated": max(unsaturated, default=0.0), "saturated": saturated}


# -- the engine in the shell -------------------------------------------------------------

class ActivationEngineModel(EngineModel):
    """The activation engine in the shell (docs/activation.md, "In the shell"). It keeps
    the table of the last load, as the hardware does (all zeros before the first): a RUN
    with `words` in 1 .. max_words loads the `table` buffer when `load_table` bit 0 is
    set, then writes table[x + 128] of every lane of words 0 .. words - 1 of `x` to the
    same words of `y`; `cycles` is the RTL's count (engines/activation/cycles.py).
    Otherwise the run sets Errors.WORDS and changes nothing."""

    name = "activation"

    def __init__(self, params):
        self.params = params
        self.buffer_specs = buffers(params)
        self.register_map = registers(params)
        self.table = [0] * TABLE_SIZE

    def run(self, registers, buffers):
        p = self.params
        words = registers["words"]
        if not 1 <= words <= p.max_words:
            return RunResult(errors=int(Errors.WORDS))
        load = self.register_map["load_table"].unpack(registers["load_table"])["load_table"]
        if load:
            self.table = [unpack_lanes(word, 1, ELEMENT_BITS)[0]
                          for word in buffers["table"].words]
        x = buffers["x"].words
        written = {i: pack_lanes(lookup_values(unpack_lanes(x[i], p.lanes, ELEMENT_BITS),
                                               self.table), ELEMENT_BITS)
                   for i in range(words)}
        return RunResult(writes={"y": written}, cycles=run_cycles(p, words, load_table=load),
                         result_words=words)
