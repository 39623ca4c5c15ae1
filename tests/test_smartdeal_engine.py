"""The SmartDeal engine: its parameters, registers and buffers, and the golden engine model
against the integer models of celine.golden.smartdeal.integer."""

import pytest
import torch

from celine.engines.smartdeal.spec import (Errors, SmartDealParams, buffers, result_count,
                                           result_place, unpack_result)
from celine.golden.smartdeal.format import FormatError, unpack
from celine.golden.smartdeal.integer import linear_int
from celine.sim.smartdeal_cases import (SMALL_FINETUNE, SMALL_VIT, assert_cycle_model,
                                        clip_layer, make_case, random_layer)

SMALL = SmartDealParams(array_rows=2, array_cols=3, max_inputs=48, max_outputs=20,
                        max_tokens=9, weight_words=1024)


def result_matrix(params, case, tokens, outputs):
    """y (M, N) read back from the expected `result` words (the impl's layout: spec.buffers),
    written from word 0; every lane of a token past M or an output past N is 0."""
    from celine.spec.lanes import unpack_lanes
    writes = case.expected.writes["result"]
    assert sorted(writes) == list(range(result_count(params, tokens, outputs)))
    placed = {result_place(params, m, n, tokens, outputs)
              for m in range(tokens) for n in range(outputs)}
    for address, word in writes.items():
        lanes = unpack_lanes(word, params.result_lanes, params.result_width)
        assert all(value == 0 for lane, value in enumerate(lanes)
                   if (address, lane) not in placed)
    return torch.tensor(unpack_result(params, writes, tokens, outputs))


@pytest.mark.parametrize("impl", ["rebuild", "bitop"])
@pytest.mark.parametrize("tokens, outputs, length", [(9, 20, 47), (1, 1, 3), (4, 7, 10)])
def test_golden_engine_model_is_the_integer_layer(impl, tokens, outputs, length):
    params = SmartDealParams(**{**SMALL.to_dict(), "impl": impl})
    sd = random_layer(outputs, length, seed=tokens + outputs)
    x = torch.randint(-128, 128, (tokens, length), generator=torch.Generator().manual_seed(3))
    x[0, 0] = -128
    case = make_case(params, sd.pack(), x, stale=0x5A5A5A5A)
    assert not case.expected.errors
    want = linear_int(x, sd, weights="int8" if impl == "rebuild" else "wide")
    assert torch.equal(result_matrix(params, case, tokens, outputs), want)
    requant = make_case(params, sd.pack(), x, requant=(300, 12))
    want8 = linear_int(x, sd, weights="int8" if impl == "rebuild" else "wide", mult=300,
                       shift=12)
    assert torch.equal(result_matrix(params, requant, tokens, outputs), want8)


def test_errors_write_nothing():
    sd = random_layer(5, 12, seed=1)
    x = torch.ones(3, 12, dtype=torch.int64)
    words = list(sd.pack())
    assert make_case(SMALL, words, x, settings={"tokens": 0}).expected.errors == Errors.TOKENS
    assert make_case(SMALL, words, x, settings={"tokens": 10}).expected.errors == Errors.TOKENS
    bad = words.copy()
    bad[0] ^= 1                                   # the magic
    assert make_case(SMALL, bad, x).expected.errors == Errors.BAD_HEADER
    short = words[:-1]
    short[4] -= 1                                 # a consistent length, a missing word
    result = make_case(SMALL, short, x).expected
    with pytest.raises(FormatError) as error:
        unpack(short)
    assert result.errors == Errors.of_format(error.value.kind) and not result.writes
    wide = random_layer(5, 51, seed=2)            # more inputs than max_inputs (48)
    assert make_case(SMALL, wide.pack(), torch.ones(3, 51, dtype=torch.int64)).expected.errors \
        == Errors.SHAPE


@pytest.mark.parametrize("kwargs, kind, message", [
    ({"impl": "exact"}, ValueError, "impl must be 'rebuild' or 'bitop', not 'exact'"),
    ({"exponent_bits": 5}, ValueError, "exponent_bits must be 2 or 3 or 4, not 5"),
    ({"rows_per_cycle": 3}, ValueError, "rows_per_cycle must be 1 or 2 or 4, not 3"),
    ({"array_rows": 0}, ValueError, "array_rows must be between 1 and 16, not 0"),
    ({"array_cols": 17}, ValueError, "array_cols must be between 1 and 16, not 17"),
    ({"array_impl": "lut"}, ValueError, "array_impl must be 'bricks' or 'dsp', not 'lut'"),
    ({"max_inputs": 2}, ValueError, "max_inputs must be between 3 and 65535, not 2"),
    ({"max_outputs": 0}, ValueError, "max_outputs must be between 1 and 65535, not 0"),
    ({"max_tokens": 0}, ValueError, "max_tokens must be between 1 and 4096, not 0"),
    ({"max_block_rows": 65536}, ValueError,
     "max_block_rows must be between 1 and 65535, not 65536"),
    ({"weight_words": 5}, ValueError, "weight_words must be between 6 and 65536, not 5"),
    ({"bitop_multipliers": 2}, ValueError, "bitop_multipliers must be 1 or 3 or 9, not 2"),
    ({"rows_per_cycle": 2.0}, TypeError, "rows_per_cycle must be an integer, not 2.0"),
    ({"array_rows": "4"}, TypeError, "array_rows must be an integer, not '4'"),
    ({"max_tokens": True}, TypeError, "max_tokens must be an integer, not True"),
    ({"weight_words": 1024.0}, TypeError, "weight_words must be an integer, not 1024.0"),
    ({"exponent_bits": None}, TypeError, "exponent_bits must be an integer, not None"),
])
def test_parameters_are_checked(kwargs, kind, message):
    """Every parameter's rule, with its pinned message: ValueError for a value out of range
    or not among the choices, TypeError for a non-integer (a bool is not one)."""
    with pytest.raises(kind) as error:
        SmartDealParams(**kwargs)
    assert type(error.value) is kind and str(error.value) == message


def test_buffers():
    weights, act, result = buffers(SmartDealParams())
    assert (weights.width, weights.depth, weights.watched) == (32, 4096, True)
    assert (act.width, act.depth) == (32, 16 * 192)
    assert (result.width, result.depth) == (128, 16 * 4 * 48)


# -- the RTL (the shell adapter in the Amaranth simulator) ------------------------------------

def rtl(case, runs=1, host_writes=None, limit=200_000):
    from celine.rtl.smartdeal.shell_adapter import SmartDealShellAdapter
    from celine.sim.adapter_bench import run_adapter
    from celine.sim.amaranth_sim import shared
    return run_adapter(shared(SmartDealShellAdapter, case.params), case.contents, case.settings,
                       runs=runs, limit=limit, host_writes=host_writes)


def check_rtl(case, **kwargs):
    status, words = rtl(case, **kwargs)
    expected = case.expected
    want = list(case.contents["result"])
    for address, word in expected.writes.get("result", {}).items():
        want[address] = word
    for errors, _cycles, count in status:
        assert errors == expected.errors
        assert count == expected.result_words
    assert words["result"] == want
    return [cycles for _, cycles, _ in status]


def test_rtl_small_layer():
    sd = random_layer(7, 10, seed=5)
    x = torch.randint(-128, 128, (5, 10), generator=torch.Generator().manual_seed(6))
    check_rtl(make_case(SMALL, sd.pack(), x))


# -- the cycle model against the RTL ---------------------------------------------------------

@pytest.mark.parametrize("impl, rows, cols, R, E, outputs, length, tokens", [
    ("rebuild", 2, 3, 1, 2, 12, 48, 9),      # compute-bound
    ("rebuild", 4, 4, 1, 2, 16, 48, 4),      # decoder-bound: the banks fill, the decoder waits
    ("rebuild", 4, 4, 4, 2, 16, 48, 2),      # word-bound decoder (R = 4)
    ("rebuild", 1, 1, 1, 2, 3, 3, 1),        # the smallest
    ("rebuild", 2, 4, 2, 3, 20, 33, 1),      # E = 3, a length not a multiple of 3
    ("rebuild", 4, 4, 1, 2, 12, 3, 16),      # L < rows + pe_latency + TILE_TURN: drain-bound
    ("rebuild", 2, 1, 1, 2, 12, 10, 2),      # an output a tile: the decoder waits for banks
    ("rebuild", 2, 3, 1, 2, 1, 1, 1),        # a 1 x 1 layer on a 2 x 3 array
    ("bitop", 2, 3, 1, 2, 7, 10, 5),         # short blocks: the ·B products set the pace
    ("bitop", 3, 2, 4, 2, 9, 96, 16),        # six token tiles, R = 4
    ("bitop", 1, 1, 1, 3, 3, 3, 1),          # the smallest, E = 3
])
def test_cycle_model_within_two_percent(impl, rows, cols, R, E, outputs, length, tokens):
    from celine.engines.smartdeal.cycles import Layer, cycles
    params = SmartDealParams(impl=impl, array_rows=rows, array_cols=cols, rows_per_cycle=R,
                             exponent_bits=E, max_inputs=96, max_outputs=20, max_tokens=16,
                             weight_words=1024)
    sd = random_layer(outputs, length, seed=outputs + length, exponent_bits=E)
    x = torch.randint(-128, 128, (tokens, length), generator=torch.Generator().manual_seed(1))
    first, second = check_rtl(make_case(params, sd.pack(), x), runs=2)
    layer = Layer.of(sd)
    for model, measured in ((cycles(params, layer, tokens), first),
                            (cycles(params, layer, tokens, checked=True), second)):
        assert abs(model - measured) <= 0.02 * measured, (model, measured)
    assert second < first                 # the second run skips the check


# -- the RTL: edges, errors, the check once ----------------------------------------------------

def layer_words(outputs, length, seed, **kwargs):
    return list(random_layer(outputs, length, seed=seed, **kwargs).pack())


@pytest.mark.parametrize("rows, cols, R, E", [(1, 1, 1, 2), (2, 3, 2, 2), (4, 2, 4, 3)])
def test_rtl_parameter_points_and_edges(rows, cols, R, E):
    """1 token and max_tokens, activations -128 and 127, a length not a multiple of 3,
    requantized outputs; the digits of several R and E. Each case runs twice (the second
    run skips the check), both within 2% of the cycle model."""
    params = SmartDealParams(array_rows=rows, array_cols=cols, rows_per_cycle=R,
                             exponent_bits=E, max_inputs=48, max_outputs=20, max_tokens=7,
                             weight_words=1024)
    words = layer_words(8, 29, seed=rows + R, exponent_bits=E)
    generator = torch.Generator().manual_seed(R)
    one = torch.full((1, 29), -128, dtype=torch.int64)
    case = make_case(params, words, one, stale=0x33)
    assert_cycle_model(case, check_rtl(case, runs=2))
    full = torch.randint(-128, 128, (7, 29), generator=generator)
    full[0] = -128
    full[1] = 127
    case = make_case(params, words, full, requant=(301, 13))
    assert_cycle_model(case, check_rtl(case, runs=2))


def test_rtl_zero_weights():
    """An all-zero weight: every block zero (B = 0, Ce = 0)."""
    from celine.golden.smartdeal.decomposition import decompose
    from celine.golden.smartdeal.hardware import quantize_decomposition
    zero = quantize_decomposition(decompose(torch.zeros(5, 12, dtype=torch.float64)))
    x = torch.randint(-128, 128, (3, 12), generator=torch.Generator().manual_seed(9))
    case = make_case(SMALL, zero.pack(), x)
    assert all(word == 0 for word in case.expected.writes["result"].values())
    check_rtl(case)


# A small engine whose limits a quick layer reaches: 10 outputs, 30 inputs, blocks of 5 rows.
LIMITS = SmartDealParams(array_rows=2, array_cols=4, max_inputs=30, max_outputs=10,
                         max_tokens=5, max_block_rows=5, weight_words=512)


def test_rtl_largest_layer():
    """A layer at max_outputs x max_inputs with blocks of max_block_rows (10 x 30, two
    blocks of 5 rows an output; 3 output tiles, the last half empty) on max_tokens rows of
    -128 and 127 among random values, exact and requantized, twice (the second run skips
    the check) within 2% of the cycle model; one output, input or block row more is
    SHAPE and writes nothing."""
    sd = random_layer(10, 30, seed=31, block_rows=5)
    h = sd.header
    assert (h.outputs, h.length, h.block_rows, h.blocks_per_output) == (10, 30, 5, 2)
    x = torch.randint(-128, 128, (5, 30), generator=torch.Generator().manual_seed(32))
    x[0] = -128
    x[4] = 127
    case = make_case(LIMITS, sd.pack(), x, stale=0x77)
    assert torch.equal(result_matrix(LIMITS, case, 5, 10), linear_int(x, sd))
    assert_cycle_model(case, check_rtl(case, runs=2))
    check_rtl(make_case(LIMITS, sd.pack(), x, requant=(301, 13)))
    for beyond in (random_layer(11, 30, seed=33, block_rows=5),      # an output more
                   random_layer(10, 31, seed=34, block_rows=1),      # an input more
                   random_layer(10, 30, seed=35, block_rows=10)):    # a block row more
        case = make_case(LIMITS, beyond.pack(), torch.ones(2, beyond.header.length,
                                                           dtype=torch.int64), stale=0x77)
        assert case.expected.errors == Errors.SHAPE and not case.expected.writes
        check_rtl(case)


@pytest.mark.parametrize("E", [2, 3])
def test_rtl_the_clip_and_zero_blocks(E):
    """Ce at the magnitude clip (every coefficient -2^(2^E - 1) with B all -128, the largest
    rebuilt weights, int8 +96 after the weights' shift), an output of zero blocks, and the
    clip's positive twin, on max_inputs activations of -128 (the largest sums of both
    signs) and random ones; exact and requantized; within 2% of the cycle model."""
    params = SmartDealParams(**{**LIMITS.to_dict(), "exponent_bits": E})
    sd = clip_layer(E, 5, 2, 30)
    x = torch.full((5, 30), -128)
    x[3:] = torch.randint(-128, 128, (2, 30), generator=torch.Generator().manual_seed(E))
    case = make_case(params, sd.pack(), x, stale=0x77)
    y = result_matrix(params, case, 5, 3)
    assert y[0].tolist() == [-128 * 96 * 30, 0, 128 * 96 * 30]
    assert torch.equal(y, linear_int(x, sd))
    assert_cycle_model(case, check_rtl(case, runs=2))
    check_rtl(make_case(params, sd.pack(), x, requant=(1, 12)))


@pytest.mark.parametrize("params", [SMALL, SmartDealParams(array_rows=1, array_cols=1,
                                                           max_inputs=3, max_outputs=1,
                                                           max_tokens=1, max_block_rows=1,
                                                           weight_words=64)],
                         ids=["2x3 array", "1x1 array, the smallest limits"])
def test_rtl_smallest_layer(params):
    """A 1 x 1 layer (one output of one input: one block of one row, two of its rebuilt
    weights padding) on one token, exact and requantized, within 2% of the cycle model;
    also on the smallest engine (a 1 x 1 array, max_inputs 3, one output, one token)."""
    sd = random_layer(1, 1, seed=41)
    h = sd.header
    assert (h.outputs, h.length, h.block_rows, h.blocks_per_output) == (1, 1, 1, 1)
    for value in (-128, 127, 5):
        x = torch.tensor([[value]])
        case = make_case(params, sd.pack(), x, stale=0x77)
        assert torch.equal(result_matrix(params, case, 1, 1), linear_int(x, sd))
        assert_cycle_model(case, check_rtl(case, runs=2))
    check_rtl(make_case(params, sd.pack(), torch.tensor([[-128]]), requant=(300, 4)))


@pytest.mark.sweep          # make sim; make test runs a trained layer end to end (cocotb)
def test_rtl_trained_layer():
    """The small digits ViT's qkv layer (smartdeal_cases.SMALL_VIT; 144 x 48, 72% of Ce
    zero) on its real activations, twice (the second run skips the check), both within 2%
    of the cycle model."""
    from celine.engines.smartdeal.bench import _digits, activations
    made, layers, images = _digits(SMALL_VIT, SMALL_FINETUNE)
    sd = layers["blocks.0.attn.qkv"]
    params = SmartDealParams(max_tokens=17)
    case = make_case(params, sd.pack(), activations(made, "blocks.0.attn.qkv", images, 17))
    first, second = assert_cycle_model(case, check_rtl(case, runs=2))
    assert second < first


def _errors_case(words, settings=None, params=SMALL):
    x = torch.randint(-128, 128, (3, 10), generator=torch.Generator().manual_seed(4))
    return make_case(params, words, x, settings=settings, stale=0x5A5A5A5A)


def _with(words, index, value):
    words = list(words)
    words[index] = value
    return words


GOOD = layer_words(7, 10, seed=5)


@pytest.mark.parametrize("name, words, settings, errors", [
    ("no tokens", GOOD, {"tokens": 0}, Errors.TOKENS),
    ("too many tokens", GOOD, {"tokens": 10}, Errors.TOKENS),
    ("magic", _with(GOOD, 0, GOOD[0] ^ 1), None, Errors.BAD_HEADER),
    ("E = 3 on an E = 2 engine", layer_words(7, 10, seed=5, exponent_bits=3), None,
     Errors.BAD_HEADER),
    ("a weight multiplier", _with(GOOD, 3, GOOD[3] | 3), None, Errors.BAD_HEADER),
    ("spare bits", _with(GOOD, 9, GOOD[9] | 1 << 31), None, Errors.BAD_CODE),
    ("truncated", _with(GOOD[:-1], 4, len(GOOD) - 1), None, Errors.TRUNCATED_BLOCK),
    ("an extra word", _with(GOOD, 4, len(GOOD) + 1) + [0], None, Errors.WRONG_LENGTH),
    ("beyond the buffer", _with(GOOD, 4, 5000), None, Errors.WRONG_LENGTH),
    ("too many outputs", layer_words(21, 10, seed=6), None, Errors.SHAPE),
])
def test_rtl_errors_write_nothing(name, words, settings, errors):
    case = _errors_case(words, settings)
    assert case.expected.errors == errors and not case.expected.writes
    check_rtl(case)


def test_rtl_checks_once_until_the_host_writes_the_weights():
    """Run 1 checks the stream; run 2 skips that (same words, fewer cycles); a host write to
    the weights buffer (the same value) makes run 3 check again; a corrupting write makes
    run 4 fail and write nothing more."""
    case = _errors_case(GOOD)
    first, second = check_rtl(case, runs=2)
    assert second < first
    third, = check_rtl(case, runs=1)
    assert third == first
    status, _ = rtl(case, runs=3, host_writes=[{}, {"weights": {7: GOOD[7]}}, {}])
    assert [s[1] for s in status] == [first, first, second]
    status, words = rtl(case, runs=2, host_writes=[{}, {"weights": {0: GOOD[0] ^ 1}}])
    assert [s[0] for s in status] == [0, Errors.BAD_HEADER]
    assert status[1][2] == 0


def test_the_core_follows_impl():
    from celine.rtl.smartdeal.bitop import SdBitop
    from celine.rtl.smartdeal.linear import SdLinear
    from celine.rtl.smartdeal.shell_adapter import smartdeal_core
    assert type(smartdeal_core(SmartDealParams(impl="rebuild"))) is SdLinear
    assert type(smartdeal_core(SmartDealParams(impl="bitop"))) is SdBitop
    with pytest.raises(ValueError, match=r"^params.impl must be 'rebuild', not 'bitop'$"):
        SdLinear(SmartDealParams(impl="bitop"))


def test_bench_decoder_record():
    """build/bench/smartdeal.json's `decoder` is one object, the default configuration's
    (the issue's schema), and `decoder_points` every point synthesized, the default's
    among them (synthesis replaced by a stand-in: minutes of tool time)."""
    from celine.engines.smartdeal.bench import DECODER_ROWS, decoder
    calls = []

    def measure(exponent_bits, rows_per_cycle):
        calls.append((exponent_bits, rows_per_cycle))
        return {"weights_per_cycle": 3 * rows_per_cycle, "lut4": 1000 * rows_per_cycle,
                "ff": 500 * rows_per_cycle, "mult18x18d": 0, "fmax_mhz": 100.0 / rows_per_cycle}

    chosen, points = decoder(True, measure)
    default = SmartDealParams()
    assert calls == [(default.exponent_bits, R) for R in sorted(DECODER_ROWS)]
    assert {"weights_per_cycle", "lut4", "ff", "mult18x18d", "fmax_mhz"} <= set(chosen)
    assert (chosen["rows_per_cycle"], chosen["weights_per_cycle"], chosen["lut4"]) == \
        (default.rows_per_cycle, default.weights_per_cycle, 1000 * default.rows_per_cycle)
    assert [(p["exponent_bits"], p["rows_per_cycle"], p["lut4"]) for p in points] == \
        [(default.exponent_bits, R, 1000 * R) for R in sorted(DECODER_ROWS)]
    assert chosen in points
    chosen, points = decoder(False)
    assert chosen == {"exponent_bits": 2, "rows_per_cycle": 1, "weights_per_cycle": 3,
                      "note": "resources: --no-synth"}
    assert [p["weights_per_cycle"] for p in points] == [3, 12]
