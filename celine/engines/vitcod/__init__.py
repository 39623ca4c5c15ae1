"""ViTCoD: softmax attention over a fixed polarized sparse mask: the engine record."""

from .. import Accelerator, Ref
from . import spec

ENGINE = Accelerator(
    name="vitcod",
    summary="ViTCoD dense/sparse softmax attention (denser + sparser SDDMM engines, softmax, SpMM)",
    params=spec.VitcodParams,
    registers=spec.registers,
    buffers=spec.buffers,
    errors=spec.Errors,
    core=Ref("celine.rtl.vitcod.core:VitcodCore"),
    adapter=Ref("celine.rtl.vitcod.shell_adapter:VitcodShellAdapter"),
    golden=Ref("celine.golden.vitcod.engine_model:VitcodEngineModel"),
    host=Ref("celine.engines.vitcod.host:VitcodHost"),
    cycles=Ref("celine.engines.vitcod.cycles:estimate"),
    workload={"tokens": 197, "sparsity": 0.95},     # the shipped DeiT-Tiny masks' sparsity
    bench=Ref("celine.engines.vitcod.bench:run"),
    sample_calls=Ref("celine.engines.vitcod.bench:sample_calls"),
    random_call=Ref("celine.engines.vitcod.calls:random_call"),
    layers=Ref("celine.engines.vitcod.layers:LAYERS"),
    space={"dense_macs": (8, 16, 24, 32), "sparse_macs": (24, 32, 40, 48, 56),
           "out_lanes": (16, 32), "max_global": (16, 32, 64),
           "sparse_capacity": (1024, 2048, 4096), "heads": (1, 3)},
    small={"params": {"head_dim": 16, "max_tokens": 24, "heads": 2, "max_global": 8,
                      "sparse_capacity": 400, "dense_macs": 8, "sparse_macs": 8,
                      "out_lanes": 4}},
    scale=tuple({"dense_macs": dense, "sparse_macs": sparse}
                for dense, sparse in ((8, 8), (8, 24), (16, 48), (32, 64), (64, 64))),
    # The default design in the shell on the ULX3S-85F reached 127.0, 125.6 and 134.3 MHz
    # on seeds 1-3 at a 125 MHz constraint (router1; docs/timing.md, "Board clocks"); 120
    # MHz is the highest clock below the lowest that every board's PLL makes exactly with
    # an exact UART divisor (60, 90 and 120 MHz qualify).
    clock_mhz=120,
    proofs=Ref("celine.engines.vitcod.proofs:PROOFS"),
)
