"""Runs of the Taylor-attention pipeline with their golden outputs, as stream beats.

A run is a dict (JSON-ready) for sim/tb/taylor_tb.py:
  tokens, head_mask, registers {ctx_shift, v_mult, v_shift, out_mult_<h>, out_shift_<h>}
           (the pipeline's setting ports, every head's output registers),
  beats    the input stream: per kept head, N tokens of (K row, V row), then N Q rows,
           8 elements per beat, `last` on the final beat of each block;
  expected the output stream: N rows per kept head, `last` on a head's final beat.
"""

import dataclasses

import torch

from celine.golden.taylor import TaylorRegisters, calibrate, taylor_head_int, taylor_int
from celine.engines.taylor.spec import LANES, TaylorParams


def _blocks_to_beats(rows):
    """Rows (tensor M x d) -> beats of LANES elements, `last` on the final one."""
    flat = rows.reshape(-1, LANES).tolist()
    return [{"data": lanes, "last": int(n == len(flat) - 1)} for n, lanes in enumerate(flat)]


def stream_beats(q, k, v, head_mask=0):
    """The input beats for q, k, v (H x N x d int tensors) with the masked heads left out."""
    beats = []
    for h in range(q.shape[0]):
        if head_mask >> h & 1:
            continue
        kv = torch.cat([k[h], v[h]], dim=1)          # token i: K_i then V_i
        beats += _blocks_to_beats(kv)
        beats += _blocks_to_beats(q[h])
    return beats


def output_beats(outputs):
    beats = []
    for out in outputs:
        beats += _blocks_to_beats(out)
    return beats


KINDS = ("random", "most_negative", "extreme")


def operands(params: TaylorParams, tokens, *, seed, kind="random"):
    """q, k, v (heads x tokens x head_dim) of one `kind`:
    random         uniform over the operand range;
    most_negative  every operand the most negative value (the largest token sums and K^T V);
    extreme        Q most negative, K and V each the most negative or the largest value at
                   random (the largest |G|, and with ctx_shift 0 a saturated context)."""
    lo, hi = params.operand_range
    shape = (params.heads, tokens, params.head_dim)
    gen = torch.Generator().manual_seed(seed)
    if kind == "random":
        return tuple(torch.randint(lo, hi + 1, shape, generator=gen) for _ in range(3))
    if kind == "most_negative":
        return tuple(torch.full(shape, lo, dtype=torch.int64) for _ in range(3))
    if kind == "extreme":
        pick = lambda: torch.where(torch.rand(shape, generator=gen) < 0.5, lo, hi)  # noqa: E731
        return torch.full(shape, lo, dtype=torch.int64), pick(), pick()
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")


def extreme_registers(params: TaylorParams, q, k, v):
    """The widest settings (ctx_shift 0, v_mult 65535, v_shift 0, out_mult 1) with the
    output shift that brings the largest quotient to the top of the output range, so
    that overflow anywhere upstream would show in the output."""
    probe = TaylorRegisters(ctx_shift=0, v_mult=65535, v_shift=0, out_mult=1, out_shift=0)
    largest = max(int(taylor_head_int(q[h], k[h], v[h], probe, width=params.operand_width,
                                      max_tokens=params.max_tokens).quotient.abs().max())
                  for h in range(q.shape[0]))
    shift = max(0, largest.bit_length() - (params.operand_width - 1))
    return dataclasses.replace(probe, out_shift=shift)


def make_run(params: TaylorParams, tokens, *, seed=1, head_mask=0, kind="random",
             registers=None):
    """One run: operands drawn by `kind`, registers calibrated on them unless given
    (random operands: at scale 2^-(w-1), each head's output scale from its own data, so
    the heads' output registers differ)."""
    q, k, v = operands(params, tokens, seed=seed, kind=kind)
    if registers is None and kind != "random":
        registers = extreme_registers(params, q, k, v)
    if registers is None:
        scale = 1.0 / (1 << (params.operand_width - 1))
        registers = calibrate(q, k, v, scales=(scale, scale, scale), head_mask=head_mask,
                              width=params.operand_width)
    outputs = taylor_int(q, k, v, registers, head_mask=head_mask, width=params.operand_width,
                         max_tokens=params.max_tokens)
    return {
        "tokens": tokens,
        "head_mask": head_mask,
        "registers": registers.values(params.heads),
        "beats": stream_beats(q, k, v, head_mask),
        "expected": output_beats(outputs),
    }


__all__ = ["make_run", "operands", "stream_beats", "output_beats", "TaylorRegisters"]
