"""The SmartDeal shell's Verilog end to end, for both implementations: host runtime
(dev.linear) -> UART -> shell -> SmartDealShellAdapter on a real trained layer, bit-exact
against the golden model (impl "rebuild": linear_int on the int8 weights; impl "bitop":
the exact sums x·w_int, linear_int(weights="wide")); the weights cross the link once; the
cycles of each run within 2% of the cycle model."""

import json

import pytest

from celine.engines.smartdeal.cycles import Layer, cycles as model_cycles
from celine.engines.smartdeal.spec import SmartDealParams
from celine.golden.smartdeal.integer import linear_int
from celine.rtl.shell.shell import build_shell
from celine.sim.runner import run_cocotb
from celine.sim.smartdeal_cases import SMALL_FINETUNE, SMALL_VIT

CLOCK_HZ = 100_000_000
SHELL = dict(clock_hz=CLOCK_HZ, baud=CLOCK_HZ // 4, max_payload=1024, timeout_bits=64)
LIMITS = dict(max_tokens=16, max_inputs=48, max_outputs=48, weight_words=512)


def run_shell(request, params, sd, x, requants):
    """dev.linear(x, sd's packed words) once per entry of `requants` (None: the exact sums)
    in the shell's Verilog; each result == the golden model's, bit for bit (asserted in the
    testbench). Returns the record (cycles and link bytes of each call) and the expected
    outputs."""
    words = list(sd.pack())
    weights = "int8" if params.impl == "rebuild" else "wide"
    expected = [linear_int(x, sd, weights=weights,
                           **({} if requant is None else
                              {"mult": requant[0], "shift": requant[1]}))
                for requant in requants]
    jobs = [{"words": words, "x": x.tolist(), "requant": requant, "expected": want.tolist()}
            for requant, want in zip(requants, expected)]
    shell = build_shell(accel="smartdeal", accel_params=params, **SHELL)
    # The top's name is the one Device.open("sim") gives the design (firmware/simulate.py),
    # so that test_smartdeal_host's simulated device (the same parameters and shell) shares
    # this Verilator build.
    directory = run_cocotb(shell, toplevel="serve_smartdeal",
                           test_module="celine.sim.tb.smartdeal_shell_tb",
                           case_id=request.node.nodeid, testcase="linear_end_to_end",
                           params={"smartdeal": params.to_dict(), "shell": SHELL},
                           data={"linear": jobs, "info": json.loads(shell.info)}, optimize=True)
    record = json.loads((directory / "linear.json").read_text())
    assert len(record["cycles"]) == len(jobs)
    return record, expected


def check_record(params, sd, tokens, record):
    """Each run's cycles within 2% of the model (the first checks the layer, the others
    reuse it); the weights cross the link in the first call only."""
    layer = Layer.of(sd)
    calls = len(record["cycles"])
    predicted = [model_cycles(params, layer, tokens)] \
        + [model_cycles(params, layer, tokens, checked=True)] * (calls - 1)
    for measured, model in zip(record["cycles"], predicted):
        assert abs(measured - model) <= 0.02 * measured, (measured, model)
    links = record["link_bytes"]
    assert links[0]["weights"] == 4 * sd.packed_words
    assert all(link["weights"] == 0 for link in links[1:])
    return links


def wide_requant(x, sd, mult=300, weights="wide"):
    """(mult, shift) that maps the largest exact sum x·w to 64..127: w_int itself ("wide",
    the bit-op path) or the MAC array's int8 weights ("int8", the rebuild path)."""
    largest = int(linear_int(x, sd, weights=weights).abs().max())
    return [mult, max((largest * mult).bit_length() - 7, 0)]


@pytest.mark.cocotb
@pytest.mark.parametrize("impl,tokens", [
    ("rebuild", 5),
    pytest.param("rebuild", 16, marks=pytest.mark.sweep),
    pytest.param("bitop", 16, marks=pytest.mark.sweep),
])
def test_linear_end_to_end_trained_layer(request, impl, tokens):
    """The small digits ViT's attention projection (smartdeal_cases.SMALL_VIT; 48 x 48,
    fine-tuned with the decomposition) on `tokens` real activation rows, twice (the second run reuses the weights on chip and
    skips the check), then requantized. make test runs the rebuild case on 5 rows (a full
    token tile of 4 and one row of the next; the link carries less than half the bytes of
    16 rows); the 16 rows (max_tokens) through the same Verilator build are
    test_smartdeal_host's simulated device's (runs of 16 and 4). The 16-row cases are
    sweeps (make sim: the bit-op one's Verilator build and its 4 token-tile passes over the
    stream take about 2 minutes), and make test runs the small bit-op layer below."""
    from celine.engines.smartdeal.bench import _digits, activations
    made, layers, images = _digits(SMALL_VIT, SMALL_FINETUNE)
    name = "blocks.0.attn.proj"
    sd = layers[name]
    x = activations(made, name, images, tokens)
    params = SmartDealParams(impl=impl, **LIMITS)
    requant = wide_requant(x, sd, weights="int8" if impl == "rebuild" else "wide")
    record, expected = run_shell(request, params, sd, x, [None, None, requant])
    links = check_record(params, sd, tokens, record)
    assert 2 * links[0]["weights"] <= links[0]["weights_int8"]    # at least 2x against int8
    assert 64 <= int(expected[-1].abs().max()) <= 128      # the int8 range is used


@pytest.mark.cocotb
@pytest.mark.parametrize("impl", [pytest.param("rebuild", marks=pytest.mark.sweep), "bitop"])
def test_linear_end_to_end_small(request, impl):
    """The bit-op implementation in make test, the rebuild one in make sim (make test runs
    it on the trained layer above): a small decomposed layer (7 x 10: a length not a
    multiple of 3) on 5 tokens (three token tiles of 2 lanes, the last half empty), R = 2,
    P = 3 (bitop), E = 3 (negative exponents in the window), exact then requantized; the
    weights once."""
    from celine.sim.smartdeal_cases import random_layer
    import torch
    params = SmartDealParams(impl=impl, array_rows=2, rows_per_cycle=2, exponent_bits=3,
                             bitop_multipliers=3, max_tokens=8, max_inputs=24,
                             max_outputs=8, max_block_rows=8, weight_words=64)
    sd = random_layer(7, 10, seed=21, exponent_bits=3)
    x = torch.randint(-128, 128, (5, 10), generator=torch.Generator().manual_seed(22))
    x[0] = -128
    x[-1] = 127
    weights = "wide" if impl == "bitop" else "int8"
    requant = wide_requant(x, sd, weights=weights)
    record, expected = run_shell(request, params, sd, x, [None, requant])
    check_record(params, sd, 5, record)
    assert 64 <= int(expected[-1].abs().max()) <= 128
