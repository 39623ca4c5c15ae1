"""Analytical cycle model of the ViTCoD engine (rtl/vitcod/core.py), from the parameters,
N and the structure of each head's polarized mask: g and the kept entries of each row.

A run: `start`, then (with the auto-encoder) the decode phase, then per kept head phase 1 (the SDDMM engines and the list checks at once;
the slowest decides) and phase 2 (the softmax unit streams each row's entries to the SpMM,
which takes d/M cycles an entry and at least d/out_lanes cycles a row; a row's
probabilities wait for its reciprocal, so phase 2 runs a row behind the softmax unit's
first stage). The constants are the RTL's latencies (named after what they wait for);
tests/test_vitcod_cycles.py holds the model against RTL simulation.
"""

from dataclasses import dataclass

from .. import CycleEstimate
from .spec import VitcodParams

# Phase 1: cycles from the phase's start pulse to its last unit's busy falling.
DENSE_TAIL = 13        # last dense job issued -> busy low, beyond the job's t slices
SPARSE_TAIL = 15       # last sparse job issued -> busy low, beyond the job's t slices
CHECK_TAIL = 3         # CsrCheck: g + nnz + 3 (IndexCheck: nnz + 3)
# Phase 2.
EXP_LATENCY = 8        # ExpUnit
FIRST_ENTRY = 4        # phase start -> the softmax unit's first entry into the ExpUnit
SPARSE_FIRST = 3       # ... later when the row's first entry is a CSR one (g = 0)
RECIP_TO_P = 16        # the row sum -> its first p offered (beyond the divider's stages)
SPMM_TAIL = 2          # the last row's end on the bank -> busy low (plus d / out_lanes)
# The core's sequencer.
RUN_SETUP = 2          # start -> the first head's phase 1 (IDLE, NEXT_HEAD)
PHASE_TURN = 3         # phase 1's last busy -> phase 2's start pulse (WAIT_A, START_B)
HEAD_TURN = 2          # phase 2 done -> the next head's phase 1 (WAIT_B, NEXT_HEAD)
DECODE_TURN = 2        # with the auto-encoder built in: the sequencer's visits of Q's and
                       # K's decode (DECODE), whether they run or not


def issue_cycle(job, dpus, slices):
    """The cycle (from the engine's start) its DPU array issues job `job` (0-based)."""
    return (job // dpus) * slices + job % dpus


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
    ends = [1]
    if g:
        ends.append(issue_cycle(g * tokens - 1, p.dense_dpus, p.slices) + p.slices + DENSE_TAIL)
    if nnz:
        ends.append(issue_cycle(nnz - 1, p.sparse_dpus, p.slices) + p.slices + SPARSE_TAIL)
    if g or nnz:
        ends.append(g + nnz + CHECK_TAIL)
    return max(ends)


def phase_2(p, head):
    """Row by row: the softmax unit's first stage streams entries one a cycle; row i's p
    can leave once its sum went through the divider; the SpMM takes d/M cycles an entry,
    and a row's last entry waits until the output stage is free (a row every d/out_lanes
    cycles)."""
    g = head.globals
    spmm, floor = p.spmm_cycles, p.head_dim // p.out_lanes
    fed = FIRST_ENTRY + (0 if g else SPARSE_FIRST)    # the first stage's next free cycle
    done = None                                       # the previous row's end on the bank
    for nnz in head.row_nnz:
        length = g + nnz
        fed += length
        ready = fed + EXP_LATENCY + p.recip_width + RECIP_TO_P
        if done is None:
            done = ready + length * spmm
        else:
            done = max(max(ready, done) + length * spmm, done + floor)
    return done + floor + SPMM_TAIL


def decode_phase(p, tokens, ae_enable):
    """The decode phase of an engine built with the auto-encoder: DECODE_TURN, plus for each
    set bit of `ae_enable` (Q, K) one AeDecoder run over N tokens (C code rows -> H heads,
    ae_codec.mixer_cycles). 0 for an engine without it."""
    if not p.autoencoder:
        return 0
    from ...rtl.vitcod.ae_codec import mixer_cycles      # Amaranth: only when needed
    runs = bin(ae_enable & 0b11).count("1")
    return DECODE_TURN + runs * mixer_cycles(p, p.code_heads, p.heads, tokens)


def cycles(params: VitcodParams, heads, head_mask: int = 0, ae_enable: int = 0):
    """Cycles of one run over `heads` (a HeadWork per head of the engine; skipped heads'
    entries are ignored; N is the kept heads' token count); N outside 1 .. max_tokens
    raises ValueError. `ae_enable`: the decoders that run first (bit 0 Q, bit 1 K; only
    with params.autoencoder)."""
    p = params
    total = RUN_SETUP
    kept = [(h, head) for h, head in enumerate(heads) if not head_mask >> h & 1]
    for h, head in kept:
        if not 1 <= head.tokens <= p.max_tokens:
            raise ValueError(f"tokens must be between 1 and {p.max_tokens}, not {head.tokens!r}")
        total += phase_1(p, head) + PHASE_TURN + phase_2(p, head) + HEAD_TURN
    if p.autoencoder:
        tokens = (kept or list(enumerate(heads)))[0][1].tokens
        total += decode_phase(p, tokens, ae_enable)
    return total


def random_head(tokens, sparsity, *, seed=0, globals_=None, threshold=50, max_global=None):
    """The HeadWork of a random mask (celine.golden.vitcod.mask.random_mask), polarized."""
    from ...golden.vitcod.mask import polarize, random_mask
    polar = polarize(random_mask(tokens, sparsity, seed=seed), threshold=threshold,
                     max_global=max_global)
    return work_of(polar)


def work_of(polar):
    """The HeadWork of a polarized mask (celine.golden.vitcod.mask.Polarized)."""
    g = polar.globals
    return HeadWork(g, tuple(int(n) for n in polar.kept[:, g:].sum(dim=1)))


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


def estimate(params: VitcodParams, tokens: int = 197, sparsity: float = 0.9,
             heads: int = 1, seed: int = 0, mask: str = None) -> CycleEstimate:
    """The estimate for `heads` heads of a random mask at `sparsity` (polarized for the
    engine's max_global), or, with `mask` (a .npy file, see load_mask_file), for each mask
    in the file run as one head after another. With a mask file the notes suggest the
    split of the engine's MAC units sized for those masks (dense share g·N / W summed over
    them): `celine params vitcod --workload mask=FILE`."""
    if mask is None:
        work = random_head(tokens, sparsity, seed=seed, max_global=params.max_global)
        total = cycles(params, [work] * heads)
        return CycleEstimate(total, heads * params.useful_macs(work.work), params.mac_units)
    from ...golden.vitcod.mask import polarize, split_macs
    kept = load_mask_file(mask)
    if kept.shape[-1] > params.max_tokens:
        raise ValueError(f"mask must have at most max_tokens ({params.max_tokens}) tokens, "
                         f"not {kept.shape[-1]}")
    polars = [polarize(m) for m in kept]
    works = [work_of(polarize(m, max_global=params.max_global)) for m in kept]
    total = sum(cycles(params, [w]) for w in works)
    dense, sparse = split_macs(polars, params.mac_units, 8)
    dense_work = sum(p.globals * p.tokens for p in polars)
    notes = {"masks": len(works), "suggested_split": {"dense_macs": dense, "sparse_macs": sparse},
             "dense_share": round(dense_work / max(1, sum(p.work for p in polars)), 4)}
    return CycleEstimate(total, sum(params.useful_macs(w.work) for w in works),
                         params.mac_units, notes)
