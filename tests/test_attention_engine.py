"""rtl/taylor/shell_adapter.py in the Amaranth simulator: the adapter between block-RAM
buffers and the Taylor pipeline, against golden/taylor.py; its shell and registries."""

import json

import pytest
import torch

from celine.spec.lanes import pack_lanes, unpack_lanes
from celine.golden.taylor import TaylorRegisters, calibrate, taylor_attention, taylor_int
from celine.rtl.shell.shell import build_shell
from celine.rtl.taylor.shell_adapter import TaylorShellAdapter
from celine.engines.taylor.cycles import LOAD_DELAY
from celine.engines.taylor.spec import (CONTEXT_READ_LATENCY, NUMERATOR_LATENCY, Errors,
                                        TaylorParams, registers, buffers as taylor_buffers)
from celine.sim.adapter_bench import run_adapter
from celine.sim.amaranth_sim import shared

PARAMS = TaylorParams(head_dim=16, max_tokens=8, mac_units=4, heads=3)


def operands(params, tokens, seed):
    """(heads, N, d) q, k, v with a full-scale corner."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = params.operand_range
    shape = (params.heads, tokens, params.head_dim)
    q, k, v = (torch.randint(lo, hi + 1, shape, generator=gen) for _ in range(3))
    q[0, 0, 0] = k[0, 0, 0] = v[0, 0, 0] = lo
    return q, k, v


def registers_for(q, k, v, scales):
    """Calibrated registers, the output scale from the float Taylor output's peak."""
    z = taylor_attention(*(x * s for x, s in zip((q, k, v), scales)))
    return calibrate(q, k, v, scales=scales, out_scale=float(z.abs().max()) / 127)


def buffer_words(params, x):
    """A (heads, N, d) tensor as the words of its buffer (unused token slots 0)."""
    words = [0] * (params.heads * params.max_tokens * params.row_beats)
    for h in range(x.shape[0]):
        for i in range(x.shape[1]):
            for b in range(params.row_beats):
                lanes = x[h, i, b * 8:(b + 1) * 8].tolist()
                words[(h * params.max_tokens + i) * params.row_beats + b] = \
                    pack_lanes(lanes, params.operand_width)
    return words


def run_engine(params, q, k, v, settings, *, runs=1, limit=20_000):
    """Set the registers, pulse start, wait for the end; (status per run, out words)."""
    contents = {name: buffer_words(params, x) for name, x in (("q", q), ("k", k), ("v", v))}
    status, words = run_adapter(shared(TaylorShellAdapter, params), contents, settings, runs=runs,
                                limit=limit)
    return status, words["out"]


def kept_outputs(params, words, tokens, head_mask):
    """The out buffer's words as the kept heads' (N, d) outputs, in head order."""
    beats, lanes = params.row_beats, 8
    outs = []
    for h in range(params.heads):
        if head_mask >> h & 1:
            continue
        rows = []
        for i in range(tokens):
            base = (h * params.max_tokens + i) * beats
            rows.append(sum((unpack_lanes(words[base + b], lanes, params.operand_width)
                             for b in range(beats)), []))
        outs.append(torch.tensor(rows))
    return outs


def settings_of(regs, tokens, head_mask, heads=None):
    return {"tokens": tokens, "head_mask": head_mask,
            **regs.values(PARAMS.heads if heads is None else heads)}


# The adapter's cycle counts, measured before rtl/common's buffer blocks replaced its
# hand-made prefetch: they must not change, but for the cycles a kept head has taken
# since: 2 since the centering unit's products are registered multipliers
# (params.centering_latency), NUMERATOR_LATENCY - 4 since the output lane's numerator
# is in short stages (it was 4; params.output_latency), and 3 (CONTEXT_READ_LATENCY - 1
# in each of KV_DRAIN, CENTER_WRITE_BACK and TILE_TO_LANE) since the context memory is
# read through its block RAMs' output registers, 1 since the MAC tile registers a
# K/V block's sum before writing it back (cycles.KV_DRAIN), and 1 since its Q adder tree
# takes two registered levels (cycles.TILE_TO_LANE).
A_KEPT_HEAD = 2 + NUMERATOR_LATENCY - 4 + 3 * (CONTEXT_READ_LATENCY - 1) + 1 + 1
# And one a run since q, k and v are read with their addresses registered beside their
# blocks (BufferSpec.read_latency 3: the reader's first word comes a cycle later), one
# since the reader registers their words again beside itself (its word_register), and
# LOAD_DELAY since the row loader writes a beat into its slot a cycle after taking it (the
# pipeline's registered restart, START_DELAY, is hidden: the reader's first word comes
# later still).
A_RUN = taylor_buffers(PARAMS)[0].read_latency - 2 + 1 + LOAD_DELAY


@pytest.mark.parametrize("tokens,head_mask,exact_cycles",
                         [(5, 0b010, 1636 + 2 * A_KEPT_HEAD + A_RUN),
                          (8, 0b000, 3600 + 3 * A_KEPT_HEAD + A_RUN)])
def test_engine_runs_kept_heads_bit_exactly(tokens, head_mask, exact_cycles):
    p = PARAMS
    q, k, v = operands(p, tokens, seed=tokens)
    regs = registers_for(q, k, v, (0.05, 0.04, 0.03))
    (status,), words = run_engine(p, q, k, v, settings_of(regs, tokens, head_mask))
    errors, cycles, result_words = status
    expected = taylor_int(q, k, v, regs, head_mask=head_mask, max_tokens=p.max_tokens)
    got = kept_outputs(p, words, tokens, head_mask)
    for h, (want, have) in enumerate(zip(expected, got)):
        assert have.tolist() == want.tolist(), f"kept head {h}"
    kept = len(expected)
    assert (errors, result_words) == (0, kept * tokens * p.row_beats)
    # Ideal: 2 N d^2 / M MAC cycles a head, plus centering and the phases' latencies
    # (the bound had 60 cycles of slack a head before A_KEPT_HEAD came); the feed must
    # keep up.
    ideal = kept * 2 * tokens * p.blocks
    assert ideal < cycles < ideal + kept * (p.head_dim ** 2 // p.tile_cols + 60 + A_KEPT_HEAD)
    assert cycles == exact_cycles
    skipped = [h for h in range(p.heads) if head_mask >> h & 1]
    for h in skipped:
        span = words[h * p.max_tokens * p.row_beats:(h + 1) * p.max_tokens * p.row_beats]
        assert span == [0] * len(span), f"skipped head {h} was written"


def test_engine_runs_again_with_the_same_buffers():
    p = TaylorParams(head_dim=8, max_tokens=4, mac_units=2, heads=1)
    q, k, v = operands(p, 3, seed=9)
    regs = TaylorRegisters(ctx_shift=3, v_mult=500, v_shift=4, out_mult=3000, out_shift=14)
    status, words = run_engine(p, q, k, v, settings_of(regs, 3, 0, p.heads), runs=2)
    assert status[0] == status[1] == (0, 276 + A_KEPT_HEAD + A_RUN, 3)       # see above
    (want,) = taylor_int(q, k, v, regs, max_tokens=p.max_tokens)
    assert kept_outputs(p, words, 3, 0)[0].tolist() == want.tolist()


@pytest.mark.parametrize("tokens", [0, 9, (1 << 4) + 3, 1 << 31])
def test_engine_rejects_a_token_count_out_of_range(tokens):
    # 19 = 0b10011 would wrap to 3 in the pipeline's 4-bit port: the engine rejects it.
    p = PARAMS
    q, k, v = operands(p, 2, seed=1)
    regs = TaylorRegisters(ctx_shift=0, v_mult=1, v_shift=0, out_mult=1, out_shift=0)
    (status,), words = run_engine(p, q, k, v, settings_of(regs, tokens, 0))
    errors, cycles, result_words = status
    assert errors == Errors.TOKENS and result_words == 0 and cycles == 1
    assert words == [0] * len(words)


def test_engine_with_every_head_skipped_ends_at_once():
    p = PARAMS
    q, k, v = operands(p, 2, seed=2)
    regs = TaylorRegisters(ctx_shift=0, v_mult=1, v_shift=0, out_mult=1, out_shift=0)
    (status,), words = run_engine(p, q, k, v, settings_of(regs, 2, 0b111))
    assert status == (0, 1, 0)


def test_engine_checks_its_parameters():
    with pytest.raises(TypeError, match=r"^params must be a TaylorParams, not 3$"):
        TaylorShellAdapter(3)


def test_taylor_shell_describes_itself():
    p = TaylorParams(head_dim=16, max_tokens=8, mac_units=4, heads=2, out_mult=7, out_shift=3)
    shell = build_shell(accel="taylor", accel_params=p, clock_hz=48_000_000, baud=3_000_000)
    info = json.loads(shell.info)
    assert info["engine"] == "taylor" and info["params"] == p.to_dict()
    assert info["registers"] == {"tokens": 0, "head_mask": 1, "ctx_shift": 2, "v_mult": 3,
                                 "v_shift": 4, "out_mult_0": 5, "out_shift_0": 6,
                                 "out_mult_1": 7, "out_shift_1": 8}
    assert [(b["name"], b["word_bytes"], b["word_stride"], b["depth"], b["writable"])
            for b in info["buffers"]] == [("q", 8, 8, 32, True), ("k", 8, 8, 32, True),
                                          ("v", 8, 8, 32, True), ("out", 8, 8, 32, False)]
    init = shell.link.register_init
    ids = registers(p).index
    assert [init[ids(f"out_{name}_{h}")] for h in range(2) for name in ("mult", "shift")] \
        == [7, 3, 7, 3]
    assert build_shell(accel="taylor", clock_hz=48_000_000,
                       baud=3_000_000).description["params"] == TaylorParams().to_dict()


def test_build_shell_checks_its_engine_settings():
    from celine import registry
    known = ", ".join(engine.name for engine in registry.ENGINES)   # mac, taylor, ...
    assert known.startswith("mac, taylor")
    with pytest.raises(ValueError, match=rf"^accelerator must be one of {known}, not "
                                         r"'nosuch'$"):
        build_shell(accel="nosuch", clock_hz=48_000_000, baud=3_000_000)
    with pytest.raises(ValueError, match=r"^option must be one of none for the taylor engine, "
                                         r"not 'operand_depth'$"):
        build_shell(accel="taylor", clock_hz=48_000_000, baud=3_000_000, operand_depth=64)


def test_celine_knows_the_taylor_engine(tmp_path, capsys):
    from celine.boards.designs import get_design
    from celine import registry
    from celine.gen.cli import main
    from celine.rtl.taylor.pipeline import TaylorPipeline
    assert get_design("taylor").params is TaylorParams
    assert registry.get("taylor").core.load() is TaylorPipeline
    assert main(["list"]) == 0
    assert any(line.split(None, 1) == ["taylor", "ViTALiTy Taylor-attention pipeline "
                                                 "(linear attention)"]
               for line in capsys.readouterr().out.splitlines())
    assert main(["params", "taylor", "head_dim=16", "mac_units=8"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert (resolved["head_dim"], resolved["tile_rows"], resolved["tile_cols"],
            resolved["row_beats"], resolved["blocks"]) == (16, 2, 4, 2, 32)
    assert main(["verilog", "taylor", "head_dim=8", "max_tokens=4", "mac_units=2", "heads=1",
                 "--out", str(tmp_path)]) == 0
    assert "module celine_taylor" in (tmp_path / "celine_taylor.v").read_text()
