"""Analytical cycle model of the ViTCoD engine (rtl/vitcod/core.py), from the parameters,
N and the structure of each head's polarized mask: g and the kept entries of each row.

A run: `start`, then (with the auto-encoder) its encode and decode runs, then per kept
head phase 1 (the SDDMM engines and the list checks at once; the slowest decides) and
phase 2 (the softmax unit streams each row's entries to the SpMM, which takes
d/min(M, d) cycles an entry and at least d/out_lanes cycles a row; a row's
probabilities wait for its reciprocal, so phase 2 runs a row behind the softmax unit's
first stage). The constants are the RTL's latencies (named after what they wait for);
tests/test_vitcod_cycles.py holds the model against RTL simulation.
"""

from dataclasses import dataclass

from .. import CycleEstimate
from ...spec.checks import check_int
from ...spec.numerics import REQUANT_LATENCY
from .spec import (AE_STEPS, CSC_READ_LATENCY, CSR_CHECK_TAIL, CSR_READ_LATENCY, EXP_LATENCY,
                   INDEX_CHECK_LATENCY, MAC_BANK_LATENCY, QK_READ_LATENCY, V_OPERAND_REGISTER,
                   V_READ_LATENCY, VitcodParams, ae_shape)

# Phase 1: cycles from the phase's start pulse to its last unit's busy falling.
# Last dense job issued -> busy low, beyond the job's t slices and the engine's n DPUs:
# the MAC bank, then the score chain's stages; likewise for the sparse engine.
DENSE_TAIL = MAC_BANK_LATENCY + 9 + QK_READ_LATENCY
SPARSE_TAIL = MAC_BANK_LATENCY + CSC_READ_LATENCY + 11 + QK_READ_LATENCY   # (RowMax's 4
                                                                        # stages in it)
CHECK_TAIL = CSR_CHECK_TAIL   # CsrCheck: g + nnz + 6
INDEX_TAIL = 1 + INDEX_CHECK_LATENCY   # IndexCheck: nnz + 7 (never the last: the sparser
                                       # engine's scores come later)
# Phase 2.
FIRST_ENTRY = 4        # phase start -> the softmax unit's first entry into the ExpUnit,
                       # less STAGE_1B
STAGE_1B = 1           # the softmax's score and row maximum registered before the
                       # subtraction (not on the walk's schedule: the CSR entries' waits)
SPARSE_FIRST = CSR_READ_LATENCY + 3   # ... the first CSR entry, at the earliest: the
                                      # prefetch's read, queue and head register
RECIP_TO_P = 16        # the row sum -> its first p offered (beyond the divider's stages)
# The last row's end on the bank -> busy low (plus d / out_lanes): v's read latency beyond
# 1 and the SpMM's operand register, the bank's stages beyond 2, then the output stage's
# requantizers, less the 2 cycles they overlap the bank's last row.
SPMM_TAIL = (V_READ_LATENCY - 1 + V_OPERAND_REGISTER + MAC_BANK_LATENCY - 2
             + REQUANT_LATENCY - 2)
# The core's sequencer.
RUN_SETUP = 2          # start -> the first head's phase 1 (NEXT_HEAD, LOAD; the last head's
                       # HEAD_TURN ends in DONE instead of LOAD)
PHASE_TURN = 5         # phase 1's last busy -> phase 2's start pulse (the registered
                       # idle, WAIT_A, PRE_B, START_B)
HEAD_TURN = 5          # phase 2 done -> the next head's phase 1 (the registered idle,
                       # WAIT_B, ADVANCE, NEXT_HEAD, LOAD)
SKIP_TURN = 2          # a skipped head (NEXT_HEAD, ADVANCE)
DECODE_TURN = 2        # with the auto-encoder built in: the sequencer's visits of Q's and
                       # K's decode (AE), whether they run or not
ENCODE_TURN = 2        # ... and of Q's and K's encode, before them


def issue_cycle(job, dpus, slices, beats=1):
    """The cycle (from the engine's start) its DPU array issues job `job` (0-based): DPU k
    in slot k·beats of each period of `slices` (row_beats: a row takes beats cycles)."""
    return (job // dpus) * slices + (job % dpus) * beats


@dataclass(frozen=True)
class HeadWork:
    """The structure of one head's polarized mask: g global columns and the kept sparse
    entries of each row (N rows)."""
    globals: int
    row_nnz: tuple

    @property
    def tokens(self):
        return len(self.row_nnz)

    @property
    def nnz(self):
        return sum(self.row_nnz)

    @property
    def work(self):
        """W: g*N dense scores + the sparse kept entries."""
        return self.globals * self.tokens + self.nnz


def phase_1(p, head):
    tokens, g, nnz = head.tokens, head.globals, head.nnz
    beats = p.beats                   # a row read takes beats cycles, beats - 1 more
    ends = [1]
    if g:
        ends.append(issue_cycle(g * tokens - 1, p.dense_dpus, p.slices, beats) + p.slices
                    + DENSE_TAIL + p.dense_dpus + beats - 1)
    if nnz:
        ends.append(issue_cycle(nnz - 1, p.sparse_dpus, p.slices, beats) + p.slices
                    + SPARSE_TAIL + p.sparse_dpus + beats - 1)
    if g or nnz:
        ends.append(g + nnz + CHECK_TAIL)
    if nnz:
        ends.append(nnz + INDEX_TAIL)
    return max(ends)


def phase_2(p, head):
    """Row by row: the softmax unit's first stage streams entries one a cycle; row i's p
    can leave once its sum went through the divider; the SpMM takes d/M cycles an entry,
    and a row's last entry waits until the output stage is free (a row every d/out_lanes
    cycles)."""
    g = head.globals
    spmm, floor = p.spmm_cycles, p.head_dim // p.out_lanes
    fed = FIRST_ENTRY                                 # the first stage's next free cycle
    # The CSR prefetch's first word: the walk's first CSR entry waits for it (with g
    # dense columns first, only the part of the wait they do not cover).
    sparse_from = FIRST_ENTRY + SPARSE_FIRST
    done = None                                       # the previous row's end on the bank
    for nnz in head.row_nnz:
        length = g + nnz
        fed += g
        if nnz:
            fed = max(fed, sparse_from) + nnz
        ready = fed + STAGE_1B + EXP_LATENCY + p.recip_width + RECIP_TO_P
        if done is None:
            done = ready + length * spmm
        else:
            done = max(max(ready, done) + length * spmm, done + floor)
    return done + floor + SPMM_TAIL


def dense_columns(params, head, capacity_left=None):
    """How many of `head`'s g global columns the denser engine should compute (the fastest
    head by this model; ties: more of them). The others go to the sparser engine as whole
    columns of the sparse region (one more kept entry in every row each), which computes
    them as fast: with few global columns and a narrow denser engine (g = 1 and 8 of 64
    MAC units: 197·8 cycles dense against 946·8/7 sparse on DeiT-Tiny layer 3, head 0)
    that shortens phase 1. `capacity_left`: sparse entries the head may still add (None:
    any); the same result, bit for bit, whichever engine computes a score."""
    p, g, tokens = params, head.globals, head.tokens
    lowest = 0 if capacity_left is None else max(0, g - capacity_left // max(1, tokens))
    if p.dense_macs == 0:
        return 0
    if p.sparse_macs == 0:
        return g
    best = None
    for kept in range(g, lowest - 1, -1):
        work = HeadWork(kept, tuple(n + g - kept for n in head.row_nnz))
        total = phase_1(p, work) + phase_2(p, work)
        if best is None or total < best[0]:
            best = (total, kept)
    return best[1]


def balanced(params, head, capacity_left=None):
    """`head` as the host runs it with balancing (dense_columns): the global columns the
    denser engine does not take added to every row's sparse entries."""
    kept = dense_columns(params, head, capacity_left)
    return HeadWork(kept, tuple(n + head.globals - kept for n in head.row_nnz))


def sized_split(works, *, head_dim, max_tokens, total_macs, out_lanes=16, granule=8):
    """The split (dense_macs, sparse_macs) of `total_macs` (whole `granule`s, each engine
    at most head_dim) that runs the heads `works` (HeadWork, their full global columns) in
    the fewest cycles by this model, each head balanced (dense_columns); ties go to the
    larger denser engine. A split without a sparser engine takes only heads with no sparse
    entries."""
    check_int("granule", granule, minimum=1)
    check_int("total_macs", total_macs, minimum=granule)
    if total_macs % granule:
        raise ValueError(f"total_macs must be a multiple of granule ({granule}), "
                         f"not {total_macs!r}")
    works = list(works)
    widest = max((w.globals for w in works), default=0)
    best = None
    for dense in range(total_macs, -1, -granule):
        sparse = total_macs - dense
        if dense > head_dim or sparse > head_dim:
            continue
        if sparse == 0 and any(w.nnz for w in works):
            continue
        if dense == 0 and sparse == 0:
            continue
        params = VitcodParams(head_dim=head_dim, max_tokens=max_tokens, heads=1,
                              dense_macs=dense, sparse_macs=sparse,
                              max_global=max(1, widest) if dense else 0,
                              sparse_capacity=max_tokens * max_tokens if sparse else 0,
                              out_lanes=out_lanes)
        total = sum(cycles(params, [balanced(params, w)]) for w in works)
        if best is None or total < best[0]:
            best = (total, dense, sparse)
    if best is None:
        raise ValueError(f"total_macs ({total_macs}) cannot be split into two engines of at "
                         f"most head_dim ({head_dim}) MAC units for these heads")
    return best[1], best[2]


def decode_phase(p, tokens, ae_enable):
    """The auto-encoder phase of an engine built with it: ENCODE_TURN + DECODE_TURN (the
    sequencer's visits of the four steps), plus one run over N tokens per set bit of
    `ae_enable` (spec.AeEnable): an AeEncoder run (H heads -> C code rows) per encode bit,
    an AeDecoder run (C -> H) per decode bit (ae_codec.mixer_cycles). 0 for an engine
    without it."""
    if not p.autoencoder:
        return 0
    from ...rtl.vitcod.ae_codec import mixer_cycles      # Amaranth: only when needed
    total = ENCODE_TURN + DECODE_TURN
    for flag, _, part in AE_STEPS:
        if ae_enable & flag:
            out_rows, in_rows = ae_shape(p, part)          # the weights: out_rows x in_rows
            total += mixer_cycles(p, in_rows, out_rows, tokens)
    return total


def check_capacity(params, globals_, nnz):
    """Raise ValueError when a head of `globals_` global columns and `nnz` sparse entries
    does not fit the engine (the host refuses it, and the engine would flag it and run
    nothing: spec.Errors.CAPACITY)."""
    if globals_ > params.max_global:
        raise ValueError(f"mask must fit the engine: {globals_} global columns, "
                         f"max_global {params.max_global}")
    if nnz > params.sparse_capacity:
        raise ValueError(f"mask must fit the engine: {nnz} sparse entries after "
                         f"{globals_} global columns, capacity {params.sparse_capacity}")


def cycles(params: VitcodParams, heads, head_mask: int = 0, ae_enable: int = 0):
    """Cycles of one run over `heads` (a HeadWork per head of the engine; skipped heads'
    entries are ignored; N is the kept heads' token count); N outside 1 .. max_tokens
    raises ValueError. `ae_enable` (spec.AeEnable, only with params.autoencoder): the
    encoders and decoders that run before the heads (decode_phase). A head that does not
    fit the engine (check_capacity) raises ValueError."""
    p = params
    total = RUN_SETUP
    kept = [(h, head) for h, head in enumerate(heads) if not head_mask >> h & 1]
    for h, head in kept:
        if not 1 <= head.tokens <= p.max_tokens:
            raise ValueError(f"tokens must be between 1 and {p.max_tokens}, not {head.tokens!r}")
        check_capacity(p, head.globals, head.nnz)
        total += phase_1(p, head) + PHASE_TURN + phase_2(p, head) + HEAD_TURN
    total += SKIP_TURN * (len(heads) - len(kept))
    if p.autoencoder:
        tokens = (kept or list(enumerate(heads)))[0][1].tokens
        total += decode_phase(p, tokens, ae_enable)
    return total


def random_head(tokens, sparsity, *, seed=0, threshold=50, max_global=None):
    """The HeadWork of a random mask (celine.golden.vitcod.mask.random_mask), polarized."""
    from ...golden.vitcod.mask import polarize, random_mask
    polar = polarize(random_mask(tokens, sparsity, seed=seed), threshold=threshold)
    return work_of(polar, max_global)


def work_of(polar, max_global=None):
    """The HeadWork of a polarized mask (celine.golden.vitcod.mask.Polarized): its global
    columns, or with `max_global` at most that many of them, the others whole columns of
    the sparse region (as plan_head sends them)."""
    g = polar.globals
    dense = g if max_global is None else min(g, max_global)
    return HeadWork(dense, tuple(int(n) + g - dense for n in polar.kept[:, g:].sum(dim=1)))


def work_of_plan(plan):
    """The HeadWork of a HeadPlan (celine.golden.vitcod.plan): its g global columns and,
    per row, its kept entries outside them (the mask is in token order)."""
    g = plan.globals
    return HeadWork(g, tuple(int(n) - g for n in plan.kept.sum(dim=1)))


def load_mask_file(path):
    """The kept masks (M, N, N) of a .npy file of bool masks (..., N, N) in the shipped
    ViTCoD format (True = pruned), e.g. data/vitcod/deit_tiny_mask_0.95_layers00-05.npy."""
    import numpy
    import torch
    try:
        array = numpy.load(path)
    except (OSError, ValueError) as error:
        raise ValueError(f"mask must be a readable .npy file, not {path!r} ({error})") from None
    if array.dtype != bool or array.ndim < 2 or array.shape[-1] != array.shape[-2]:
        raise ValueError(f"mask must hold bool masks (..., N, N), not {array.dtype} "
                         f"{array.shape}")
    return ~torch.from_numpy(array.reshape(-1, *array.shape[-2:]))


def estimate(params: VitcodParams, tokens: int = 197, sparsity: float = 0.95,
             heads: int = 1, seed: int = 0, mask: str = None) -> CycleEstimate:
    """The estimate for `heads` heads of a random mask at `sparsity` (polarized for the
    engine's max_global), or, with `mask` (a .npy file, see load_mask_file), for each mask
    in the file run as one head after another (balanced as the host runs them:
    dense_columns). With a mask file the notes suggest the split of the engine's MAC units
    sized for those masks: `suggested_split` the fastest by this model (sized_split),
    `work_split` the split of their work (dense share g·N / W summed over them):
    `celine params vitcod --workload mask=FILE`."""
    if mask is None:
        head = random_head(tokens, sparsity, seed=seed, max_global=params.max_global)
        work = balanced(params, head, max(0, params.sparse_capacity - head.nnz))
        total = cycles(params, [work] * heads)
        return CycleEstimate(total, heads * params.useful_macs(work.work), params.mac_units)
    from ...golden.vitcod.mask import polarize, split_macs
    kept = load_mask_file(mask)
    if kept.shape[-1] > params.max_tokens:
        raise ValueError(f"mask must have at most max_tokens ({params.max_tokens}) tokens, "
                         f"not {kept.shape[-1]}")
    polars = [polarize(m) for m in kept]
    heads = [work_of(p, params.max_global) for p in polars]
    works = [balanced(params, h, max(0, params.sparse_capacity - h.nnz)) for h in heads]
    total = sum(cycles(params, [w]) for w in works)
    dense, sparse = split_macs(polars, params.mac_units, 8)
    fast_dense, fast_sparse = sized_split([work_of(p) for p in polars],
                                          head_dim=params.head_dim, max_tokens=kept.shape[-1],
                                          total_macs=params.mac_units,
                                          out_lanes=params.out_lanes)
    dense_work = sum(p.globals * p.tokens for p in polars)
    notes = {"masks": len(works),
             "suggested_split": {"dense_macs": fast_dense, "sparse_macs": fast_sparse},
             "work_split": {"dense_macs": dense, "sparse_macs": sparse},
             "dense_share": round(dense_work / max(1, sum(p.work for p in polars)), 4)}
    return CycleEstimate(total, sum(params.useful_macs(w.work) for w in works),
                         params.mac_units, notes)
