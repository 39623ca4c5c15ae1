"""ViTCoD engine cases: buffers, registers and the golden result of a run, built from
integer q, k, v and kept masks through the host's plan (celine/golden/vitcod/plan.py), for
the adapter and shell testbenches and the benchmark."""

from dataclasses import dataclass, field

import torch

from ..engines.vitcod.spec import head_register, row_words
from ..golden.shell import Buffer
from ..golden.vitcod.engine_model import VitcodEngineModel
from ..golden.vitcod.plan import calibrate_head, plan_head

__all__ = ["VitcodCase", "make_case", "random_heads"]


@dataclass
class VitcodCase:
    """One run: `contents` {buffer: words} as the host leaves them, `settings` {register:
    value}, and what the golden engine model makes of them (`expected`, a RunResult)."""
    params: object
    tokens: int
    contents: dict
    settings: dict
    expected: object
    plans: list = field(default_factory=list)


def random_heads(params, tokens, heads, *, seed, extreme=False):
    """`heads` random (q, k, v) triples of int operands ((tokens, d) each); with `extreme`
    every operand is the most negative value."""
    generator = torch.Generator().manual_seed(seed)
    lo, hi = params.operand_range
    out = []
    for _ in range(heads):
        if extreme:
            out.append(tuple(torch.full((tokens, params.head_dim), lo, dtype=torch.int64)
                             for _ in range(3)))
        else:
            out.append(tuple(torch.randint(lo, hi + 1, (tokens, params.head_dim),
                                           generator=generator) for _ in range(3)))
    return out


def make_case(params, tokens, masks, *, seed=0, head_mask=0, extreme=False, qkv=None,
              settings=None, threshold=50, balance=False):
    """The case of a run over `masks` (one kept mask or None (dense) per head of the
    engine; a skipped head's entry is ignored), polarized with `threshold` (and `balance`:
    plan_head)."""
    p = params
    model = VitcodEngineModel(p)
    buffers = {spec.name: Buffer(spec) for spec in model.buffer_specs}
    regs = model.register_map.reset_values()
    regs.update(tokens=tokens, head_mask=head_mask)
    qkv = qkv or random_heads(p, tokens, len(masks), seed=seed, extreme=extreme)
    plans = []
    for h, (mask, (q, k, v)) in enumerate(zip(masks, qkv)):
        if head_mask >> h & 1:
            continue
        plan = plan_head(p, q, k, v, mask, threshold=threshold, balance=balance)
        scales, _ = calibrate_head(plan, p)
        plans.append(plan)
        for name in ("q", "k", "v"):
            for i in range(tokens):
                row = (h * p.max_tokens + i) * p.beats
                for j, word in enumerate(row_words(p, getattr(plan, name)[i].tolist())):
                    buffers[name].words[row + j] = word
        for n, (a, b) in enumerate(zip(plan.csc_words, plan.csr_words)):
            buffers["csc"].words[h * p.sparse_capacity + n] = a
            buffers["csr"].words[h * p.sparse_capacity + n] = b
        for j, col in enumerate(plan.gcols):
            buffers["gcols"].words[h * p.max_global + j] = col
        regs.update({head_register("globals", h): plan.globals,
                     head_register("nnz", h): plan.nnz,
                     head_register("exp_mult", h): scales.exp_mult,
                     head_register("exp_shift", h): scales.exp_shift,
                     head_register("out_mult", h): scales.out_mult,
                     head_register("out_shift", h): scales.out_shift})
    regs.update(settings or {})
    contents = {name: list(buffer.words) for name, buffer in buffers.items()}
    expected = model.run(regs, buffers)
    return VitcodCase(p, tokens, contents, regs, expected, plans)
