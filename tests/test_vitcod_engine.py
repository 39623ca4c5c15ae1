"""The ViTCoD engine (its shell adapter) in the Amaranth simulator against the golden
engine model: every word of `out`, the error flags and the rows written."""

import pytest
import torch

from celine.engines.vitcod.spec import (Errors, VitcodParams, csc_fields, csr_fields,
                                        head_register, pack_word, unpack_word)
from celine.golden.vitcod.mask import load_deit_masks, random_mask
from celine.rtl.vitcod.shell_adapter import VitcodShellAdapter
from celine.sim.adapter_bench import run_adapter
from celine.sim.amaranth_sim import shared
from celine.sim.vitcod_cases import make_case
from celine.spec.lanes import pack_lanes

SMALL = VitcodParams(head_dim=16, max_tokens=24, heads=2, max_global=8, sparse_capacity=400,
                     dense_macs=8, sparse_macs=8, out_lanes=4)


def check(case, limit=60_000):
    status, words = run_adapter(shared(VitcodShellAdapter, case.params), case.contents, case.settings,
                                limit=limit)
    (errors, cycles, result_words), = status
    expected = case.expected
    assert errors == expected.errors
    assert result_words == expected.result_words
    out = list(case.contents["out"])
    for address, word in expected.writes.get("out", {}).items():
        out[address] = word
    assert words["out"] == out
    return cycles


def test_two_sparse_heads():
    masks = [random_mask(21, 0.7, seed=1), random_mask(21, 0.5, seed=2)]
    check(make_case(SMALL, 21, masks, seed=3))


def test_dense_and_global_heads():
    full = None
    only_global = random_mask(24, 0.9, seed=4)
    only_global[:, :3] = True
    check(make_case(SMALL, 24, [full, only_global], seed=5, threshold=5))


# -- edges and errors ------------------------------------------------------------------------


def test_one_token_and_extreme_operands():
    check(make_case(SMALL, 1, [None, None], seed=6))
    check(make_case(SMALL, 24, [random_mask(24, 0.5, seed=7), None], extreme=True, threshold=6))


def test_max_tokens_odd_and_skipped_head():
    odd = VitcodParams(head_dim=16, max_tokens=23, heads=3, max_global=8, sparse_capacity=400,
                       dense_macs=8, sparse_macs=8, out_lanes=16)
    masks = [random_mask(23, s, seed=8 + n) for n, s in enumerate((0.9, 0.5, 0.75))]
    check(make_case(odd, 23, masks, seed=9, head_mask=0b010, threshold=8))


def test_sparse_only_and_dense_only_engines():
    sparse_only = VitcodParams(head_dim=16, max_tokens=20, heads=1, max_global=0,
                               sparse_capacity=400, dense_macs=0, sparse_macs=16, out_lanes=4)
    check(make_case(sparse_only, 20, [random_mask(20, 0.6, seed=10)]))
    dense_only = VitcodParams(head_dim=16, max_tokens=20, heads=1, max_global=20,
                              sparse_capacity=0, dense_macs=16, sparse_macs=0, out_lanes=4)
    check(make_case(dense_only, 20, [None], threshold=5))


# More MAC units than head_dim (16 + 16 at d = 16): the SDDMM engines use all 32, the SpMM
# the first 16. With the host's balancing each engine gets part of a mixed head.
WIDE = VitcodParams(head_dim=16, max_tokens=19, heads=2, max_global=8, sparse_capacity=361,
                    dense_macs=16, sparse_macs=16, out_lanes=8)


def test_more_mac_units_than_head_dim():
    masks = [random_mask(19, 0.6, seed=40), None]
    check(make_case(WIDE, 19, masks, seed=41, threshold=4, balance=True))
    check(make_case(WIDE, 19, [random_mask(19, 0.9, seed=42)] * 2, seed=43, extreme=True))


@pytest.mark.sweep      # make test: balanced plans in test_more_mac_units_than_head_dim
def test_balanced_plans_give_the_same_words():
    """plan_head(balance=True) moves global columns to the sparser engine when that is
    faster (here 8 + 56 units at d = 64: one global column, 197·8 cycles against its
    sparse work): fewer global columns, more list entries, the same output words."""
    narrow = VitcodParams(head_dim=64, max_tokens=24, heads=1, max_global=8,
                          sparse_capacity=576, dense_macs=8, sparse_macs=56, out_lanes=16)
    mask = random_mask(24, 0.8, seed=44)
    plain = make_case(narrow, 24, [mask], seed=45, threshold=6)
    balanced = make_case(narrow, 24, [mask], seed=45, threshold=6, balance=True)
    assert plain.plans[0].globals > balanced.plans[0].globals
    assert balanced.plans[0].nnz == plain.plans[0].nnz + \
        24 * (plain.plans[0].globals - balanced.plans[0].globals)
    assert balanced.expected.writes == plain.expected.writes
    assert check(balanced) < check(plain)


@pytest.mark.parametrize("settings, errors", [
    ({"tokens": 0}, Errors.TOKENS),
    pytest.param({"tokens": 25}, Errors.TOKENS, marks=pytest.mark.sweep),
    pytest.param({head_register("nnz", 1): 401}, Errors.CAPACITY, marks=pytest.mark.sweep),
    ({head_register("globals", 0): 9}, Errors.CAPACITY),
])
def test_bad_registers_run_nothing(settings, errors):
    case = make_case(SMALL, 12, [random_mask(12, 0.5, seed=11)] * 2, settings=settings)
    assert case.expected.errors == errors and case.expected.result_words == 0
    check(case)


def _corrupt(case, buffer, head, index, change):
    address = head * case.params.sparse_capacity + index
    if change == "pos":
        fields = csc_fields(case.params)
        values = unpack_word(fields, case.contents[buffer][address])
        values["pos"] = case.settings[head_register("nnz", head)]
        case.contents[buffer][address] = pack_word(fields, values)
    else:
        case.contents[buffer][address] = change(case.contents[buffer][address])
    from celine.golden.shell import Buffer
    from celine.golden.vitcod.engine_model import VitcodEngineModel
    model = VitcodEngineModel(case.params)
    buffers = {spec.name: Buffer(spec) for spec in model.buffer_specs}
    for name, words in case.contents.items():
        buffers[name].words = list(words)
    case.expected = model.run(case.settings, buffers)
    return case


# make test: two of the four (each is a run of the same engine).
@pytest.mark.parametrize("buffer, index, change", [
    pytest.param("csr", 3, lambda w: w ^ 1,         # a CSR row changed: order/consistency
                 marks=pytest.mark.sweep),
    pytest.param("csc", 2, lambda w: w ^ (1 << 5),  # a CSC row changed
                 marks=pytest.mark.sweep),
    ("csc", 0, "pos"),                              # a CSR position beyond nnz
    ("csr", 0, lambda w: w | 0x1F),                 # a row beyond N
])
def test_malformed_lists_stop_before_the_head_writes(buffer, index, change):
    case = make_case(SMALL, 12, [random_mask(12, 0.5, seed=12)] * 2)
    case = _corrupt(case, buffer, 1, index, change)
    assert case.expected.errors == Errors.INDEX and case.expected.result_words == 12
    check(case)


def test_a_row_without_entries_is_malformed():
    """With no global column, a CSR list that skips a row would leave the row without a
    score: the engine flags it (INDEX) instead of waiting for it."""
    case = make_case(SMALL, 12, [random_mask(12, 0.5, seed=13)] * 2)
    p, h = SMALL, 1
    base, nnz = h * p.sparse_capacity, case.settings[head_register("nnz", h)]
    csr = [unpack_word(csr_fields(p), case.contents["csr"][base + n]) for n in range(nnz)]
    csc = [unpack_word(csc_fields(p), case.contents["csc"][base + n]) for n in range(nnz)]
    keep = [n for n, e in enumerate(csr) if e["row"] != 5]          # drop row 5 entirely
    new_pos = {old: new for new, old in enumerate(keep)}
    csr = [csr[n] for n in keep]
    csc = [dict(e, pos=new_pos[e["pos"]]) for e in csc if e["row"] != 5]
    for n in range(nnz):
        case.contents["csr"][base + n] = pack_word(csr_fields(p), csr[n]) if n < len(csr) else 0
        case.contents["csc"][base + n] = pack_word(csc_fields(p), csc[n]) if n < len(csc) else 0
    case.settings[head_register("nnz", h)] = len(csr)
    case = _corrupt(case, "csr", h, 0, lambda w: w)
    assert case.expected.errors == Errors.INDEX and case.expected.result_words == 12
    check(case, limit=20_000)


# -- logical polarization: the global columns are a table of token indices ------------------


def test_global_columns_that_are_not_the_first_tokens():
    """A head whose global columns are tokens 3, 7 and 12: K and V stay in token order,
    bit-exact with attention_head_int on the mask itself."""
    from celine.golden.vitcod.attention import HeadScales, attention_head_int
    mask = random_mask(16, 0.8, seed=29)
    mask[:, [3, 7, 12]] = True
    mask[:, [0, 1, 2]] = False
    mask[0] = True
    case = make_case(SMALL, 16, [mask, random_mask(16, 0.5, seed=31)], seed=30, threshold=12)
    plan = case.plans[0]
    assert plan.gcols == (3, 7, 12) and torch.equal(plan.kept, mask)
    assert case.contents["gcols"][:3] == [3, 7, 12]
    scales = HeadScales(*(case.settings[head_register(name, 0)] for name in
                          ("exp_mult", "exp_shift", "out_mult", "out_shift")))
    y = attention_head_int(plan.q, plan.k, plan.v, mask, scales, SMALL)
    assert [case.expected.writes["out"][i] for i in range(16)] == \
        [pack_lanes(row, SMALL.operand_width) for row in y.tolist()]
    check(case)


def _lists(case, head):
    """(csc, csr, gcols) of a head as the engine model decodes them."""
    p = case.params
    base, nnz = head * p.sparse_capacity, case.settings[head_register("nnz", head)]
    csc = [tuple(unpack_word(csc_fields(p), case.contents["csc"][base + n]).values())
           for n in range(nnz)]
    csr = [tuple(unpack_word(csr_fields(p), case.contents["csr"][base + n]).values())
           for n in range(nnz)]
    g = case.settings[head_register("globals", head)]
    return csc, csr, case.contents["gcols"][head * p.max_global:head * p.max_global + g]


# make test: the unsorted table and the column with sparse entries.
@pytest.mark.parametrize("gcols, reason", [
    ((0, 2, 1, 3, 5, 13, 14), "global column 2 (1) is out of order"),           # unsorted
    pytest.param((0, 1, 1, 3, 5, 13, 14), "global column 2 (1) is out of order",  # repeated
                 marks=pytest.mark.sweep),
    pytest.param((0, 1, 2, 3, 5, 13, 16), "global column 6 (16) is out of range",  # >= N
                 marks=pytest.mark.sweep),
    ((0, 1, 2, 3, 4, 5, 13, 14), "csr entry {n} (row {row}, col 4) is in a global column"),
])
def test_malformed_global_columns(gcols, reason):
    """Head 1's gcols table (0, 1, 2, 3, 5, 13, 14) changed: unsorted, repeated, beyond N,
    or naming column 4, which has sparse entries in the lists: INDEX, head 0 written."""
    from celine.golden.vitcod.engine_model import index_error
    masks = [random_mask(16, 0.6, seed=30), random_mask(16, 0.5, seed=31)]
    case = make_case(SMALL, 16, masks, seed=32, threshold=8)
    p = SMALL
    assert case.plans[1].gcols == (0, 1, 2, 3, 5, 13, 14)
    for j, col in enumerate(gcols):
        case.contents["gcols"][p.max_global + j] = col
    case.settings[head_register("globals", 1)] = len(gcols)
    case = _corrupt(case, "csr", 1, 0, lambda w: w)      # recompute the golden result
    csc, csr, table = _lists(case, 1)
    n, (row, _) = next((n, e) for n, e in enumerate(csr) if e[1] == 4)
    assert index_error(csc, csr, table, tokens=16, nnz=len(csr)) == \
        reason.format(n=n, row=row)
    assert case.expected.errors == Errors.INDEX and case.expected.result_words == 16
    check(case)


def test_index_error_reasons():
    """The golden check's reasons, pinned (what INDEX means, docs/vitcod.md "Errors")."""
    from celine.golden.vitcod.engine_model import index_error
    good_csc, good_csr = [(1, 0, 0), (2, 1, 1)], [(0, 1), (1, 2)]
    cases = [
        ((good_csc, good_csr, (0,)), None),
        ((good_csc, good_csr, ()), "a row has no entry (and there is no global column)"),
        ((good_csc, good_csr, (0, 3)), "global column 1 (3) is out of range"),
        ((good_csc, good_csr, (2,)), "csr entry 1 (row 1, col 2) is in a global column"),
        (([(3, 0, 0), (2, 1, 1)], good_csr, (0,)),
         "csc entry 0 (col 3, row 0, pos 0) is out of range"),
        (([(2, 1, 1), (1, 0, 0)], good_csr, (0,)), "csc entry 1 is out of order"),
        (([(1, 0, 1), (2, 1, 0)], good_csr, (0,)),
         "csc entry 0 points at csr entry 1, which is not (row 0, col 1)"),
    ]
    for (csc, csr, gcols), reason in cases:
        assert index_error(csc, csr, gcols, tokens=3, nnz=2) == reason


# -- the auto-encoder's decoder in the run ----------------------------------------------------

AE = VitcodParams(head_dim=16, max_tokens=13, heads=3, max_global=4, sparse_capacity=120,
                  dense_macs=8, sparse_macs=8, out_lanes=4, autoencoder=True)


def random_mixer(rng, params, part="decoder"):
    """Random fields of a decoder or an encoder (weights often at the int8 ends; biases
    now and then at the int32 ends; scales that leave most outputs inside int8, some
    saturating)."""
    from celine.engines.vitcod.spec import ae_shape
    rows, cols = ae_shape(params, part)
    weights = [[rng.choice([-128, 127, rng.randint(-128, 127)]) for _ in range(cols)]
               for _ in range(rows)]
    biases = [rng.choice([0, *(rng.randint(-(1 << 13), 1 << 13) for _ in range(10)),
                          -(1 << 31), (1 << 31) - 1]) for _ in range(rows)]
    # |acc| ~ cols * 2^13, times 2^15.5 -> outputs ~ 2^5 .. 2^7 at shifts 23 .. 25
    shift = 22 + cols.bit_length() + rng.randint(-1, 1)
    return weights, biases, rng.randint(1 << 15, (1 << 16) - 1), shift


def ae_case(params, tokens, masks, *, ae_enable, seed, head_mask=0, threshold=50,
            extreme=False):
    """make_case with random code heads in q and k after the H heads' slots, random rows
    in the skipped heads' q and k slots (the encoders read every head) and random
    decoders and encoders in the registers; the expected result recomputed by the golden
    model. `extreme`: every q, k, v row and code head is -128."""
    import random as _random

    from celine.engines.vitcod.spec import ae_encoder_settings, ae_settings, code_word
    from celine.golden.shell import Buffer
    from celine.golden.vitcod.engine_model import VitcodEngineModel
    from celine.spec.lanes import pack_lanes
    rng = _random.Random(seed)
    case = make_case(params, tokens, masks, seed=seed, head_mask=head_mask, threshold=threshold,
                     extreme=extreme)

    def row():
        return [-128 if extreme else rng.choice([-128, 127, rng.randint(-128, 127)])
                for _ in range(params.head_dim)]
    for name in ("q", "k"):
        for c in range(params.code_heads):
            for i in range(tokens):
                case.contents[name][code_word(params, c, i)] = pack_lanes(row(), 8)
        case.settings.update(ae_settings(params, name, *random_mixer(rng, params)))
    for name in ("q", "k"):
        for h in range(params.heads):
            if head_mask >> h & 1:
                for i in range(tokens):
                    case.contents[name][h * params.max_tokens + i] = pack_lanes(row(), 8)
        case.settings.update(ae_encoder_settings(params, name,
                                                 *random_mixer(rng, params, "encoder")))
    case.settings["ae_enable"] = ae_enable
    model = VitcodEngineModel(params)
    buffers = {spec.name: Buffer(spec) for spec in model.buffer_specs}
    for name, words in case.contents.items():
        buffers[name].words = list(words)
    case.expected = model.run(case.settings, buffers)
    return case


def check_ae(case, limit=60_000):
    """check() plus the q and k words the run rewrote (== the golden model's writes)."""
    status, words = run_adapter(shared(VitcodShellAdapter, case.params), case.contents, case.settings,
                                limit=limit)
    (errors, cycles, result_words), = status
    expected = case.expected
    assert (errors, result_words) == (expected.errors, expected.result_words)
    for name in ("q", "k", "out"):
        want = list(case.contents[name])
        for address, word in expected.writes.get(name, {}).items():
            want[address] = word
        assert words[name] == want, name
    return cycles


@pytest.mark.sweep      # make test: test_encoders_and_decoders_in_the_path decodes both
def test_both_decoders_then_the_heads():
    masks = [random_mask(11, 0.6, seed=20), None, random_mask(11, 0.8, seed=21)]
    case = ae_case(AE, 11, masks, ae_enable=0b11, seed=22, threshold=4)
    assert set(case.expected.writes) == {"q", "k", "out"}
    assert len(case.expected.writes["q"]) == len(case.expected.writes["k"]) == 3 * 11
    check_ae(case)


@pytest.mark.sweep      # make test: the whole path at max_tokens with a skipped head
def test_q_decoder_alone_with_a_skipped_head_and_max_tokens():
    masks = [random_mask(13, 0.5, seed=23)] * 3
    case = ae_case(AE, 13, masks, ae_enable=0b01, seed=24, head_mask=0b100)
    assert set(case.expected.writes) == {"q", "out"}
    check_ae(case)


def test_decoders_off_and_one_token():
    """ae_enable = 0: the code heads are ignored (the plain run); N = 1 with K's decoder."""
    case = ae_case(AE, 7, [random_mask(7, 0.5, seed=25)] * 3, ae_enable=0, seed=26)
    assert set(case.expected.writes) == {"out"}
    check_ae(case)
    check_ae(ae_case(AE, 1, [None] * 3, ae_enable=0b10, seed=27))


@pytest.mark.sweep      # make test: test_encoders_with_more_mac_units_than_head_dim decodes too
def test_decoders_with_more_mac_units_than_head_dim():
    wide = VitcodParams(head_dim=16, max_tokens=9, heads=2, max_global=4, sparse_capacity=81,
                        dense_macs=16, sparse_macs=8, out_lanes=16, autoencoder=True)
    check_ae(ae_case(wide, 9, [random_mask(9, 0.5, seed=46), None], ae_enable=0b11, seed=47,
                     threshold=4))


def test_bad_tokens_decode_nothing():
    case = ae_case(AE, 5, [None] * 3, ae_enable=0b11, seed=28)
    case.settings["tokens"] = 14
    case = _corrupt(case, "csr", 0, 0, lambda w: w)      # recompute the golden result
    assert case.expected.errors == Errors.TOKENS and not case.expected.writes
    check_ae(case)


# -- the encoders in the run (Q and K compressed on chip), alone and with the decoders ---------


def _heads(case, name, slots, tokens):
    """(1, len(slots), N, d) int64: the rows of q or k at the slots' words as the host left
    them (`contents`) or, with `written`, as the run left them."""
    from celine.spec.lanes import unpack_lanes
    p = case.params
    return torch.tensor([[unpack_lanes(case.contents[name][base + i], p.head_dim, 8)
                          for i in range(tokens)] for base in slots], dtype=torch.int64)[None]


def _autoencoder(case, name):
    from celine.golden.vitcod.engine_model import autoencoder_of
    return autoencoder_of(case.params, name, case.settings)


def _words(params, values, slots):
    """{word: packed row} of (1, len(slots), N, d) values at the slots."""
    return {base + i: pack_lanes(values[0, r, i].tolist(), 8)
            for r, base in enumerate(slots) for i in range(values.shape[2])}


@pytest.mark.sweep      # make test: test_encoders_and_decoders_in_the_path checks the codes
def test_encoders_alone_write_the_code_slots():
    """ae_enable = ENCODE_Q | ENCODE_K: the code slots become encode_int of every head
    (the skipped one too); the heads run on the plain q and k."""
    from celine.engines.vitcod.spec import AeEnable, code_word
    from celine.golden.vitcod.autoencoder import encode_int
    p, tokens = AE, 11
    masks = [random_mask(11, 0.6, seed=50), None, random_mask(11, 0.8, seed=51)]
    case = ae_case(p, tokens, masks, ae_enable=AeEnable.ENCODE_Q | AeEnable.ENCODE_K,
                   seed=52, head_mask=0b010, threshold=4)
    heads = [h * p.max_tokens for h in range(p.heads)]
    codes = [code_word(p, c, 0) for c in range(p.code_heads)]
    for name in ("q", "k"):
        z = encode_int(_autoencoder(case, name), _heads(case, name, heads, tokens))
        assert case.expected.writes[name] == _words(p, z, codes)
    assert case.expected.result_words == 2 * tokens
    check_ae(case)


def test_encoders_and_decoders_in_the_path():
    """ae_enable = 0b1111 at N = max_tokens with a skipped head: q and k are compressed and
    rebuilt on chip; the kept heads' outputs are attention of decode_int(encode_int(.))."""
    from celine.engines.vitcod.spec import AeEnable, code_word
    from celine.golden.vitcod.attention import HeadScales, attention_head_int
    from celine.golden.vitcod.autoencoder import decode_int, encode_int
    from celine.spec.lanes import unpack_lanes
    p, tokens = AE, AE.max_tokens
    masks = [random_mask(13, 0.5, seed=53), random_mask(13, 0.7, seed=54), None]
    case = ae_case(p, tokens, masks, ae_enable=int(AeEnable(0b1111)), seed=55, head_mask=0b001,
                   threshold=4)
    heads = [h * p.max_tokens for h in range(p.heads)]
    codes = [code_word(p, c, 0) for c in range(p.code_heads)]
    rebuilt = {}
    for name in ("q", "k"):
        qae = _autoencoder(case, name)
        z = encode_int(qae, _heads(case, name, heads, tokens))
        rebuilt[name] = decode_int(qae, z)
        assert case.expected.writes[name] == {**_words(p, z, codes),
                                              **_words(p, rebuilt[name], heads)}
    v = _heads(case, "v", heads, tokens)[0]
    for n, h in enumerate((1, 2)):
        scales = HeadScales(*(case.settings[head_register(name, h)] for name in
                              ("exp_mult", "exp_shift", "out_mult", "out_shift")))
        y = attention_head_int(rebuilt["q"][0, h], rebuilt["k"][0, h], v[h],
                               case.plans[n].kept, scales, p)
        out = case.expected.writes["out"]
        assert [unpack_lanes(out[h * p.max_tokens + i], p.head_dim, 8)
                for i in range(tokens)] == y.tolist()
    check_ae(case)


def test_encoder_one_token_and_extreme_operands():
    """N = 1 through K's encoder and decoder; every operand and code -128 through all four."""
    from celine.engines.vitcod.spec import AeEnable
    check_ae(ae_case(AE, 1, [None] * 3, ae_enable=AeEnable.ENCODE_K | AeEnable.DECODE_K,
                     seed=56))
    case = ae_case(AE, 9, [random_mask(9, 0.5, seed=57)] * 3, ae_enable=0b1111, seed=58,
                   extreme=True)
    assert case.expected.writes["q"] and case.expected.writes["k"]
    check_ae(case)


@pytest.mark.parametrize("path", [pytest.param("q alone", marks=pytest.mark.sweep), "whole"])
def test_encoders_with_more_mac_units_than_head_dim(path):
    """M = 24 > d = 16: the mixers use the bank's first 16 units; Q encoded alone (make sim),
    and the whole path."""
    from celine.engines.vitcod.spec import AeEnable
    wide = VitcodParams(head_dim=16, max_tokens=9, heads=3, max_global=4, sparse_capacity=81,
                        dense_macs=16, sparse_macs=8, out_lanes=8, autoencoder=True)
    masks = [random_mask(9, 0.5, seed=59), None, random_mask(9, 0.7, seed=60)]
    if path == "q alone":
        check_ae(ae_case(wide, 9, masks, ae_enable=AeEnable.ENCODE_Q, seed=61, threshold=4))
    else:
        check_ae(ae_case(wide, 9, masks, ae_enable=0b1111, seed=62, threshold=4,
                         head_mask=0b100))


def test_autoencoder_parameter():
    """Pinned checks; the buffers and registers it adds."""
    from celine.engines.vitcod.spec import (AE_MAX_HEADS, AE_STEPS, MAX_REGISTERS, AeEnable,
                                            ae_encoder_settings, ae_encoder_values,
                                            ae_register, ae_settings, ae_values, buffers,
                                            code_word, pack_ae_weights, registers,
                                            unpack_ae_weights)
    base = dict(head_dim=16, max_tokens=13, max_global=4, sparse_capacity=120, dense_macs=8,
                sparse_macs=8, out_lanes=4)
    cases = [
        (dict(heads=3, autoencoder=1), TypeError, "autoencoder must be True or False, not 1"),
        (dict(heads=3, autoencoder=True, operand_width=6), ValueError,
         "operand_width must be 8 with the auto-encoder, not 6"),
        (dict(heads=1, autoencoder=True), ValueError,
         "heads must be at least 2 with the auto-encoder, not 1"),
    ]
    for extra, error, message in cases:
        with pytest.raises(error) as info:
            VitcodParams(**base, **extra)
        assert str(info.value) == message
    plain = {b.name: b for b in buffers(VitcodParams(**base, heads=3))}
    ae = {b.name: b for b in buffers(AE)}
    assert not plain["q"].engine_writes and plain["q"].depth == 3 * 13
    for name in ("q", "k"):
        assert ae[name].engine_writes and ae[name].depth == (3 + 2) * 13
    assert [b.engine_writes for n, b in ae.items() if n not in ("q", "k")] == [False] * 5
    assert (ae["gcols"].width, ae["gcols"].depth, ae["gcols"].read_ports) == (4, 3 * 4, 2)
    assert code_word(AE, 1, 4) == 4 * 13 + 4
    assert "ae_enable" not in registers(VitcodParams(**base, heads=3))
    regs = registers(AE)
    # The decoders' registers as before the encoders were added, the encoders' after them.
    assert regs.names[-27:] == (
        "ae_enable", "ae_q_weights_0", "ae_q_weights_1", "ae_q_bias_0", "ae_q_bias_1",
        "ae_q_bias_2", "ae_q_mult", "ae_q_shift", "ae_k_weights_0", "ae_k_weights_1",
        "ae_k_bias_0", "ae_k_bias_1", "ae_k_bias_2", "ae_k_mult", "ae_k_shift",
        "ae_q_enc_weights_0", "ae_q_enc_weights_1", "ae_q_enc_bias_0", "ae_q_enc_bias_1",
        "ae_q_enc_mult", "ae_q_enc_shift", "ae_k_enc_weights_0", "ae_k_enc_weights_1",
        "ae_k_enc_bias_0", "ae_k_enc_bias_1", "ae_k_enc_mult", "ae_k_enc_shift")
    assert regs["ae_enable"].width == 4
    assert [int(f) for f in AeEnable] == [1, 2, 4, 8]            # DECODE_Q/K, ENCODE_Q/K
    assert [(int(f), x, part) for f, x, part in AE_STEPS] == [
        (4, "q", "encoder"), (8, "k", "encoder"), (1, "q", "decoder"), (2, "k", "decoder")]
    assert AeEnable.of("k", "encoder") is AeEnable.ENCODE_K
    assert regs[ae_register("q", "weights", 1)].width == 16        # 6 weights: 4 + 2
    assert regs[ae_register("k", "enc_weights", 1)].width == 16
    # Row-major, low byte first, two's complement.
    weights = [[-128, 1], [2, -1], [127, -2]]
    assert pack_ae_weights(weights) == [0xFF_02_01_80, 0xFE_7F]
    assert unpack_ae_weights(pack_ae_weights(weights), 3, 2) == weights
    values = {**regs.reset_values(), **ae_settings(AE, "k", weights, [-1, 0, 7], 9, 3)}
    assert values["ae_k_bias_0"] == 0xFFFF_FFFF
    assert ae_values(AE, "k", values) == (weights, [-1, 0, 7], 9, 3)
    # The encoder's C x H weights: W_enc[c][h] is entry c*H + h.
    enc = [[-128, 1, 2], [-1, 127, -2]]
    settings = ae_encoder_settings(AE, "q", enc, [-(1 << 31), 5], 65535, 63)
    assert settings["ae_q_enc_weights_0"] == 0xFF_02_01_80
    values.update(settings)
    assert ae_encoder_values(AE, "q", values) == (enc, [-(1 << 31), 5], 65535, 63)
    assert ae_values(AE, "k", values) == (weights, [-1, 0, 7], 9, 3)
    # The registers fit the protocol's one-byte ids up to AE_MAX_HEADS heads.
    assert len(registers(VitcodParams(**base, heads=AE_MAX_HEADS, autoencoder=True))) \
        <= MAX_REGISTERS
    with pytest.raises(ValueError) as info:
        VitcodParams(**base, heads=AE_MAX_HEADS + 1, autoencoder=True)
    assert str(info.value) == ("heads must be at most 14 with the auto-encoder (its registers "
                               "must fit 256 ids), not 15")
    assert len(registers(VitcodParams(**base, heads=AE_MAX_HEADS + 1))) <= MAX_REGISTERS


# -- the shipped DeiT-Tiny masks and random masks ------------------------------------------------

DEIT = VitcodParams(head_dim=16, max_tokens=197, heads=3, max_global=32, sparse_capacity=4096,
                    dense_macs=8, sparse_macs=8, out_lanes=16)


@pytest.mark.sweep          # make test: the other engine tests (a DeiT layer is ~40 s)
@pytest.mark.parametrize("layer", [1, pytest.param(0, marks=pytest.mark.sweep),
                                   pytest.param(3, marks=pytest.mark.sweep),
                                   pytest.param(4, marks=pytest.mark.sweep),
                                   pytest.param(5, marks=pytest.mark.sweep)])
def test_deit_tiny_layer_all_heads(layer):
    """One run of a layer's three heads, each with its shipped mask (95% sparse)."""
    masks = list(load_deit_masks()[layer])
    check(make_case(DEIT, 197, masks, seed=layer), limit=400_000)


@pytest.mark.sweep
def test_deit_tiny_layer_2_with_70_global_tokens():
    """Layer 2 head 0 has 70 global tokens: 32 stay in the denser engine, the rest go sparse."""
    params = VitcodParams(head_dim=16, max_tokens=197, heads=3, max_global=32,
                          sparse_capacity=12_000, dense_macs=8, sparse_macs=8, out_lanes=16)
    check(make_case(params, 197, list(load_deit_masks()[2]), seed=2), limit=1_000_000)


RANDOM = VitcodParams(head_dim=16, max_tokens=64, heads=2, max_global=16, sparse_capacity=4096,
                      dense_macs=8, sparse_macs=8, out_lanes=8)


@pytest.mark.parametrize("sparsity", [0.9, pytest.param(0.5, marks=pytest.mark.sweep),
                                      pytest.param(0.75, marks=pytest.mark.sweep),
                                      pytest.param(0.95, marks=pytest.mark.sweep)])
def test_random_masks(sparsity):
    """Two heads of 61 tokens at the given sparsity, polarized at 12 kept rows."""
    masks = [random_mask(61, sparsity, seed=h + int(100 * sparsity)) for h in range(2)]
    check(make_case(RANDOM, 61, masks, seed=3, threshold=12), limit=200_000)


def test_ae_settings_check_their_shapes():
    from celine.engines.vitcod.spec import ae_settings
    p = VitcodParams(head_dim=16, max_tokens=8, heads=3, max_global=4, sparse_capacity=64,
                     dense_macs=8, sparse_macs=8, out_lanes=4, autoencoder=True)
    with pytest.raises(ValueError, match=r"^weights must be 3 rows of 2, not rows of \[2, 2\]$"):
        ae_settings(p, "q", [[1, 2], [3, 4]], [0, 0, 0], 1, 0)
    with pytest.raises(ValueError, match=r"^biases must be 3 values, not 2$"):
        ae_settings(p, "q", [[1, 2]] * 3, [0, 0], 1, 0)
    assert len(ae_settings(p, "q", [[1, 2]] * 3, [0, 0, 0], 1, 0)) == 2 + 3 + 2


@pytest.mark.parametrize("args, error, message", [
    (([[1, 2, 3]] * 3, [0, 0], 1, 0), ValueError,
     r"^weights must be 2 rows of 3, not rows of \[3, 3, 3\]$"),
    (([[1, 2]] * 2, [0, 0], 1, 0), ValueError,
     r"^weights must be 2 rows of 3, not rows of \[2, 2\]$"),
    (([[1, 2, 3]] * 2, [0, 0, 0], 1, 0), ValueError, r"^biases must be 2 values, not 3$"),
    (([[1, 2, 128]] * 2, [0, 0], 1, 0), ValueError,
     r"^weights entries must be between -128 and 127, not 128$"),
    (([[1, 2, 3]] * 2, [0, 1 << 31], 1, 0), ValueError,
     r"^biases entries must be between -2147483648 and 2147483647, not 2147483648$"),
    (([[1, 2, 3]] * 2, [0, 0], 1 << 16, 0), ValueError,
     r"^mult must be between 0 and 65535, not 65536$"),
    (([[1, 2, 3]] * 2, [0, 0], 1, 64), ValueError, r"^shift must be between 0 and 63, not 64$"),
    (([[1, 2, 3.0]] * 2, [0, 0], 1, 0), TypeError,
     r"^weights entries must be an integer, not 3.0$"),
])
def test_ae_encoder_settings_check_their_values(args, error, message):
    """The encoder's weights are C x H (here 2 x 3); the decoder's checks are the same."""
    from celine.engines.vitcod.spec import ae_encoder_settings, ae_settings
    p = VitcodParams(head_dim=16, max_tokens=8, heads=3, max_global=4, sparse_capacity=64,
                     dense_macs=8, sparse_macs=8, out_lanes=4, autoencoder=True)
    with pytest.raises(error, match=message):
        ae_encoder_settings(p, "k", *args)
    assert len(ae_encoder_settings(p, "k", [[1, 2, 3]] * 2, [0, 0], 1, 0)) == 2 + 2 + 2
    with pytest.raises(ValueError, match=r"^mult must be between 0 and 65535, not -1$"):
        ae_settings(p, "q", [[1, 2]] * 3, [0, 0, 0], -1, 0)


def test_a_heads_result_does_not_depend_on_the_split():
    """The global columns are kept whole whichever engine computes them, so one mask gives
    the same effective mask and the same words on a sparse-only engine, a narrow denser
    engine (max_global 2 of the mask's 6 global columns) and a wide one, balanced or not."""
    mask = random_mask(18, 0.75, seed=48)
    mask[:, [2, 5, 9, 11]] = torch.rand(18, 4, generator=torch.Generator().manual_seed(1)) < 0.8
    configs = [
        VitcodParams(head_dim=16, max_tokens=18, heads=1, max_global=0, sparse_capacity=324,
                     dense_macs=0, sparse_macs=16, out_lanes=4),
        VitcodParams(head_dim=16, max_tokens=18, heads=1, max_global=2, sparse_capacity=324,
                     dense_macs=8, sparse_macs=8, out_lanes=4),
        VitcodParams(head_dim=16, max_tokens=18, heads=1, max_global=8, sparse_capacity=324,
                     dense_macs=8, sparse_macs=8, out_lanes=4),
    ]
    cases = [make_case(p, 18, [mask], seed=49, threshold=6, balance=balance)
             for p in configs for balance in (False, True)]
    assert [c.plans[0].globals for c in cases[::2]] == [0, 2, 6]
    for case in cases[1:]:
        assert torch.equal(case.plans[0].kept, cases[0].plans[0].kept)
        assert case.expected.writes == cases[0].expected.writes
    check(cases[0])
    check(cases[3])


# -- rows over several buffer words (row_beats) ----------------------------------------------

BEATS = VitcodParams(head_dim=32, max_tokens=21, heads=2, max_global=8, sparse_capacity=300,
                     dense_macs=8, sparse_macs=8, out_lanes=8, row_beats=2)


@pytest.mark.parametrize("params", [pytest.param(BEATS, marks=pytest.mark.sweep), VitcodParams(
    head_dim=64, max_tokens=9, heads=1, max_global=4, sparse_capacity=81, dense_macs=8,
    sparse_macs=8, out_lanes=4, row_beats=4)], ids=["beats2", "beats4"])
def test_rows_over_several_words(params):
    """Sparse, global and dense heads, one token, most-negative operands, a skipped head,
    with each row in row_beats words; the cycle count is the model's."""
    from celine.engines.vitcod.cycles import cycles as model_cycles, work_of_plan
    tokens = params.max_tokens
    masks = [random_mask(tokens, 0.6, seed=20), None][:params.heads]
    case = make_case(params, tokens, masks, seed=21, extreme=True, threshold=3)
    cycles = check(case)
    works = [work_of_plan(plan) for plan in case.plans]
    assert cycles == model_cycles(params, works)
    check(make_case(params, 1, [None] * params.heads, seed=22))
    if params.heads > 1:
        check(make_case(params, tokens, masks, seed=23, head_mask=0b01, threshold=3))


def test_skipped_heads_cycles():
    """Heads skipped before and after a kept one: the cycle count is the model's, each
    skipped head SKIP_TURN cycles (the model takes a HeadWork per head of the engine)."""
    from celine.engines.vitcod.cycles import cycles as model_cycles, work_of_plan
    params = VitcodParams(head_dim=16, max_tokens=9, heads=3, max_global=4,
                          sparse_capacity=81, dense_macs=8, sparse_macs=8, out_lanes=4)
    head_mask = 0b101
    masks = [random_mask(9, 0.6, seed=20), None, random_mask(9, 0.5, seed=3)]
    case = make_case(params, 9, masks, seed=23, head_mask=head_mask, threshold=3)
    (kept,) = [work_of_plan(plan) for plan in case.plans]
    assert check(case) == model_cycles(params, [kept] * params.heads, head_mask=head_mask)
