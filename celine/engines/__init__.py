"""The engine record: everything the rest of Celine needs to know about one engine.

An engine is a package `celine/engines/<name>/` (this record in its `__init__.py`, its
dependency-free declarations in `spec.py`, its host API, cycle model and benchmark) plus
its hardware in `celine/rtl/<name>/` and its golden model in `celine/golden/<name>.py`;
`celine.registry` lists the records. The shell, the golden shell model, the host
`Device`, the board designs, the CLI and the benchmarks loop over the registry and
never name an engine. docs/engines.md is the checklist for adding one.

Everything that needs Amaranth or torch is named by a `Ref` ("module:attribute") and
imported only when used, so that the host runtime can read the registry without them.
"""

from dataclasses import dataclass, field
from importlib import import_module

from ..spec.protocol import engine_description

__all__ = ["Ref", "Accelerator", "CycleEstimate"]


@dataclass(frozen=True)
class Ref:
    """A lazily imported object: "package.module:attribute"."""
    target: str

    def load(self):
        module, _, attribute = self.target.partition(":")
        return getattr(import_module(module), attribute)


@dataclass(frozen=True)
class CycleEstimate:
    """What a cycle model predicts for one workload; `notes` holds anything else the model
    has to say about it (JSON-ready, printed by `celine params`)."""
    cycles: int
    useful_macs: int
    mac_units: float          # ideal MACs per cycle
    notes: dict = field(default_factory=dict)


    @property
    def utilization(self):
        return self.useful_macs / (self.cycles * self.mac_units) if self.cycles else 0.0


@dataclass(frozen=True)
class Accelerator:
    """One engine.

    name, summary: as `celine list` shows them; `name` is also INFO's "engine" and the
      host's attribute (`dev.<name>`).
    params: the generator-parameter class (a frozen dataclass, dependency-free, with
      to_dict/from_dict/derived).
    registers: params -> celine.spec.fields.RegisterMap (ids, fields, reset values).
    buffers: (params, **options) -> [celine.spec.fields.BufferSpec], in id order.
    errors: the IntFlag of the engine's STATUS error bits.
    options: the shell options `buffers`, the adapter and the golden model take (name ->
      default), e.g. buffer depths that are not fixed by the parameters.
    core: the engine's own component, params -> wiring.Component (`celine verilog`).
    adapter: the shell adapter, (params, **options) -> a component with the signature of
      celine.rtl.shell.contract.engine_signature.
    golden: the golden engine model the golden shell model composes,
      (params, **options) -> celine.golden.shell.EngineModel.
    host: the host API, device -> object; the device offers it as `dev.<name>`.
    cycles: the cycle model, (params, **workload) -> CycleEstimate; `workload` is the
      default workload, named for reports.
    bench: `run(out: Path, *, quick: bool, fpga: bool) -> dict`, writes <out>/<name>.json.
    sample_calls: params -> [(workload name, run)], the host calls whose time on the link
      and in the engine the timing benchmark weighs (celine.gen.bench_timing): `run(device)`
      makes one call of that workload on an open device with those params (`device.<name>`,
      seeded random int8 inputs) and returns the engine cycles the call computes by the
      cycle model, summed over the runs the call makes. The first is the default
      `workload`; any other is a variant that cuts the link's share (e.g. weights already on
      chip). The runs are made in order on one device, so a workload may count on what the
      calls before it left there.
    random_call: (params, options, rng) -> (description, run, want), one engine call of a
      random shape and random operands drawn from `rng` (a random.Random), that fits a
      device of those params and shell options: `run(device)` makes the call through
      `device.<name>` and returns its result, `want` is that result computed without the
      device (the engine's reference functions), equal to it bit for bit
      (celine.sim.calls.same). Shapes go from the smallest to what the buffers hold, and
      operands include the extremes (the most negative value). The soak, the noisy line
      and the host properties (celine/sim/calls.py, tests/test_reliability.py) use it.
    space: the exploration space, {parameter: tuple of values}.
    scale: the configurations `celine bench --only largest` tries on each board
      (celine.gen.bench_timing.largest), smallest first, each a dict of parameters over
      the defaults and each larger than the one before (more multipliers, lanes or
      buffers), so that the largest that fits and meets the constraint can be searched
      for by halving.
    small: a small configuration of the engine in the shell for quick whole-device tests
      (the link fuzzer's, celine/sim/fuzz.py): {"params": parameters over the defaults,
      "options": shell options}, either optional.
    clock_mhz: the PLL clock of its board builds when none is asked for (`celine
      bitstream`, `make bitstream`): the default configuration closes at it on every seed
      of the timing benchmark (docs/timing.md, "Board clocks"); None: the board top's
      DEFAULT_CLOCK_HZ. Other configurations may need a lower one (`--clock-mhz`).
    proofs: the formal proofs of the engine's own hardware, a list of
      celine.formal.Proof (docs/formal.md), usually `Ref("celine.engines.<name>.proofs:
      PROOFS")`; `make formal` (celine.formal.all_proofs) runs them after the shared
      ones. None: the engine has none of its own.
    layers: the engine's part in whole models (celine.models.ops.EngineLayers: the model
      operations it runs, golden and on a device, and the parameters it suggests for a
      model), usually `Ref("celine.engines.<name>.layers:LAYERS")`; None: it runs none.
    """
    name: str
    summary: str
    params: type
    registers: object
    buffers: object
    errors: type
    core: Ref
    adapter: Ref
    golden: Ref
    host: Ref
    cycles: Ref
    bench: Ref
    sample_calls: Ref
    random_call: Ref
    space: dict
    workload: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    scale: tuple = ()
    small: dict = field(default_factory=dict)
    clock_mhz: float | None = None
    proofs: Ref | None = None
    layers: Ref | None = None

    def resolve_options(self, options):
        """`options` over the defaults; ValueError for an unknown name."""
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise ValueError(f"option must be one of {known} for the {self.name} engine, "
                             f"not {unknown[0]!r}")
        return {**self.options, **options}

    def small_point(self):
        """(params, options) of `small`: the generator parameters and the shell options."""
        import dataclasses
        return (dataclasses.replace(self.params(), **self.small.get("params", {})),
                self.resolve_options(self.small.get("options", {})))

    def describe(self, params, **options):
        """The engine's part of the INFO description."""
        options = self.resolve_options(options)
        return engine_description(self.name, params, self.buffers(params, **options),
                                  self.registers(params))
