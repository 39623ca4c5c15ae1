"""SmartDeal: linear layers whose weights stay packed (W ~ Ce·B, Ce sparse powers of two),
rebuilt on chip by shifts and adds: the engine record."""

from .. import Accelerator, Ref
from . import spec

ENGINE = Accelerator(
    name="smartdeal",
    summary="SmartDeal linear layer (packed Ce·B weights, the SD decoder, the MAC array)",
    params=spec.SmartDealParams,
    registers=spec.registers,
    buffers=spec.buffers,
    errors=spec.Errors,
    core=Ref("celine.rtl.smartdeal.shell_adapter:smartdeal_core"),
    adapter=Ref("celine.rtl.smartdeal.shell_adapter:SmartDealShellAdapter"),
    golden=Ref("celine.golden.smartdeal.engine_model:SmartDealEngineModel"),
    host=Ref("celine.engines.smartdeal.host:SmartDealHost"),
    cycles=Ref("celine.engines.smartdeal.cycles:estimate"),
    workload={"outputs": 96, "inputs": 48, "tokens": 17},
    bench=Ref("celine.engines.smartdeal.bench:run"),
    sample_calls=Ref("celine.engines.smartdeal.bench:sample_calls"),
    random_call=Ref("celine.engines.smartdeal.calls:random_call"),
    layers=Ref("celine.engines.smartdeal.layers:LAYERS"),
    space={"impl": spec.IMPLS, "rows_per_cycle": (1, 2, 4), "exponent_bits": (2, 3),
           "array_rows": (2, 4, 8), "array_cols": (2, 4, 8), "array_impl": ("dsp", "bricks")},
    small={"params": {"max_tokens": 16, "max_inputs": 48, "max_outputs": 48,
                      "weight_words": 512}},
    # The last rung fills the 85F: 16 x 8 PEs and the drain's requantizers are 144 of its
    # 156 MULT18X18D (16 x 16 do not fit), with 2 weight rows decoded a cycle to keep
    # them fed (60 useful MACs a cycle on the workload, against 37 with 1 row; 8 x 8 PEs
    # reach 37 with 1 row and 42 with 2). It does not meet 100 MHz yet: the weight
    # parser's decode of 2 rows is 8 LUT levels deep (93.3 MHz; with 4 rows, 11 levels and
    # 63.4 MHz; docs/timing.md, "The largest configurations").
    scale=(*({"array_rows": size, "array_cols": size} for size in (2, 4, 8)),
           {"array_rows": 16, "array_cols": 8, "rows_per_cycle": 2}),
    # The default design in the shell on the ULX3S-85F reached 126.6, 128.0 and 128.3 MHz
    # on seeds 1-3 at a 125 MHz constraint (router1 with the timing-driven ripup;
    # docs/timing.md, "Board clocks"), and
    # its board build at 120 MHz met it (123.8 MHz, seed 1); 120 MHz is the highest clock
    # below the lowest that every board's PLL makes exactly with an exact UART divisor
    # (60, 90 and 120 MHz qualify).
    clock_mhz=120,
)
