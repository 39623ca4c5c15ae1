"""The Taylor-attention shell's Verilog end to end: host runtime (dev.taylor.attention) ->
UART -> shell -> TaylorShellAdapter -> TaylorPipeline, bit-exact against golden/taylor.py."""

import dataclasses
import json

import pytest
import torch

from celine.golden.quant import quantize
from celine.golden.taylor import (TaylorRegisters, calibrate, random_inputs, taylor_attention,
                           taylor_int)
from celine.rtl.shell.shell import build_shell
from celine.engines.taylor.spec import TaylorParams
from celine.sim.runner import run_cocotb

CLOCK_HZ = 100_000_000          # the testbench clock (10 ns)
SHELL = dict(clock_hz=CLOCK_HZ, baud=CLOCK_HZ // 4, max_payload=1024, timeout_bits=64)
POINTS = {
    "small": TaylorParams(head_dim=16, max_tokens=16, mac_units=4, heads=2),
    "deit-tiny": TaylorParams(),            # head_dim 64, max_tokens 256, 16 MACs, 3 heads
}


def design(point):
    return build_shell(accel="taylor", accel_params=POINTS[point], **SHELL)


def quantized_heads(heads, tokens, head_dim, seed, width=8):
    """Float heads (standard normal, as golden.taylor.random_inputs) quantized per tensor:
    (q, k, v int64 H x N x d, scales (s_q, s_k, s_v), the float Taylor output's scale)."""
    floats = [random_inputs(tokens, head_dim, seed=seed + h) for h in range(heads)]
    q, k, v = (torch.stack([f[n] for f in floats]) for n in range(3))
    peak = (1 << (width - 1)) - 1
    scales = tuple(float(x.abs().max()) / peak for x in (q, k, v))
    ints = tuple(quantize(x, s, width) for x, s in zip((q, k, v), scales))
    out_scale = float(taylor_attention(q, k, v).abs().max()) / peak
    return ints, scales, out_scale


def job(params, q, k, v, *, head_mask=0, registers=None, scales=None, out_scale=None):
    kept = [h for h in range(q.shape[0]) if not head_mask >> h & 1]
    regs = registers or calibrate(q, k, v, scales=scales, out_scale=out_scale,
                                  head_mask=head_mask)
    expected = taylor_int(q, k, v, regs, head_mask=head_mask, max_tokens=params.max_tokens)
    tokens = q.shape[1]
    # the ideal 2 N d^2 / M MAC cycles a head, plus centering (d^2 / c) and some slack
    per_head = 2 * tokens * params.blocks + params.head_dim ** 2 // params.tile_cols
    single = q.shape[0] == 1 and head_mask == 0
    item = {"q": (q[0] if single else q).tolist(), "k": (k[0] if single else k).tolist(),
            "v": (v[0] if single else v).tolist(), "head_mask": head_mask,
            "expected": [x.tolist() for x in expected],
            "expected_registers": dataclasses.asdict(regs),
            "max_cycles": len(kept) * (per_head + 100)}
    if registers is not None:
        item["registers"] = dataclasses.asdict(registers)
    else:
        item.update(scales=None if scales is None else list(scales), out_scale=out_scale)
    return item


def run_point(request, point, jobs):
    shell = design(point)
    directory = run_cocotb(shell, toplevel=f"taylor_shell_{point.replace('-', '_')}",
                           test_module="celine.sim.tb.taylor_shell_tb", case_id=request.node.nodeid,
                           testcase="attention_end_to_end",
                           params={"taylor": POINTS[point].to_dict(), "shell": SHELL},
                           data={"attention": jobs, "info": json.loads(shell.info)}, optimize=True)
    return json.loads((directory / "attention.json").read_text())


@pytest.mark.cocotb
def test_attention_end_to_end_small(request):
    """Two heads of 9 tokens (head 0 skipped), one head with given registers, and two heads
    with the default calibration (an output scale per head)."""
    p = POINTS["small"]
    (q, k, v), scales, out_scale = quantized_heads(2, 9, 16, seed=1)
    q[1, 0, 0] = k[1, 0, 0] = v[1, 0, 0] = -128            # the most negative operand
    # about 5x the calibrated output scale: a quarter of the outputs saturate
    regs = TaylorRegisters(ctx_shift=5, v_mult=27961, v_shift=3, out_mult=60000, out_shift=25)
    (q1, k1, v1), _, _ = quantized_heads(1, 16, 16, seed=7)
    (q2, k2, v2), _, _ = quantized_heads(2, 5, 16, seed=3)
    v2[1] //= 8                                  # head 1's outputs are much smaller
    jobs = [job(p, q, k, v, head_mask=0b01, scales=scales, out_scale=out_scale),
            job(p, q1, k1, v1, registers=regs),
            job(p, q2, k2, v2)]                  # the defaults: each head its own scale
    run_point(request, "small", jobs)


@pytest.mark.cocotb
@pytest.mark.sweep          # make sim; make test runs the small one
def test_attention_end_to_end_deit_tiny_head(request):
    """One DeiT-Tiny head (N = 197, d = 64) on the default engine (16 MACs, 3 heads). About
    6 minutes beside another job on 2 cores (Verilator build 2.5, run 3.5: 23 ms simulated,
    50 kB over the UART at 25 Mbaud)."""
    p = POINTS["deit-tiny"]
    (q, k, v), scales, out_scale = quantized_heads(1, 197, 64, seed=197)
    cycles = run_point(request, "deit-tiny",
                       [job(p, q, k, v, scales=scales, out_scale=out_scale)])["cycles"]
    print(f"DeiT-Tiny head: {cycles[0]} cycles")
