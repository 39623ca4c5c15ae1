"""The ViTCoD engine's parameters, integer softmax and golden engine model."""

import math

import pytest
import torch

from celine.engines.vitcod.spec import (E_BITS, EXP_HI_TABLE, EXP_LO_TABLE, Errors,
                                        VitcodParams, head_register)
from celine.golden.shell import Buffer
from celine.golden.vitcod.attention import (HeadScales, attention_head_int, exp_int,
                                            exp_scale, masked_softmax_attention,
                                            softmax_error, softmax_int)
from celine.golden.vitcod.engine_model import VitcodEngineModel
from celine.golden.vitcod.mask import load_deit_masks, random_mask
from celine.golden.vitcod.plan import calibrate_head, plan_head
from celine.spec.lanes import pack_lanes, unpack_lanes

SMALL = dict(head_dim=16, max_tokens=40, heads=2, max_global=8, sparse_capacity=512,
             dense_macs=8, sparse_macs=8, out_lanes=4)


@pytest.mark.parametrize("change, error, message", [
    ({"head_dim": 12}, ValueError, "head_dim must be a multiple of 8, not 12"),
    ({"max_tokens": 0}, ValueError, "max_tokens must be between 1 and 1024, not 0"),
    ({"heads": 17}, ValueError, "heads must be between 1 and 16, not 17"),
    ({"max_global": 198}, ValueError, "max_global must be between 0 and 197, not 198"),
    ({"dense_macs": 12}, ValueError, "dense_macs must be a multiple of 8, not 12"),
    ({"sparse_macs": 72}, ValueError, "sparse_macs must be between 0 and 64, not 72"),
    ({"dense_macs": 0}, ValueError, "max_global must be 0 exactly when dense_macs is 0, not 32"),
    ({"sparse_macs": 0, "dense_macs": 64}, ValueError,
     "sparse_capacity must be 0 exactly when sparse_macs is 0, not 2048"),
    ({"dense_macs": 16, "sparse_macs": 32}, ValueError,
     "dense_macs + sparse_macs must divide head_dim (64) or exceed it, not 48"),
    ({"prob_bits": 16}, ValueError, "prob_bits must be between 4 and 15, not 16"),
    ({"out_lanes": 24}, ValueError, "out_lanes must divide head_dim (64), not 24"),
    ({"operand_width": 9}, ValueError, "operand_width must be between 2 and 8, not 9"),
    ({"out_mult": 1 << 16}, ValueError, "out_mult must be between 0 and 65535, not 65536"),
    ({"heads": True}, TypeError, "heads must be an integer, not True"),
])
def test_parameter_messages(change, error, message):
    with pytest.raises(error) as info:
        VitcodParams(**change)
    assert str(info.value) == message


WIDE = dict(head_dim=64, max_tokens=197, heads=3, max_global=32, sparse_capacity=2048,
            dense_macs=8, sparse_macs=56, out_lanes=16)


@pytest.mark.parametrize("change, message", [
    ({"row_beats": 16}, "row_beats must be between 1 and 8, not 16"),
    ({"row_beats": 3}, "row_beats must be a power of two dividing head_dim / 8 (8), not 3"),
    ({"row_beats": 2}, "sparse_macs must be at most 32 with row_beats 2 (a dot-product unit "
                       "takes a row every row_beats cycles), not 56"),
    ({"row_beats": 4, "dense_macs": 24, "sparse_macs": 8},
     "dense_macs must be at most 16 with row_beats 4 (a dot-product unit takes a row every "
     "row_beats cycles), not 24"),
    ({"row_beats": 2, "dense_macs": 32, "sparse_macs": 32},
     "dense_macs + sparse_macs must be at most 32 with row_beats 2 (the SpMM reads a v row "
     "over row_beats cycles), not 64"),
    ({"row_beats": 2, "sparse_macs": 24, "out_lanes": 64},
     "out_lanes must be at most 32 with row_beats 2 (an out row is written over row_beats "
     "cycles), not 64"),
    ({"row_beats": 2, "sparse_macs": 24, "autoencoder": True},
     "row_beats must be 1 with the auto-encoder, not 2"),
])
def test_row_beats_messages(change, message):
    with pytest.raises(ValueError) as info:
        VitcodParams(**{**WIDE, **change})
    assert str(info.value) == message


def test_automatic_row_beats():
    """None: the most words a row that keeps every rate (the narrowest ports)."""
    def beats(**change):
        return VitcodParams(**{**WIDE, **change}).beats
    assert beats() == 1                                     # 7 sparse DPUs of 8 slots
    assert beats(sparse_macs=24) == 2                       # 3 DPUs; the SpMM 2 cycles
    assert beats(sparse_macs=8) == 4                        # 16 units: 4 cycles an entry
    assert beats(sparse_macs=8, out_lanes=32) == 2          # 2 output chunks a row
    assert beats(sparse_macs=8, row_beats=1) == 1
    assert VitcodParams(**{**WIDE, "sparse_macs": 8, "heads": 2,
                           "autoencoder": True}).beats == 1


def test_row_words_round_trip():
    from celine.engines.vitcod.spec import row_of_words, row_words
    p = VitcodParams(**{**WIDE, "sparse_macs": 8, "row_beats": 4})
    row = [(-128 + 37 * n) % 256 - 128 for n in range(64)]
    words = row_words(p, row)
    assert len(words) == 4 and row_of_words(p, words) == row
    assert words[1] == pack_lanes(row[16:32], 8) and p.row_word_bits == 128


def test_derived_widths():
    p = VitcodParams(**WIDE)
    assert (p.mac_units, p.slices, p.score_width, p.recip_shift, p.out_acc_width, p.beats) == \
        (64, 8, 22, 39, 21, 1)
    default = VitcodParams()            # 8 + 24 units: rows in two words of 256 bits
    assert (default.mac_units, default.beats, default.row_word_bits) == (32, 2, 256)
    sparse_only = VitcodParams(**{**WIDE, "max_global": 0, "dense_macs": 0, "sparse_macs": 64,
                                  "sparse_capacity": 2048})
    assert (sparse_only.mac_units, sparse_only.dense_dpus, sparse_only.sparse_dpus) == (64, 0, 8)


def test_exp_tables_and_exp_int_track_the_exponential():
    assert EXP_HI_TABLE[0] == EXP_LO_TABLE[0] == 1 << E_BITS
    x = torch.arange(0, 1 << 17, 37)
    mult, shift = exp_scale(0.01)
    e = exp_int(x, mult, shift).double() / (1 << E_BITS)
    assert (e - torch.exp(-x.double() * 0.01)).abs().max() < 2e-4
    assert int(exp_int(torch.tensor([0]), mult, shift)) == 1 << E_BITS
    assert int(exp_int(torch.tensor([(1 << 17) - 1]), 65535, 0)) == 0


def test_softmax_int_is_exact_integer_arithmetic():
    """Against a plain-Python re-derivation of the formulas of docs/vitcod.md."""
    p = VitcodParams(**SMALL)
    torch.manual_seed(1)
    scores = torch.randint(-3000, 3000, (6, 6))
    kept = torch.rand(6, 6) < 0.6
    kept[:, 0] = True
    mult, shift = 40000, 20
    trace = softmax_int(scores, kept, exp_mult=mult, exp_shift=shift, params=p)
    big_r, f = p.recip_shift, p.prob_bits
    for i in range(6):
        cols = [j for j in range(6) if kept[i, j]]
        m = max(int(scores[i, j]) for j in cols)
        es = {}
        for j in cols:
            x = min(m - int(scores[i, j]), (1 << 17) - 1)
            z = (x * mult) >> shift
            n, a, b = z >> 12, (z >> 6) & 63, z & 63
            es[j] = (EXP_HI_TABLE[a] * EXP_LO_TABLE[b] + (1 << (15 + n))) >> (16 + n)
        total = sum(es.values())
        r = ((1 << big_r) + total // 2) // total
        for j in range(6):
            want = min((es[j] * r + (1 << (big_r - f - 1))) >> (big_r - f), 1 << f) if j in es else 0
            assert int(trace.p[i, j]) == want


def test_integer_softmax_is_within_one_lsb_on_deit_masks():
    """On realistic scores (correlated q and k, the shipped masks) at least 99% of the kept
    probabilities are within one LSB of float softmax."""
    p = VitcodParams()
    kept = load_deit_masks()[1, 0]
    torch.manual_seed(2)
    qf = torch.randn(197, 64)
    kf = 0.6 * qf + 0.8 * torch.randn(197, 64)
    sq, sk = float(qf.abs().max() / 127), float(kf.abs().max() / 127)
    q = torch.round(qf / sq).long()
    k = torch.round(kf / sk).long()
    report = softmax_error(q @ k.T, kept, sq * sk / math.sqrt(64), p)
    assert report["within_one_lsb"] >= 0.99
    assert report["max_lsb"] < 2.0


def _model_case(p, tokens, masks, seed=0):
    torch.manual_seed(seed)
    model = VitcodEngineModel(p)
    buffers = {b.name: Buffer(b) for b in model.buffer_specs}
    regs = model.register_map.reset_values()
    regs.update(tokens=tokens, head_mask=0)
    expected = []
    for h, mask in enumerate(masks):
        q, k, v = (torch.randint(-128, 128, (tokens, p.head_dim)) for _ in range(3))
        plan = plan_head(p, q, k, v, mask)
        scales, _ = calibrate_head(plan, p)
        for name in ("q", "k", "v"):
            for i in range(tokens):
                buffers[name].words[h * p.max_tokens + i] = \
                    pack_lanes(getattr(plan, name)[i].tolist(), p.operand_width)
        for n, (a, b) in enumerate(zip(plan.csc_words, plan.csr_words)):
            buffers["csc"].words[h * p.sparse_capacity + n] = a
            buffers["csr"].words[h * p.sparse_capacity + n] = b
        regs.update({head_register("globals", h): plan.globals, head_register("nnz", h): plan.nnz,
                     head_register("exp_mult", h): scales.exp_mult,
                     head_register("exp_shift", h): scales.exp_shift,
                     head_register("out_mult", h): scales.out_mult,
                     head_register("out_shift", h): scales.out_shift})
        expected.append(attention_head_int(plan.q, plan.k, plan.v, plan.kept, scales, p))
    return model, regs, buffers, expected


def test_engine_model_runs_heads_bit_exactly():
    p = VitcodParams(**{**SMALL, "sparse_capacity": 1100})    # a dense head of 33 tokens
    model, regs, buffers, expected = _model_case(
        p, 33, [random_mask(33, 0.75, seed=3), None])
    result = model.run(regs, buffers)
    assert result.errors == 0 and result.result_words == 66
    for h in range(2):
        got = torch.tensor([unpack_lanes(result.writes["out"][h * p.max_tokens + i], 16, 8)
                            for i in range(33)])
        assert torch.equal(got, expected[h])


def test_engine_model_errors():
    p = VitcodParams(**SMALL)
    model, regs, buffers, _ = _model_case(p, 20, [random_mask(20, 0.5, seed=4)] * 2)
    assert model.run({**regs, "tokens": 0}, buffers).errors == Errors.TOKENS
    assert model.run({**regs, "tokens": 41}, buffers).errors == Errors.TOKENS
    assert model.run({**regs, head_register("nnz", 1): 513}, buffers).errors == Errors.CAPACITY
    assert model.run({**regs, head_register("globals", 0): 9}, buffers).errors == Errors.CAPACITY
    # a skipped head's registers are not checked
    assert model.run({**regs, "head_mask": 2, head_register("nnz", 1): 513}, buffers).errors == 0
    # a malformed list in head 1: head 0 is written, head 1 not
    buffers["csr"].words[p.sparse_capacity + 3] ^= 1
    result = model.run(regs, buffers)
    assert result.errors == Errors.INDEX and result.result_words == 20


def test_plan_rejects_masks_the_engine_cannot_take():
    p = VitcodParams(**SMALL)
    q = torch.zeros(10, 16, dtype=torch.int64)
    mask = torch.ones(10, 10, dtype=torch.bool)
    mask[3] = False
    with pytest.raises(ValueError, match="mask must keep at least one entry in every row, "
                                         "not none in row 3"):
        plan_head(p, q, q, q, mask)
    tight = VitcodParams(**{**SMALL, "sparse_capacity": 8})
    with pytest.raises(ValueError, match="mask must fit the engine: 100 sparse entries after "
                                         "0 global columns, capacity 8"):
        plan_head(tight, q, q, q, random_mask(10, 0.1, seed=0) | True)


def test_dense_plan_matches_float_attention():
    p = VitcodParams(**SMALL)
    torch.manual_seed(5)
    q, k, v = (torch.randint(-128, 128, (12, 16)) for _ in range(3))
    plan = plan_head(p, q, k, v, None)
    assert plan.globals == 0 and plan.nnz == 144        # 12 rows < the threshold of 50
    scales, step = calibrate_head(plan, p)
    y = attention_head_int(plan.q, plan.k, plan.v, plan.kept, scales, p)
    real = masked_softmax_attention(q.double(), k.double(), v.double(), torch.ones(12, 12, dtype=torch.bool))
    assert (y.double() * step - real).abs().max() <= 1.5 * step
