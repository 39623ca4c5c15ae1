"""The activation engine (element-wise activation by table): parameters, the golden
model, the lookup and the shell adapter in the Amaranth simulator, the cocotb testbench
under stalls, the cycle model against RTL, the host API over the golden shell model, and
end to end through the shell's Verilog with the host runtime."""

import json
import math
import random

import numpy as np
import pytest
import torch

from celine import registry
from celine.engines.activation.cycles import estimate, run_cycles, runs
from celine.engines.activation.spec import (LOOKUP_LATENCY, ActivationParams, Errors, buffers,
                                            registers)
from celine.firmware.device import Device
from celine.firmware.errors import SettingError
from celine.firmware.protocol import Command
from celine.firmware.transport import LoopbackTransport
from celine.golden.activation import (ActivationEngineModel, check_scale, check_table, gelu,
                                      gelu_table, gelu_value, lookup, lookup_values,
                                      table_error, table_from_function)
from celine.golden.shell import shell_model
from celine.rtl.activation.lookup import TableLookup
from celine.rtl.activation.shell_adapter import ActivationShellAdapter
from celine.sim.adapter_bench import AdapterBench
from celine.sim.amaranth_sim import run_sim, stream_get_n, stream_put_all
from celine.sim.runner import run_cocotb
from celine.spec.lanes import pack_lanes, unpack_lanes

IDENTITY = list(range(-128, 128))
NEGATE = [min(127, -x) for x in range(-128, 128)]        # -(-128) saturates to 127


def random_table(seed):
    rng = random.Random(seed)
    table = [rng.randint(-128, 127) for _ in range(256)]
    table[0], table[255] = 127, -128                        # extremes at the extremes
    return table


def random_lanes(rng, count, lanes):
    """`count` beats of int8 lanes: random, with whole beats of -128 and of 127."""
    beats = [[rng.randint(-128, 127) for _ in range(lanes)] for _ in range(count)]
    if count >= 3:
        beats[0], beats[count // 2] = [-128] * lanes, [127] * lanes
    return beats


# -- parameters --------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,error,message", [
    (dict(lanes=0), ValueError, "lanes must be between 1 and 64, not 0"),
    (dict(lanes=65), ValueError, "lanes must be between 1 and 64, not 65"),
    (dict(lanes=True), TypeError, "lanes must be an integer, not True"),
    (dict(lanes=8.0), TypeError, "lanes must be an integer, not 8.0"),
    (dict(max_words=0), ValueError, "max_words must be between 1 and 16384, not 0"),
    (dict(max_words=16385), ValueError, "max_words must be between 1 and 16384, not 16385"),
    (dict(max_words="8"), TypeError, "max_words must be an integer, not '8'"),
])
def test_parameters_are_checked(kwargs, error, message):
    with pytest.raises(error, match=f"^{message}$"):
        ActivationParams(**kwargs)


def test_components_check_their_parameters():
    with pytest.raises(TypeError, match=r"^params must be an ActivationParams, not 8$"):
        TableLookup(8)
    with pytest.raises(TypeError, match=r"^params must be an ActivationParams, not None$"):
        ActivationShellAdapter(None)


def test_declarations():
    p = ActivationParams(lanes=3, max_words=10)
    assert p.to_dict() == {"lanes": 3, "max_words": 10}
    assert ActivationParams.from_dict(p.to_dict()) == p
    assert p.derived() == {"word_bits": 24, "table_entries": 256, "max_elements": 30}
    assert [(b.name, b.width, b.depth, b.writable, b.word_stride) for b in buffers(p)] == [
        ("table", 8, 256, True, 1), ("x", 24, 10, True, 4), ("y", 24, 10, False, 4)]
    regs = registers(p)
    assert regs.names == ("words", "load_table")
    assert regs.reset_values() == {"words": 0, "load_table": 1}
    assert int(Errors.WORDS) == 1
    record = registry.get("activation")
    assert record.params is ActivationParams and record.core.load() is TableLookup
    assert record.describe(p)["buffers"][0]["name"] == "table"


# -- the golden model --------------------------------------------------------------------

def test_table_checks():
    assert check_table(IDENTITY) == IDENTITY
    assert check_table(torch.tensor(NEGATE)) == NEGATE
    assert check_table(np.array(IDENTITY, dtype=np.int8)) == IDENTITY
    for table, error, message in [
        (IDENTITY[:255], ValueError, r"table must have 256 entries \(entry x \+ 128 for "
                                     r"input x\), not 255"),
        (IDENTITY[:-1] + [128], ValueError, r"table entries must be between -128 and 127, "
                                            r"not 128 \(entry 255\)"),
        ([0.5] * 256, TypeError, r"table entries must be integers, not 0.5 \(entry 0\)"),
        ([True] * 256, TypeError, r"table entries must be integers, not True \(entry 0\)"),
        ("x" * 256, TypeError, r"table must be a sequence of 256 integers, not 'x+'"),
        (7, TypeError, r"table must be a sequence of 256 integers, not 7"),
    ]:
        with pytest.raises(error, match=f"^{message}$"):
            check_table(table)


def test_scale_checks():
    assert check_scale("in_scale", 1) == 1.0
    for value, error, message in [
        (0, ValueError, "in_scale must be a finite number above 0, not 0.0"),
        (-0.5, ValueError, "in_scale must be a finite number above 0, not -0.5"),
        (math.inf, ValueError, "in_scale must be a finite number above 0, not inf"),
        (math.nan, ValueError, "in_scale must be a finite number above 0, not nan"),
        ("1", TypeError, "in_scale must be a real number, not '1'"),
        (True, TypeError, "in_scale must be a real number, not True"),
    ]:
        with pytest.raises(error, match=f"^{message}$"):
            check_scale("in_scale", value)
    with pytest.raises(ValueError, match=r"^out_scale must be a finite number above 0, "
                                         r"not 0.0$"):
        gelu_table(0.1, 0)
    # finite scales whose product overflows a float: a clear error, not NaN into floor()
    with pytest.raises(ValueError, match=r"^in_scale 1\.5e\+306 with out_scale 1\.5e\+306 "
                                         r"overflows a float at input -128$"):
        gelu_table(1.5e306, 1.5e306)


def test_table_rounding_is_half_up_then_saturated():
    halves = table_from_function(lambda r: r, 1.0, 2.0)      # x / 2
    assert [halves[x + 128] for x in (-3, -1, 1, 3)] == [-1, 0, 1, 2]
    doubled = table_from_function(lambda r: r, 1.0, 0.5)     # 2 x, saturated
    assert doubled[0] == -128 and doubled[255] == 127 and doubled[128 + 63] == 126


def test_gelu_table_values():
    table = gelu_table(0.05, 0.05)
    assert table[128] == 0 and table[255] == 127 and table[0] == 0
    # gelu(1) = 0.8413447460685429: x = 20 (r = 1.0) -> 16.83 -> 17
    assert table[128 + 20] == 17 == math.floor(gelu_value(1.0) / 0.05 + 0.5)
    # gelu(-0.75) = -0.1700 (near the minimum): x = -15 -> -3.40 -> -3
    assert table[128 - 15] == -3
    assert min(table) == -3
    # The float reference (torch) agrees with the table within half a step everywhere.
    x = torch.arange(-128, 128)
    exact = gelu(x * 0.05) / 0.05
    assert float((torch.tensor(table) - exact).abs().max()) <= 0.5
    report = table_error(table, gelu_value, 0.05, 0.05)
    assert report["saturated"] == 0 and report["max_abs"] <= 0.5
    # An output scale too small saturates the top entries.
    report = table_error(gelu_table(0.05, 0.02), gelu_value, 0.05, 0.02)
    assert report["saturated"] > 0 and report["max_abs_unsaturated"] <= 0.5


def test_lookup_is_the_table_entry():
    table = random_table(1)
    x = torch.tensor([[-128, 127, 0], [5, -5, -1]])
    assert lookup(x, table).tolist() == [[table[0], table[255], table[128]],
                                         [table[133], table[123], table[127]]]
    assert lookup(x, table).dtype == torch.int64
    assert lookup_values([-128, 127], table) == [127, -128]
    with pytest.raises(ValueError, match=r"^x must hold int8 values \(-128..127\), not values "
                                         r"-129..0$"):
        lookup(torch.tensor([-129, 0]), table)
    with pytest.raises(TypeError, match=r"^x must be an integer tensor, not torch.float32$"):
        lookup(torch.tensor([0.5]), table)


def test_engine_model_keeps_the_loaded_table():
    from celine.golden.shell import Buffer
    p = ActivationParams(lanes=2, max_words=4)
    model = ActivationEngineModel(p)
    specs = {spec.name: Buffer(spec) for spec in buffers(p)}
    specs["table"].words = [v & 0xFF for v in NEGATE]
    specs["x"].words = [pack_lanes([-128, 127], 8), pack_lanes([3, -3], 8), 0, 0]
    result = model.run({"words": 2, "load_table": 1}, specs)
    assert [unpack_lanes(result.writes["y"][i], 2, 8) for i in range(2)] == [[127, -127],
                                                                           [-3, 3]]
    assert result.cycles == run_cycles(p, 2) == 264 and result.result_words == 2
    specs["table"].words = [0] * 256           # not loaded: the negation stays
    result = model.run({"words": 1, "load_table": 0}, specs)
    assert unpack_lanes(result.writes["y"][0], 2, 8) == [127, -127]
    assert result.cycles == 7
    for words in (0, 5):
        result = model.run({"words": words, "load_table": 1}, specs)
        assert result.errors == Errors.WORDS and result.writes == {} and result.cycles == 0
    assert model.table == NEGATE               # a refused run loads nothing


# -- the cycle model ---------------------------------------------------------------------

def test_cycle_model_bookkeeping():
    p = ActivationParams(lanes=8, max_words=1024)
    assert run_cycles(p, 1) == 263 and run_cycles(p, 1024, load_table=False) == 1030
    assert runs(p, 8 * 1024 + 1) == [(1024, True), (1, False)]
    assert runs(ActivationParams(lanes=3, max_words=4), 13) == [(4, True), (1, False)]
    deit = estimate(p)                                     # 197 x 768 elements
    assert deit.cycles == 256 + 18912 + 19 * 6 and deit.useful_macs == 197 * 768
    assert 0.98 < deit.utilization <= 1
    for call, message in [(lambda: run_cycles(p, 0), "words must be between 1 and 1024, "
                                                     "not 0"),
                          (lambda: run_cycles(p, 1025), "words must be between 1 and 1024, "
                                                        "not 1025"),
                          (lambda: runs(p, 0), "elements must be a positive integer, not 0")]:
        with pytest.raises(ValueError, match=f"^{message}$"):
            call()


# -- the lookup in the Amaranth simulator -------------------------------------------------

def lookup_beats(beats, table, rng):
    inputs = [{"data": lanes, "last": int(rng.random() < 0.3)} for lanes in beats]
    expected = [{"data": lookup_values(b["data"], table), "last": b["last"]} for b in inputs]
    return inputs, expected


@pytest.mark.parametrize("lanes,idle,backpressure", [(1, 0.0, 0.0), (3, 0.4, 0.4),
                                                     (8, 0.1, 0.7)])
def test_lookup_streams_under_stalls(lanes, idle, backpressure):
    dut = TableLookup(ActivationParams(lanes=lanes))
    rng = random.Random(lanes)
    batches = [(random_table(lanes), random_lanes(rng, 40, lanes)),
               (NEGATE, random_lanes(rng, 25, lanes))]
    cases = [(table, *lookup_beats(beats, table, rng)) for table, beats in batches]

    done = []                    # batches whose outputs have all arrived

    async def producer(ctx):
        for n, (table, inputs, _) in enumerate(cases):
            while len(done) < n:                 # the table changes between batches only
                await ctx.tick()
            for addr, value in enumerate(table):
                ctx.set(dut.table.addr, addr)
                ctx.set(dut.table.data, value & 0xFF)
                ctx.set(dut.table.en, 1)
                await ctx.tick()
            ctx.set(dut.table.en, 0)
            await stream_put_all(ctx, dut.i, inputs, rng=random.Random(9), idle_prob=idle)

    async def consumer(ctx):
        for n, (_, _, expected) in enumerate(cases):
            received = await stream_get_n(ctx, dut.o, len(expected), rng=random.Random(n),
                                          backpressure_prob=backpressure)
            assert received == expected, f"batch {n}"
            done.append(n)

    run_sim(dut, producer, consumer, deadline=1e-2)


def test_lookup_takes_a_beat_a_cycle_with_two_cycles_latency():
    dut = TableLookup(ActivationParams(lanes=2))

    async def testbench(ctx):
        for addr in range(256):
            ctx.set(dut.table.addr, addr)
            ctx.set(dut.table.data, NEGATE[addr] & 0xFF)
            ctx.set(dut.table.en, 1)
            await ctx.tick()
        ctx.set(dut.table.en, 0)
        ctx.set(dut.o.ready, 1)
        seen = []
        for cycle in range(7):
            ctx.set(dut.i.valid, cycle < 4)
            ctx.set(dut.i.payload, {"data": [cycle, -128], "last": cycle == 3})
            assert ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid):
                seen.append((cycle, ctx.get(dut.o.payload.data[0]),
                             ctx.get(dut.o.payload.data[1]), ctx.get(dut.o.payload.last)))
            await ctx.tick()
        assert seen == [(2, 0, 127, 0), (3, -1, 127, 0), (4, -2, 127, 0), (5, -3, 127, 1)]

    run_sim(dut, testbench)


# -- the shell adapter in the Amaranth simulator ------------------------------------------

def run_adapter(params, table, x_lanes, settings, limit=5000):
    """Runs with `settings` [(words, load_table)] in turn: [(errors, cycles, result_words,
    y as lanes)] after each."""
    x = [pack_lanes(lanes, 8) for lanes in x_lanes]
    adapter = ActivationShellAdapter(params)
    bench = AdapterBench(adapter, {"table": [v & 0xFF for v in table],
                                   "x": x + [0] * (params.max_words - len(x))})
    out = []

    async def testbench(ctx):
        for words, load in settings:
            ctx.set(adapter.registers[0], words)
            ctx.set(adapter.registers[1], load)
            ctx.set(adapter.start, 1)
            await ctx.tick()
            ctx.set(adapter.start, 0)
            for _ in range(limit):
                if not ctx.get(adapter.busy):
                    break
                await ctx.tick()
            else:
                raise TimeoutError(f"still busy after {limit} cycles")
            y = [unpack_lanes(ctx.get(bench.memories["y"].data[i]), params.lanes, 8)
                 for i in range(params.max_words)]
            out.append((ctx.get(adapter.errors), ctx.get(adapter.cycles),
                        ctx.get(adapter.result_words), y))

    run_sim(bench, testbench)
    return out


def test_adapter_runs_match_golden_and_the_cycle_model():
    p = ActivationParams(lanes=3, max_words=9)
    rng = random.Random(5)
    x = random_lanes(rng, 9, 3)
    table = random_table(2)
    results = run_adapter(p, table, x, [(9, 1), (1, 0), (4, 1), (0, 1), (10, 0), (5, 0)])
    expected = [[lookup_values(lanes, table) for lanes in x]]
    for n, (words, load) in enumerate([(9, 1), (1, 0), (4, 1)]):
        errors, cycles, result_words, y = results[n]
        assert (errors, cycles, result_words) == (0, run_cycles(p, words, load_table=load),
                                                  words)
        assert y[:words] == expected[0][:words], f"run {n}"
    for n in (3, 4):                                  # words 0 and max_words + 1
        assert results[n][:3] == (Errors.WORDS, 0, 0)
    assert results[5][:3] == (0, 11, 5)                # the flags clear on the next run


def test_adapter_without_a_load_uses_the_power_up_table():
    p = ActivationParams(lanes=2, max_words=2)
    (errors, cycles, words, y), = run_adapter(p, NEGATE, [[1, 2], [3, 4]], [(2, 0)])
    assert (errors, cycles, words, y) == (0, 8, 2, [[0, 0], [0, 0]])


# -- cocotb: the lookup and the adapter under Verilator ---------------------------------

LOOKUP_POINTS = {                 # name: (lanes, beats per batch)
    "l1": (1, [70, 1]),
    "l3": (3, [41, 17]),
    "l8": (8, [64, 9]),
}
ADAPTER_POINTS = {                # name: (lanes, max_words, runs [(words, load_table)])
    "l1_w1": (1, 1, [(1, 1), (1, 0), (2, 1), (1, 1)]),
    "l3_w7": (3, 7, [(7, 1), (1, 0), (5, 0), (0, 1), (3, 1), (8, 1), (7, 0)]),
    "l8_w64": (8, 64, [(64, 1), (33, 0), (1, 1)]),
}
STALLS = [(0.0, 0.0), (0.3, 0.3), (0.7, 0.1), (0.1, 0.8)]


def lookup_case(name, seed):
    lanes, counts = LOOKUP_POINTS[name]
    rng = random.Random(seed)
    batches = []
    for n, count in enumerate(counts):
        table = random_table(seed + n) if n % 2 == 0 else NEGATE
        inputs, expected = lookup_beats(random_lanes(rng, count, lanes), table, rng)
        batches.append({"table": table, "beats": inputs, "expected": expected})
    return ActivationParams(lanes=lanes), batches


def run_lookup(request, name, *, seed, idle_prob=0.0, backpressure_prob=0.0,
               testcase="lookup_matches_golden"):
    params, batches = lookup_case(name, seed)
    return run_cocotb(TableLookup(params), toplevel=f"activation_lookup_{name}",
                      test_module="celine.sim.tb.activation_tb", case_id=request.node.nodeid,
                      params=params.to_dict(), seed=seed, testcase=testcase,
                      data={"batches": batches, "idle_prob": idle_prob,
                            "backpressure_prob": backpressure_prob})


def adapter_case(name, seed):
    lanes, max_words, settings = ADAPTER_POINTS[name]
    params = ActivationParams(lanes=lanes, max_words=max_words)
    rng = random.Random(seed)
    loaded, out = [0] * 256, []
    for n, (words, load) in enumerate(settings):
        table = random_table(seed + n) if n % 2 == 0 else NEGATE
        x = random_lanes(rng, max_words, lanes)
        bad = not 1 <= words <= max_words
        if load and not bad:
            loaded = table
        out.append({
            "words": words, "load_table": load, "table": table,
            "x": [pack_lanes(v, 8) for v in x],
            "expected": [] if bad else [pack_lanes(lookup_values(v, loaded), 8)
                                        for v in x[:words]],
            "errors": int(Errors.WORDS) if bad else 0,
            "cycles": None if bad else run_cycles(params, words, load_table=bool(load))})
    return params, out


def run_adapter_case(request, name, *, seed):
    params, all_runs = adapter_case(name, seed)
    return run_cocotb(ActivationShellAdapter(params), toplevel=f"activation_adapter_{name}",
                      test_module="celine.sim.tb.activation_tb", case_id=request.node.nodeid,
                      params=params.to_dict(), seed=seed, testcase="adapter_runs",
                      data={"runs": all_runs})


@pytest.mark.cocotb
def test_lookup_cocotb(request):
    run_lookup(request, "l3", seed=1, idle_prob=0.3, backpressure_prob=0.3)


@pytest.mark.cocotb
@pytest.mark.sweep
@pytest.mark.parametrize("idle_prob,backpressure_prob", STALLS)
@pytest.mark.parametrize("name", sorted(LOOKUP_POINTS))
def test_lookup_cocotb_sweep(request, name, idle_prob, backpressure_prob):
    run_lookup(request, name, seed=11, idle_prob=idle_prob,
               backpressure_prob=backpressure_prob)


@pytest.mark.cocotb
@pytest.mark.sweep
@pytest.mark.parametrize("name", sorted(LOOKUP_POINTS))
def test_lookup_throughput(request, name):
    path = run_lookup(request, name, seed=4, testcase="lookup_throughput")
    result = json.loads((path / "throughput.json").read_text())
    assert result["cycles"] == result["beats"] + LOOKUP_LATENCY   # a beat a cycle


@pytest.mark.cocotb
def test_adapter_cocotb_matches_the_cycle_model(request):
    run_adapter_case(request, "l3_w7", seed=1)


@pytest.mark.cocotb
@pytest.mark.sweep
@pytest.mark.parametrize("name", sorted(ADAPTER_POINTS))
def test_adapter_cocotb_sweep(request, name):
    run_adapter_case(request, name, seed=12)


# -- the host API over the golden shell model ----------------------------------------------

def open_device(params):
    model = shell_model("activation", params)
    return Device.open("sim", transport=LoopbackTransport(model)), model


def test_device_finds_the_engine():
    dev, _ = open_device(ActivationParams(lanes=3, max_words=4))
    assert dev.info["engine"] == "activation" and list(dev.buffers) == ["table", "x", "y"]
    assert dev.activation is dev.engine and dev.gelu == dev.engine.gelu
    assert dev.engine.params == ActivationParams(lanes=3, max_words=4)


@pytest.mark.parametrize("shape", [(), (1,), (5,), (4, 7), (2, 3, 13)])
def test_host_gelu_is_the_golden_lookup(shape):
    params = ActivationParams(lanes=3, max_words=4)          # 12 elements a run at most
    dev, model = open_device(params)
    gen = torch.Generator().manual_seed(len(shape))
    x = torch.randint(-128, 128, shape, generator=gen)
    if x.numel() >= 2:
        x.view(-1)[0], x.view(-1)[-1] = -128, 127
    out = dev.activation.gelu(x, 0.04, 0.03)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.int64 and out.shape == x.shape
    assert torch.equal(out, lookup(x, gelu_table(0.04, 0.03)))
    plan = runs(params, x.numel())
    assert dev.transport.commands.count(Command.RUN) == len(plan)
    assert dev.activation.last_cycles == sum(run_cycles(params, w, load_table=load)
                                             for w, load in plan)
    assert model.registers["load_table"] == int(len(plan) == 1)


def test_host_apply_keeps_the_input_kind():
    dev, model = open_device(ActivationParams(lanes=8, max_words=16))
    table = random_table(4)
    x = [[-128, 0, 127], [1, 2, 3]]
    out = dev.apply(x, table)
    assert isinstance(out, np.ndarray) and out.dtype == np.int64
    assert out.tolist() == [lookup_values(row, table) for row in x]
    out = dev.apply(np.array(x, dtype=np.int8), tuple(table))
    assert out.tolist() == [lookup_values(row, table) for row in x]
    assert dev.activation.last_table == table
    # per call: the table, the registers (words, load_table), x, one run, y
    assert dev.transport.commands[-7:] == [Command.WRITE, Command.CONFIGURE,
                                           Command.CONFIGURE, Command.WRITE, Command.RUN,
                                           Command.STATUS, Command.READ]


def test_host_default_output_scale_is_the_input_scale():
    dev, _ = open_device(ActivationParams())
    x = torch.arange(-128, 128)
    out = dev.gelu(x, 0.05)
    assert torch.equal(out, torch.tensor(gelu_table(0.05, 0.05)))
    assert torch.equal(dev.gelu(torch.zeros(0, 3, dtype=torch.int8), 0.1),
                       torch.zeros(0, 3, dtype=torch.int64))


def test_host_checks_settings_before_sending():
    dev, _ = open_device(ActivationParams(lanes=4, max_words=8))
    sent = len(dev.transport.commands)
    for call, message in [
        (lambda: dev.apply(torch.tensor([0.5]), IDENTITY), r"x must hold integers, not "
                                                            r"float32 values"),
        (lambda: dev.apply(torch.tensor([True]), IDENTITY), r"x must hold integers, not "
                                                             r"bool values"),
        (lambda: dev.apply([128], IDENTITY), r"x must hold int8 values \(-128..127\), not "
                                              r"values 128..128"),
        (lambda: dev.apply([[1, 2], [3]], IDENTITY), r"x must be a rectangular integer "
                                                      r"tensor, not .*"),
        (lambda: dev.apply("12", IDENTITY), r"x must be an integer tensor, array or nested "
                                             r"list, not '12'"),
        (lambda: dev.apply(None, IDENTITY), r"x must be an integer tensor, array or nested "
                                             r"list, not None"),
        (lambda: dev.apply([1], IDENTITY[:10]), r"table must have 256 entries .*, not 10"),
        (lambda: dev.apply([1], [200] * 256), r"table entries must be between -128 and 127, "
                                               r"not 200 \(entry 0\)"),
        (lambda: dev.gelu([1], 0), r"in_scale must be a finite number above 0, not 0.0"),
        (lambda: dev.gelu([1], 0.1, "2"), r"out_scale must be a real number, not '2'"),
    ]:
        with pytest.raises(SettingError, match=f"^{message}$"):
            call()
    assert len(dev.transport.commands) == sent


# -- end to end through the shell's Verilog ------------------------------------------------

CLOCK_HZ = 100_000_000
SHELL = dict(clock_hz=CLOCK_HZ, baud=CLOCK_HZ // 4, max_payload=256, timeout_bits=64)


@pytest.mark.cocotb
def test_shell_end_to_end(request):
    """Host runtime -> UART -> shell -> activation engine: a GELU over three runs (the
    table loaded by the first only), then a table of our own in one run; == the golden
    results, engine cycles == the cycle model."""
    from celine.rtl.shell.shell import build_shell
    params = ActivationParams(lanes=3, max_words=8)
    shell = build_shell(accel="activation", accel_params=params, **SHELL)
    gen = torch.Generator().manual_seed(3)
    x1 = torch.randint(-128, 128, (5, 11), generator=gen)      # 55 elements: 19 words
    x1[0, 0], x1[4, 10] = -128, 127
    x2 = torch.randint(-128, 128, (2, 2), generator=gen)
    table = random_table(7)
    jobs = [
        {"x": x1.tolist(), "in_scale": 0.06, "out_scale": 0.05,
         "expected": lookup(x1, gelu_table(0.06, 0.05)).tolist(),
         "cycles": sum(run_cycles(params, w, load_table=load) for w, load in runs(params, 55))},
        {"x": x2.tolist(), "table": table, "expected": lookup(x2, table).tolist(),
         "cycles": run_cycles(params, 2)},
    ]
    directory = run_cocotb(shell, toplevel="activation_shell", test_module="celine.sim.tb."
                           "activation_tb", case_id=request.node.nodeid,
                           testcase="shell_end_to_end",
                           params={**params.to_dict(), "shell": SHELL},
                           data={"jobs": jobs, "info": json.loads(shell.info)})
    cycles = json.loads((directory / "activation.json").read_text())["cycles"]
    assert cycles == [job["cycles"] for job in jobs]


def test_the_host_path_needs_neither_torch_nor_amaranth():
    import subprocess
    import sys
    code = ("import sys\n"
            "from celine.firmware.device import Device\n"
            "from celine.firmware.transport import LoopbackTransport\n"
            "from celine.golden.shell import shell_model\n"
            "from celine.engines.activation.spec import ActivationParams\n"
            "model = shell_model('activation', ActivationParams(lanes=3, max_words=4))\n"
            "dev = Device.open('sim', transport=LoopbackTransport(model))\n"
            "assert dev.gelu([[1, 2, 3], [-128, 127, 0]], 0.05).tolist() == "
            "[[1, 1, 2], [0, 127, 0]]\n"
            "print(sorted({'torch', 'amaranth'} & set(sys.modules)))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
