"""The ViTCoD shell's Verilog end to end: host runtime (dev.vitcod.sparse_attention) ->
UART -> shell -> VitcodShellAdapter, bit-exact against the golden model, with the cycles
of each run within 2% of the cycle model."""

import json

import pytest
import torch

from celine.engines.vitcod.cycles import HeadWork, cycles as model_cycles, work_of_plan
from celine.engines.vitcod.spec import VitcodParams
from celine.golden.vitcod.attention import attention_head_int
from celine.golden.vitcod.mask import load_deit_masks, random_mask
from celine.golden.vitcod.plan import calibrate_head, plan_head
from celine.rtl.shell.shell import build_shell
from celine.sim.runner import run_cocotb

CLOCK_HZ = 100_000_000
SHELL = dict(clock_hz=CLOCK_HZ, baud=CLOCK_HZ // 4, max_payload=1024, timeout_bits=64)
POINTS = {
    "small": VitcodParams(head_dim=16, max_tokens=24, heads=2, max_global=8,
                          sparse_capacity=400, dense_macs=8, sparse_macs=8, out_lanes=4),
    "deit-tiny": VitcodParams(sparse_capacity=4096),   # the default: d 64, N 197, 8 + 24 MACs
}


def job(params, q, k, v, masks, *, head_mask=0, threshold=50, scales=(1.0, 1.0, 1.0)):
    """One call: q, k, v (H x N x d), masks (one per head, or None for dense)."""
    expected, works = [], []
    for h in range(q.shape[0]):
        if head_mask >> h & 1:
            continue
        plan = plan_head(params, q[h], k[h], v[h], masks[h], threshold=threshold,
                         balance=True)          # as the host plans by default
        head_scales, _ = calibrate_head(plan, params, scales=scales)
        expected.append(attention_head_int(plan.q, plan.k, plan.v, plan.kept, head_scales,
                                           params).tolist())
        works.append(work_of_plan(plan))
    device_heads = works + [HeadWork(0, (1,))] * (params.heads - len(works))
    device_mask = ((1 << params.heads) - 1) & ~((1 << len(works)) - 1)
    predicted = model_cycles(params, device_heads, device_mask)
    mask = None if all(m is None for m in masks) else \
        torch.stack([torch.ones(q.shape[1], q.shape[1], dtype=torch.bool) if m is None else m
                     for m in masks]).tolist()
    single = q.shape[0] == 1
    return {"q": (q[0] if single else q).tolist(), "k": (k[0] if single else k).tolist(),
            "v": (v[0] if single else v).tolist(),
            "mask": mask[0] if (single and mask is not None) else mask,
            "threshold": threshold, "scales": list(scales), "head_mask": head_mask,
            "expected": expected, "predicted": predicted,
            "max_cycles": int(predicted * 1.02) + 1}


def run_point(request, point, jobs):
    shell = build_shell(accel="vitcod", accel_params=POINTS[point], **SHELL)
    directory = run_cocotb(shell, toplevel=f"vitcod_shell_{point.replace('-', '_')}",
                           test_module="celine.sim.tb.vitcod_shell_tb",
                           case_id=request.node.nodeid, testcase="attention_end_to_end",
                           params={"vitcod": POINTS[point].to_dict(), "shell": SHELL},
                           data={"attention": jobs, "info": json.loads(shell.info)}, optimize=True)
    cycles = json.loads((directory / "attention.json").read_text())["cycles"]
    for n, (measured, item) in enumerate(zip(cycles, jobs)):
        assert abs(measured - item["predicted"]) <= 0.02 * measured, \
            f"job {n}: {measured} cycles, model {item['predicted']}"
    return cycles


def heads(count, tokens, head_dim, seed, low=-128, high=128):
    generator = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(low, high, (count, tokens, head_dim), generator=generator)
                 for _ in range(3))


@pytest.mark.cocotb
@pytest.mark.parametrize("tokens,threshold", [(15, 3),
                                              pytest.param(21, 6, marks=pytest.mark.sweep)])
def test_sparse_attention_end_to_end_small(request, tokens, threshold):
    """Two sparse heads, a skipped head, a dense head, one token, max_tokens (24), most-
    negative operands. The sparse heads' second has max_global (8) global tokens at both
    sizes; make test runs 15 tokens (149 sparse entries against 355, 5/7 of the rows of
    21 over the UART), make sim 21 too."""
    p = POINTS["small"]
    q, k, v = heads(2, tokens, 16, seed=1)
    q[1, 0, 0] = k[1, 0, 0] = v[1, 0, 0] = -128
    masks = [random_mask(tokens, 0.75, seed=2), random_mask(tokens, 0.5, seed=3)]
    q1, k1, v1 = heads(1, 1, 16, seed=4)
    q2, k2, v2 = heads(1, 24, 16, seed=5)
    jobs = [job(p, q, k, v, masks, threshold=threshold),
            job(p, q, k, v, masks, head_mask=0b01, threshold=threshold),
            job(p, q1, k1, v1, [None]),
            job(p, q2, k2, v2, [None], threshold=5, scales=(0.05, 0.05, 0.1))]
    run_point(request, "small", jobs)


@pytest.mark.cocotb
@pytest.mark.sweep          # make sim (10 minutes or more); make test runs the small one
def test_sparse_attention_end_to_end_deit_tiny_head(request):
    """One DeiT-Tiny head (N = 197, d = 64) with a real ViTCoD mask (layer 0, head 1: 10
    global tokens) on the default engine shape."""
    p = POINTS["deit-tiny"]
    q, k, v = heads(1, 197, 64, seed=197)
    kept = load_deit_masks()[0, 1]
    cycles = run_point(request, "deit-tiny", [job(p, q, k, v, [kept], scales=(0.02, 0.02, 0.05))])
    print(f"DeiT-Tiny head (layer 0, head 1): {cycles[0]} cycles")
