"""rtl/mac/shell_adapter.py in the Amaranth simulator: the adapter between block-RAM buffers
and the MAC array, against the golden engine model (golden/mac.py, MacEngineModel)."""

import random

import pytest

from celine.engines.mac.spec import REQUANT_REGISTER, Errors, MacArrayParams
from celine.golden.mac import MacEngineModel
from celine.golden.shell import Buffer
from celine.rtl.mac.shell_adapter import SKID_LATENCY, MacShellAdapter
from celine.spec.numerics import REQUANT_LATENCY
from celine.sim.adapter_bench import run_adapter as adapter_run
from celine.sim.amaranth_sim import shared

SMALL = MacArrayParams(rows=2, cols=2, precisions=(2, 4, 8, 16))
DSP = MacArrayParams(rows=2, cols=3, impl="dsp", precisions=(4, 8))


def operand_words(spec, seed):
    """Random words filling an operand buffer, lanes at their extremes in word 0."""
    rng = random.Random(seed)
    words = [rng.getrandbits(spec.width) for _ in range(spec.depth)]
    words[0] = int("10" * (spec.width // 2), 2)      # -128 / 0x80.. lanes and zeros
    return words


def run_adapter(params, settings, *, runs=1, limit=20_000, seed=0, **options):
    """Run the adapter `runs` times with register `settings`; (status per run, buffers)
    with status (errors, cycles, result_words) and buffers {name: words} after the runs."""
    engine = shared(MacShellAdapter, params, **options)
    contents = {spec.name: operand_words(spec, seed + i)
                for i, spec in enumerate(engine.buffers) if spec.writable}
    return adapter_run(engine, contents, settings, runs=runs, limit=limit)


def golden(params, settings, words, *, runs=1, **options):
    """The golden model's (errors, result_words) per run and buffers after the runs."""
    model = MacEngineModel(params, **options)
    buffers = {spec.name: Buffer(spec) for spec in model.buffer_specs}
    for name, buffer in buffers.items():
        if buffer.writable:
            buffer.words = list(words[name])
    registers = {name: settings.get(name, model.register_map[name].reset)
                 for name in model.register_map.names}
    status = []
    for _ in range(runs):
        result = model.run(registers, buffers)
        for name, writes in result.writes.items():
            for index, word in writes.items():
                buffers[name].words[index] = word
        status.append((result.errors, result.result_words))
    return status, {name: buffer.words for name, buffer in buffers.items()}


def requant(enable=1, multiplier=1, shift=0):
    return REQUANT_REGISTER.pack(enable=enable, multiplier=multiplier, shift=shift)


# name: (params, options, settings, runs, RTL cycles per run). The cycle counts are the
# adapter's as measured before rtl/common's buffer blocks replaced its hand-made prefetch
# (the adapter must not change them), re-measured when BufferReader registered the block
# RAMs' words (READER_LATENCY 4), when the adapter's queue grew to 6 (a word a cycle
# again), when the brick PEs' pipeline grew and when the PEs' operand reduction got a
# register stage of its own (every PE one cycle more), so
# that a tile's sums are copied COPY_LATENCY cycles after its last beat is accepted (the
# next tile's last beat waits for that copy, so short tiles pay for it more than once;
# the PEs' latency, since the array hands them a beat the cycle it accepts it), with a
# requantizer of MEASURED_REQUANT_LATENCY stages: each further stage delays a run's last
# result row by one cycle. The skid buffer before the array (SKID_LATENCY) came after.
COPY_LATENCY = {"bricks": 8, "dsp": 6}
MEASURED_REQUANT_LATENCY = 8
CASES = {
    "p8 3 tiles": (SMALL, dict(operand_depth=32, result_depth=32),
                   dict(depth=5, tiles=3, precision=8), 1, [50]),
    "p16 passes": (SMALL, dict(operand_depth=32, result_depth=32),
                   dict(depth=4, tiles=2, precision=16), 1, [55]),
    "p2 requant": (SMALL, dict(operand_depth=32, result_depth=32),
                   dict(depth=3, tiles=2, precision=2,
                        requant=requant(multiplier=300, shift=9)), 1, [49]),
    "p4 one beat tiles": (SMALL, dict(operand_depth=32, result_depth=32),
                          dict(depth=1, tiles=6, precision=4), 1, [91]),
    "rps": (SMALL, dict(operand_depth=32, result_depth=64),
            dict(depth=4, tiles=5, rps_enable=1), 1, [90]),
    "overflow": (SMALL, dict(operand_depth=16, result_depth=8),
                 dict(depth=2, tiles=2, precision=2), 1, [48]),
    "bad precision": (SMALL, dict(operand_depth=16, result_depth=16),
                      dict(depth=3, tiles=1, precision=3), 1, [35]),
    "no tiles": (SMALL, dict(operand_depth=16, result_depth=16),
                 dict(depth=3, tiles=0, precision=8), 1, [1]),
    "no depth": (SMALL, dict(operand_depth=16, result_depth=16),
                 dict(depth=0, tiles=3, precision=8), 1, [1]),
    "twice": (SMALL, dict(operand_depth=32, result_depth=32),
              dict(depth=6, tiles=2, precision=8), 2, [40, 40]),
    "dsp p4": (DSP, dict(operand_depth=32, result_depth=32),
               dict(depth=7, tiles=4, precision=4), 1, [55]),   # 47 before the DSP PE's
                                                                  # fabric product register,
                                                                  # 51 before stage R
    "dsp whole buffer": (DSP, dict(operand_depth=16, result_depth=32),
                         dict(depth=16, tiles=1, precision=8), 1, [37]),   # 35, 36 before them
    # The grid: the act block again for each weight block of a row, from weight_base on.
    # A tile takes as long as without the grid (test_the_grid_takes_no_extra_cycle).
    "grid one row": (SMALL, dict(operand_depth=32, result_depth=32),
                     dict(depth=5, tiles=3, precision=8, grid_cols=3, weight_base=7), 1, [50]),
    "grid 3 x 2 p4": (SMALL, dict(operand_depth=32, result_depth=64),
                      dict(depth=3, tiles=6, precision=4, grid_cols=2, weight_base=10), 1,
                      [93]),
    "grid one column": (DSP, dict(operand_depth=32, result_depth=32),
                        dict(depth=4, tiles=3, precision=8, grid_cols=1, weight_base=3), 1,
                        [43]),
    "grid weight_base wraps": (SMALL, dict(operand_depth=32, result_depth=32),
                               dict(depth=4, tiles=4, precision=8, grid_cols=2,
                                    weight_base=28), 1, [60]),
    "grid twice": (DSP, dict(operand_depth=32, result_depth=32),
                   dict(depth=2, tiles=4, precision=8, grid_cols=4, weight_base=1), 2, [50, 50]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_adapter_matches_the_golden_engine_model(case):
    params, options, settings, runs, cycles = CASES[case]
    assert params.pe_latency == COPY_LATENCY[params.impl], "the pinned cycles assume COPY_LATENCY"
    assert params.result_latency == COPY_LATENCY[params.impl] + 2 + REQUANT_LATENCY, \
        "the pinned cycles assume the drain's latency (shadow copy, queue)"
    if settings["tiles"] and settings["depth"]:
        cycles = [c + REQUANT_LATENCY - MEASURED_REQUANT_LATENCY + SKID_LATENCY for c in cycles]
    status, words = run_adapter(params, settings, runs=runs, **options)
    want_status, want_words = golden(params, settings, words, runs=runs, **options)
    assert words["result"] == want_words["result"]
    assert [(errors, result_words) for errors, _, result_words in status] == want_status
    assert [c for _, c, _ in status] == cycles


def test_adapter_flags_overflow_and_precision():
    # The cases above compare against the golden model; here the flags are named outright.
    _, options, settings, _, _ = CASES["overflow"]
    (status,), _ = run_adapter(SMALL, settings, **options)
    assert status[0] == Errors.OVERFLOW and status[2] == 8
    _, options, settings, _, _ = CASES["bad precision"]
    (status,), _ = run_adapter(SMALL, settings, **options)
    assert status[0] == Errors.PRECISION


def test_adapter_checks_its_parameters():
    with pytest.raises(TypeError, match=r"^params must be a MacArrayParams, not 3$"):
        MacShellAdapter(3)
    with pytest.raises(ValueError, match=r"^operand_depth must be between 1 and 65536, "
                                         r"not 0$"):
        MacShellAdapter(SMALL, operand_depth=0)


@pytest.mark.parametrize("case", [name for name in CASES if name.startswith("grid")])
def test_the_grid_takes_no_extra_cycle(case):
    params, options, settings, runs, cycles = CASES[case]
    plain = {name: value for name, value in settings.items()
             if name not in ("grid_cols", "weight_base")}
    status, _ = run_adapter(params, plain, runs=runs, **options)
    assert [c for _, c, _ in status] == [c + REQUANT_LATENCY - MEASURED_REQUANT_LATENCY
                                         + SKID_LATENCY for c in cycles]
