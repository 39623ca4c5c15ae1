"""The SD linear layer by bit-op computing (impl "bitop", celine/rtl/smartdeal/bitop.py):
its buffer layouts, and the shell adapter in the Amaranth simulator, every result word
== the golden engine model's (whose sums are integer.linear_bitop_int's)."""

import pytest
import torch

from celine.engines.smartdeal.spec import (Errors, SmartDealParams, act_place, buffers,
                                           pack_act, result_count, result_place,
                                           unpack_result)
from celine.golden.smartdeal.format import FormatError, pack, unpack
from celine.golden.smartdeal.integer import linear_bitop_int, linear_int
from celine.sim.smartdeal_cases import (SMALL_FINETUNE, SMALL_VIT, assert_cycle_model,
                                        clip_layer, make_case, random_layer)

STALE = 0x5A5A5A5A


def bitop(**kwargs):
    base = dict(impl="bitop", array_rows=2, max_inputs=48, max_outputs=20, max_tokens=9,
                weight_words=1024)
    return SmartDealParams(**{**base, **kwargs})


def activations(tokens, length, seed):
    """Random int8 activations with a row of -128 and one of 127 (when there are rows)."""
    x = torch.randint(-128, 128, (tokens, length), generator=torch.Generator().manual_seed(seed))
    x[0] = -128
    if tokens > 1:
        x[-1] = 127
    return x


def rtl(case, runs=1, host_writes=None, limit=200_000):
    from celine.rtl.smartdeal.shell_adapter import SmartDealShellAdapter
    from celine.sim.adapter_bench import run_adapter
    from celine.sim.amaranth_sim import shared
    return run_adapter(shared(SmartDealShellAdapter, case.params), case.contents, case.settings,
                       runs=runs, limit=limit, host_writes=host_writes)


def check_rtl(case, sd=None, **kwargs):
    """Run the case in RTL: every run's status and the result buffer (all of it: the words
    a run does not write keep their stale values) as the golden model says. With `sd`, the
    result is also the integer bit-op layer's. Returns each run's cycles."""
    status, words = rtl(case, **kwargs)
    expected = case.expected
    want = list(case.contents["result"])
    for address, word in expected.writes.get("result", {}).items():
        want[address] = word
    for errors, _cycles, count in status:
        assert (errors, count) == (expected.errors, expected.result_words)
    assert words["result"] == want
    if sd is not None:
        requant = case.settings["requant"]
        fields = {} if not requant & 1 else \
            {"mult": requant >> 1 & 0xFFFF, "shift": requant >> 17 & 0x3F}
        y = unpack_result(case.params, words["result"], *case.x.shape[:1], sd.header.outputs)
        assert torch.equal(torch.tensor(y), linear_bitop_int(case.x, sd, **fields))
    return [cycles for _, cycles, _ in status]


# -- parameters and layouts ------------------------------------------------------------------

def test_parameters_and_buffers():
    with pytest.raises(ValueError) as error:
        SmartDealParams(bitop_multipliers=2)
    assert str(error.value) == "bitop_multipliers must be 1 or 3 or 9, not 2"
    weights, act, result = buffers(SmartDealParams(impl="bitop"))
    assert (weights.width, weights.depth, weights.watched) == (32, 4096, True)
    assert (act.width, act.depth) == (3 * 4 * 8, 16 * 64)        # 3 steps x 4 tokens
    assert (result.width, result.depth) == (4 * 32, 16 * 192)    # 4 tokens, an output
    _, act, result = buffers(SmartDealParams(impl="bitop", rows_per_cycle=4, exponent_bits=4))
    assert (act.width, act.depth) == (12 * 4 * 8, 16 * 16)
    # The exact sums of 192 products of int8 and |w_int| <= 3 * 128 * 2^15: 40 bits.
    assert result.width == 4 * 40
    from celine.rtl.smartdeal.bitop import SdBitop
    with pytest.raises(ValueError) as error:
        SdBitop(SmartDealParams())
    assert str(error.value) == "params.impl must be 'bitop', not 'rebuild'"


def test_layouts():
    p = bitop(rows_per_cycle=2, array_rows=3)
    assert act_place(p, 4, 13) == (1 * 8 + 2, 1 * 3 + 1)          # tile 1, word 13 // 6
    assert result_place(p, 4, 6, 5, 7) == (1 * 7 + 6, 1)
    assert result_count(p, 5, 7) == 14
    x = activations(5, 13, seed=1)
    words = pack_act(p, x.tolist())
    assert sorted(words) == [0, 1, 2, 8, 9, 10]                   # 3 words a tile
    from celine.spec.lanes import unpack_lanes
    for m in range(5):
        for k in range(13):
            word, lane = act_place(p, m, k)
            assert unpack_lanes(words[word], p.act_lanes, 8)[lane] == x[m, k]
    assert unpack_lanes(words[2], p.act_lanes, 8)[1 * 3:] == [0] * 15   # steps past L


# -- the RTL -------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, R, E, P, outputs, length, tokens", [
    (1, 1, 2, 1, 5, 10, 1),          # one token lane, one token
    (2, 2, 2, 3, 9, 47, 9),          # max_tokens, a length not a multiple of 3
    pytest.param(4, 4, 3, 9, 6, 29, 7, marks=pytest.mark.sweep),
    (4, 1, 3, 3, 20, 48, 5),         # max_outputs x max_inputs
    (2, 4, 2, 1, 4, 3, 3),           # the shortest layer
])
def test_rtl_parameter_points(rows, R, E, P, outputs, length, tokens):
    """Bit-exact, exact and requantized; the exact case twice (the second run skips the
    check), both runs within 2% of the cycle model."""
    params = bitop(array_rows=rows, rows_per_cycle=R, exponent_bits=E, bitop_multipliers=P)
    sd = random_layer(outputs, length, seed=outputs + length, exponent_bits=E)
    x = activations(tokens, length, seed=R)
    case = make_case(params, sd.pack(), x, stale=STALE)
    assert_cycle_model(case, check_rtl(case, sd, runs=2))
    check_rtl(make_case(params, sd.pack(), x, requant=(301, 13)), sd)


@pytest.mark.parametrize("E, P", [(2, 1), (3, 9), (4, 3)])
def test_rtl_the_clip_and_zero_blocks(E, P):
    """The largest sums the parameters allow (max_inputs activations of -128, every weight
    at its largest magnitude) and all-zero blocks, exact and requantized."""
    params = bitop(array_rows=2, exponent_bits=E, bitop_multipliers=P, max_block_rows=8,
                   max_tokens=3)
    sd = clip_layer(E, 8, 2, 48)
    x = torch.full((3, 48), -128)
    case = make_case(params, sd.pack(), x, stale=STALE)
    largest = 48 * 128 * 3 * 128 * (1 << (1 << E) - 1)
    assert linear_int(x, sd, weights="wide")[0].tolist() == [-largest, 0, largest]
    check_rtl(case, sd)
    check_rtl(make_case(params, sd.pack(), x, requant=(1, 40)), sd)


@pytest.fixture(scope="module")
def trained():
    """blocks.0.mlp.2 of the small fine-tuned digits ViT (smartdeal_cases.SMALL_VIT; 48 x 96,
    blocks of 32 rows, 47% of Ce zero; cached under build/models), its real inputs (6 tokens of a test image) as int8,
    and the requantizer that maps its largest output to 127."""
    from celine.golden.digits_vit import digits_dataset
    from celine.golden.smartdeal.finetune import smartdeal_vit
    from celine.golden.smartdeal.hardware import quantize_decomposition
    from celine.golden.smartdeal.integer import output_requantizer
    from celine.golden.smartdeal.report import capture_inputs
    name = "blocks.0.mlp.2"
    data = digits_dataset()
    made = smartdeal_vit(SMALL_VIT, SMALL_FINETUNE, data=data)
    sd = quantize_decomposition(made.decompositions[name], exponent_bits=2)
    real = capture_inputs(made.model, [name], data.test_images[:1])[name][:6]
    x_scale = float(real.abs().max()) / 127
    x = torch.clamp(torch.round(real / x_scale), -128, 127).to(torch.int64)
    y_scale = x_scale * sd.unit * float(linear_bitop_int(x, sd).abs().max()) / 127
    return sd, x, output_requantizer(sd, x_scale, y_scale, weights="wide")


@pytest.mark.sweep      # make test: the parameter points; the shell's bitop case
def test_rtl_trained_layer(trained):
    sd, x, (mult, shift) = trained
    params = bitop(array_rows=4, max_inputs=96, max_outputs=48, max_tokens=6)
    case = make_case(params, sd.pack(), x, requant=(mult, shift), stale=STALE)
    first, second = assert_cycle_model(case, check_rtl(case, sd, runs=2))
    assert second < first                       # the second run skips the check
    y = unpack_result(params, [case.expected.writes["result"][n]
                               for n in range(case.expected.result_words)], 6, 48)
    assert max(abs(v) for row in y for v in row) >= 64     # the int8 range is used


def _with(words, index, value):
    words = list(words)
    words[index] = value
    return words


GOOD = list(random_layer(7, 10, seed=5).pack())


@pytest.mark.parametrize("name, words, settings, errors", [
    ("no tokens", GOOD, {"tokens": 0}, Errors.TOKENS),
    ("too many tokens", GOOD, {"tokens": 10}, Errors.TOKENS),
    ("magic", _with(GOOD, 0, GOOD[0] ^ 1), None, Errors.BAD_HEADER),
    ("E = 3 on an E = 2 engine", list(random_layer(7, 10, seed=5, exponent_bits=3).pack()),
     None, Errors.BAD_HEADER),
    ("a weight multiplier", _with(GOOD, 3, GOOD[3] | 3), None, Errors.BAD_HEADER),
    ("spare bits", _with(GOOD, 9, GOOD[9] | 1 << 31), None, Errors.BAD_CODE),
    ("truncated", _with(GOOD[:-1], 4, len(GOOD) - 1), None, Errors.TRUNCATED_BLOCK),
    ("an extra word", _with(GOOD, 4, len(GOOD) + 1) + [0], None, Errors.WRONG_LENGTH),
    ("beyond the buffer", _with(GOOD, 4, 5000), None, Errors.WRONG_LENGTH),
    ("too many outputs", list(random_layer(21, 10, seed=6).pack()), None, Errors.SHAPE),
])
def test_rtl_errors_write_nothing(name, words, settings, errors):
    x = activations(3, 10, seed=4)
    case = make_case(bitop(), words, x, settings=settings, stale=STALE)
    assert case.expected.errors == errors and not case.expected.writes
    if errors & (Errors.BAD_CODE | Errors.TRUNCATED_BLOCK | Errors.WRONG_LENGTH) \
            and name != "beyond the buffer":
        with pytest.raises(FormatError) as error:
            unpack(words)
        assert Errors.of_format(error.value.kind) == errors
    check_rtl(case)


def test_rtl_checks_once():
    """The second run skips the check (fewer cycles, the same words); a host write into
    `weights` makes the next run check again: a new layer is computed, a corrupted one
    flagged with nothing written."""
    params = bitop(rows_per_cycle=2)
    sd, other = random_layer(6, 20, seed=7), random_layer(6, 20, seed=8)
    x = activations(5, 20, seed=7)
    case = make_case(params, sd.pack(), x, stale=STALE)
    first, second = check_rtl(case, sd, runs=2)
    assert second < first
    rewritten = {"weights": dict(enumerate(other.pack()))}
    status, words = rtl(case, runs=3, host_writes=[{}, {}, rewritten])
    assert [cycles for _, cycles, _ in status] == [first, second, first]
    want = list(case.contents["result"])
    for address, word in make_case(params, other.pack(), x).expected.writes["result"].items():
        want[address] = word
    assert words["result"] == want
    case = make_case(params, GOOD, activations(5, 10, seed=1), stale=STALE)
    status, words = rtl(case, runs=2, host_writes=[{}, {"weights": {9: GOOD[9] | 1 << 31}}])
    assert [errors for errors, _, _ in status] == [0, Errors.BAD_CODE]
    assert words["result"] == [case.expected.writes["result"].get(n, word)
                               for n, word in enumerate(case.contents["result"])]


def test_host_on_the_golden_shell():
    """dev.linear with a bit-op device: the exact sums x·w_int, bit for bit, in runs of at
    most max_tokens rows (pack_act / unpack_result)."""
    from celine.firmware.device import Device
    params = bitop(rows_per_cycle=2, array_rows=3, max_tokens=5)
    sd = random_layer(7, 10, seed=1)
    x = activations(12, 10, seed=2)
    with Device.open("model", accel="smartdeal", params=params) as dev:
        assert torch.equal(dev.linear(x, sd), linear_bitop_int(x, sd))
        assert torch.equal(dev.linear(x[:4], sd, requant=(500, 14)),
                           linear_bitop_int(x[:4], sd, mult=500, shift=14))
        assert dev.smartdeal.last_link_bytes["weights"] == 0


# -- a wider sweep (make sim) ------------------------------------------------------------------

@pytest.mark.sweep
@pytest.mark.parametrize("rows", [1, 2, 4])
@pytest.mark.parametrize("R", [1, 2, 4])
@pytest.mark.parametrize("E", [2, 3, 4])
def test_rtl_sweep(rows, R, E):
    """Every point bit-exact, twice (the second run skips the check), both runs within 2%
    of the cycle model."""
    for P, (outputs, length, tokens) in zip((1, 3, 9), ((3, 4, 2), (11, 31, 9), (20, 48, 4))):
        params = bitop(array_rows=rows, rows_per_cycle=R, exponent_bits=E,
                       bitop_multipliers=P)
        sd = random_layer(outputs, length, seed=rows * 100 + R * 10 + E, exponent_bits=E)
        x = activations(tokens, length, seed=E)
        case = make_case(params, sd.pack(), x, requant=(257, 11) if P == 3 else None,
                         stale=STALE)
        assert_cycle_model(case, check_rtl(case, sd, runs=2))
