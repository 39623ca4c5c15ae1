"""The precision-scalable MAC array (2-in-1 Accelerator, InstantNet): the engine record."""

from .. import Accelerator, Ref
from . import spec

ENGINE = Accelerator(
    name="mac",
    summary="precision-scalable MAC array (2-in-1 Accelerator, InstantNet)",
    params=spec.MacArrayParams,
    registers=spec.registers,
    buffers=spec.buffers,
    errors=spec.Errors,
    options={"operand_depth": spec.DEFAULT_OPERAND_DEPTH,
             "result_depth": spec.DEFAULT_RESULT_DEPTH},
    core=Ref("celine.rtl.mac.array:MacArray"),
    adapter=Ref("celine.rtl.mac.shell_adapter:MacShellAdapter"),
    golden=Ref("celine.golden.mac:MacEngineModel"),
    host=Ref("celine.engines.mac.host:MacArrayHost"),
    cycles=Ref("celine.engines.mac.cycles:estimate"),
    workload={"m": 64, "k": 64, "n": 64},
    bench=Ref("celine.engines.mac.bench:run"),
    sample_calls=Ref("celine.engines.mac.bench:sample_calls"),
    random_call=Ref("celine.engines.mac.calls:random_call"),
    space={"rows": (1, 2, 4, 8, 16), "cols": (1, 2, 4, 8, 16), "impl": spec.IMPLS,
           "brick_width": (1, 2, 4), "precisions": ((8,), (4, 8), (2, 4, 8, 16))},
    # DSP PEs, 8-bit: a MULT18X18D a PE, and up to 3 a column in the drain's requantizers.
    small={"params": {"rows": 2, "cols": 2, "precisions": (4, 8)},
           "options": {"operand_depth": 16, "result_depth": 16}},
    scale=tuple({"impl": "dsp", "precisions": (8,), "rows": rows, "cols": cols}
                for rows, cols in ((2, 2), (4, 4), (8, 4), (8, 8), (16, 8), (16, 16))),
    # The default design in the shell on the ULX3S-85F reached 134.4, 135.4 and 136.8 MHz
    # on seeds 1-3 at a 125 MHz constraint (router1; docs/timing.md, "Board clocks");
    # 120 MHz is the highest clock below the lowest that every board's PLL makes exactly
    # with an exact UART divisor (40 at 3 Mbaud; 60, 90 and 120 MHz qualify).
    clock_mhz=120,
    proofs=Ref("celine.engines.mac.proofs:PROOFS"),
    layers=Ref("celine.engines.mac.layers:LAYERS"),
)
