"""The ViTALiTy Taylor-attention pipeline: the engine record."""

from .. import Accelerator, Ref
from . import spec

ENGINE = Accelerator(
    name="taylor",
    summary="ViTALiTy Taylor-attention pipeline (linear attention)",
    params=spec.TaylorParams,
    registers=spec.registers,
    buffers=spec.buffers,
    errors=spec.Errors,
    core=Ref("celine.rtl.taylor.pipeline:TaylorPipeline"),
    adapter=Ref("celine.rtl.taylor.shell_adapter:TaylorShellAdapter"),
    golden=Ref("celine.golden.taylor:TaylorEngineModel"),
    host=Ref("celine.engines.taylor.host:TaylorHost"),
    cycles=Ref("celine.engines.taylor.cycles:estimate"),
    workload={"tokens": 197},
    bench=Ref("celine.engines.taylor.bench:run"),
    sample_calls=Ref("celine.engines.taylor.bench:sample_calls"),
    random_call=Ref("celine.engines.taylor.calls:random_call"),
    space={"mac_units": (1, 2, 4, 8, 16, 32, 64), "head_dim": (32, 64),
           "max_tokens": (197, 256, 512), "heads": (1, 3, 6)},
    # One head's buffers first: three heads of 256 tokens (192 KB of host buffers) do not
    # fit the ULX3S-25F's 56 block RAMs (112 KB).
    small={"params": {"head_dim": 16, "max_tokens": 16, "mac_units": 4, "heads": 2}},
    scale=tuple({"head_dim": 64, "heads": heads, "mac_units": units}
                for heads, units in ((1, 8), (1, 16), (3, 16), (3, 32), (3, 64))),
    # The default design in the shell on the ULX3S-85F reached 136.2, 126.8 and 131.5 MHz
    # on seeds 1-3 at a 125 MHz constraint (router1; docs/timing.md, "Board clocks"; 126.9,
    # 120.3 and 116.3 the round before): 120 MHz is the highest clock below the lowest that
    # every board's PLL makes exactly with an exact UART divisor (60, 90 and 120 MHz
    # qualify).
    clock_mhz=120,
    proofs=Ref("celine.engines.taylor.proofs:PROOFS"),
    layers=Ref("celine.engines.taylor.layers:LAYERS"),
)
