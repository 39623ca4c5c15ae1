"""The activation engine (element-wise activation by table: GELU, ...): the engine record."""

from .. import Accelerator, Ref
from . import spec

ENGINE = Accelerator(
    name="activation",
    summary="element-wise activation by table (GELU, ...): int8 -> int8",
    params=spec.ActivationParams,
    registers=spec.registers,
    buffers=spec.buffers,
    errors=spec.Errors,
    core=Ref("celine.rtl.activation.lookup:TableLookup"),
    adapter=Ref("celine.rtl.activation.shell_adapter:ActivationShellAdapter"),
    golden=Ref("celine.golden.activation:ActivationEngineModel"),
    host=Ref("celine.engines.activation.host:ActivationHost"),
    cycles=Ref("celine.engines.activation.cycles:estimate"),
    workload={"elements": 197 * 768},
    bench=Ref("celine.engines.activation.bench:run"),
    sample_calls=Ref("celine.engines.activation.bench:sample_calls"),
    random_call=Ref("celine.engines.activation.calls:random_call"),
    space={"lanes": (1, 2, 4, 8, 16, 32), "max_words": (256, 1024, 4096)},
    small={"params": {"lanes": 3, "max_words": 8}},
    scale=tuple({"lanes": lanes} for lanes in (8, 16, 32)),
    # The default design in the shell on the ULX3S-85F reached 135.1, 138.8 and 138.2 MHz
    # on seeds 1-3 at a 125 MHz constraint (router1; docs/timing.md, "Board clocks");
    # 120 MHz is the highest clock below the lowest that every board's PLL makes exactly
    # with an exact UART divisor (60, 90 and 120 MHz qualify).
    clock_mhz=120,
)
