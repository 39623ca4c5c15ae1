"""IndexCheck: the CSC list's positions point at the same (row, col) in the CSR list."""

import pytest
import torch
from amaranth.sim import Simulator

from celine.engines.vitcod.spec import (CSC_READ_LATENCY, CSR_READ_LATENCY, VitcodParams,
                                        csc_fields, csr_fields, pack_word)
from celine.golden.vitcod.mask import index_lists, polarize, random_mask
from celine.rtl.vitcod.index_check import IndexCheck

P = VitcodParams(head_dim=16, max_tokens=24, heads=2, max_global=8, sparse_capacity=256,
                 dense_macs=8, sparse_macs=8, out_lanes=4)


def _lists(seed, tokens=24):
    polar = polarize(random_mask(tokens, 0.7, seed=seed), max_global=P.max_global)
    lists = index_lists(polar)
    csc = [[int(c), int(r), int(q)] for c, r, q in zip(lists.csc_col, lists.csc_row, lists.csc_pos)]
    csr = [[int(r), int(c)] for r, c in zip(lists.csr_row, lists.csr_col)]
    return csc, csr


def _run(csc, csr, base=256):
    dut = IndexCheck(P)
    memory_csc = {base + n: pack_word(csc_fields(P), dict(zip(("col", "row", "pos"), e)))
                  for n, e in enumerate(csc)}
    memory_csr = {base + n: pack_word(csr_fields(P), dict(zip(("row", "col"), e)))
                  for n, e in enumerate(csr)}
    result = {}

    async def bench(ctx):
        ctx.set(dut.nnz, len(csc))
        ctx.set(dut.list_base, base)
        ctx.set(dut.start, 1)
        await ctx.tick()
        ctx.set(dut.start, 0)
        cycles = 0
        csc_reads, csr_reads = [], []
        while True:
            # the memories: csc's data CSC_READ_LATENCY cycles after the address, csr's
            # CSR_READ_LATENCY
            a_csc, a_csr = ctx.get(dut.csc.addr), ctx.get(dut.csr.addr)
            busy = ctx.get(dut.busy)
            await ctx.tick()
            csc_reads.append(memory_csc.get(a_csc, 0))
            if len(csc_reads) == CSC_READ_LATENCY:
                ctx.set(dut.csc.data, csc_reads.pop(0))
            csr_reads.append(memory_csr.get(a_csr, 0))
            if len(csr_reads) == CSR_READ_LATENCY:
                ctx.set(dut.csr.data, csr_reads.pop(0))
            if not busy:
                break
            cycles += 1
        result["error"] = ctx.get(dut.error)
        result["cycles"] = cycles

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return result


@pytest.mark.parametrize("seed", [0, 1])
def test_consistent_lists_pass(seed):
    csc, csr = _lists(seed)
    result = _run(csc, csr)
    assert result["error"] == 0
    assert result["cycles"] == len(csc) + IndexCheck.LATENCY


def test_swapped_positions_fail():
    csc, csr = _lists(2)
    csc[0][2], csc[1][2] = csc[1][2], csc[0][2]
    assert _run(csc, csr)["error"] == 1


def test_position_beyond_nnz_fails():
    csc, csr = _lists(3)
    csc[-1][2] = len(csc)
    assert _run(csc, csr)["error"] == 1


def test_wrong_row_fails():
    csc, csr = _lists(4)
    csr[csc[5][2]][0] ^= 1
    assert _run(csc, csr)["error"] == 1
