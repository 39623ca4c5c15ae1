"""The formal proofs (celine/formal, make formal): each holds, within the induction depth
docs/formal.md lists, in a few seconds; a broken block (a stream register, a frame decoder,
a command executor, a buffer reader, a result drain, a row queue, an output packer, a
softmax unit, a buffer writer) fails with its counterexample."""

import re

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from celine.engines.mac.proofs import DrainHarness, row_queue_invariant
from celine.engines.taylor.proofs import PackerHarness
from celine.engines.taylor.spec import TaylorParams
from celine.engines.vitcod.proofs import SoftmaxHarness
from celine.formal import Proof, ProofFailed, all_proofs, prove
from celine.formal.credits import CreditQueueHarness
from celine.formal.executor import ExecutorHarness
from celine.formal.frame import FrameHarness
from celine.formal.reader import ReaderHarness
from celine.formal.streams import WIDTH, StreamHarness
from celine.formal.writer import WriterHarness
from celine.rtl.common import buffer_reader
from celine.rtl.common.buffer_writer import BufferWriter
from celine.rtl.common.shaped_queue import ShapedQueue
from celine.rtl.mac import result_drain
from celine.rtl.taylor import output_packer
from celine.rtl.vitcod import softmax_unit
from celine.rtl.shell import frame_decoder
from celine.rtl.shell.command_executor import CommandExecutor
from celine.rtl.shell.crc16 import CRC16
from celine.rtl.shell.link_streams import request_layout
from celine.spec.protocol import Status


PROOFS = all_proofs()
# Proofs of a minute or more (on two busy cores) run in make sim and make formal, not in
# make test, where a smaller sibling of the same block and property runs.
SLOW_PROOFS = ("outputpacker_row_beats_2_fifo_8",)


def _sampled(proof):
    return pytest.param(proof, id=proof.name, marks=[pytest.mark.sweep] * any(
        proof.name.startswith(slow) for slow in SLOW_PROOFS))


@pytest.mark.parametrize("proof", [_sampled(proof) for proof in PROOFS])
def test_proof_holds(proof, tmp_path):
    result = prove(proof, tmp_path)
    assert result["proven"] and 1 <= result["depth"] <= proof.maxsteps


def test_proof_names_are_distinct():
    # each proof's directory under build/formal is its name
    names = [proof.name for proof in PROOFS]
    assert len(set(names)) == len(names)


class DropsWhenStalled(wiring.Component):
    """A stream register that always takes its input: a stalled beat is overwritten."""
    i: In(stream.Signature(WIDTH))
    o: Out(stream.Signature(WIDTH))

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.i.ready.eq(1)
        with m.If(self.i.valid | self.o.ready):
            m.d.sync += [self.o.valid.eq(self.i.valid), self.o.payload.eq(self.i.payload)]
        return m


def test_a_broken_block_fails_with_its_trace(tmp_path):
    proof = Proof("DropsWhenStalled", "beats in order", lambda: StreamHarness(DropsWhenStalled,
                                                                              capacity=1))
    with pytest.raises(ProofFailed) as failure:
        prove(proof, tmp_path)
    message = str(failure.value)
    assert message.startswith("DropsWhenStalled: beats in order: a counterexample from reset")
    assert "\\o_ready" in message and "\\i_valid" in message      # the trace's inputs
    assert (tmp_path / proof.name / "counterexample.vcd").exists()


def _fails_from_reset(proof, tmp_path):
    """`proof` fails with a counterexample from reset; its message."""
    with pytest.raises(ProofFailed) as failure:
        prove(proof, tmp_path)
    message = str(failure.value)
    assert message.startswith(f"{proof.component}: {proof.prop}: a counterexample from reset")
    assert (tmp_path / proof.name / "counterexample.vcd").exists()
    return message


class StuckCRC(CRC16):
    """A CRC register that ignores the bytes: it stays at its initial value."""

    def elaborate(self, platform):
        return Module()


def test_a_decoder_that_does_not_check_the_crc_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(frame_decoder, "CRC16", StuckCRC)
    message = _fails_from_reset(Proof("FrameDecoder with a stuck CRC", "OK frames", FrameHarness),
                                tmp_path)
    assert "\\rx_byte" in message and "\\request_ready" in message


class IgnoresStatus(CommandExecutor):
    """A command executor that takes every request's status for OK."""

    def elaborate(self, platform):
        outside = self.request
        self.request = stream.Signature(request_layout()).create()
        try:
            m = super().elaborate(platform)
        finally:
            inside, self.request = self.request, outside
        m.d.comb += [inside.valid.eq(outside.valid), inside.payload.eq(outside.payload),
                     inside.payload.status.eq(Status.OK), outside.ready.eq(inside.ready)]
        return m


def test_an_executor_that_ignores_the_status_fails(tmp_path):
    proof = Proof("IgnoresStatus", "only OK requests act", lambda: ExecutorHarness(IgnoresStatus))
    assert "\\request_valid" in _fails_from_reset(proof, tmp_path)


def test_a_reader_whose_queue_is_short_of_its_credit_fails(tmp_path, monkeypatch):
    # The credit keeps one word of the queue free (at most queue_depth - 1 committed), so
    # a queue one word short still never overflows; two words short, it does.
    monkeypatch.setattr(buffer_reader, "ShapedQueue",
                        lambda layout, depth: ShapedQueue(layout, depth - 2))
    proof = Proof("BufferReader, queue 2 short", "credit",
                  lambda: ReaderHarness(queue_depth=4))
    message = _fails_from_reset(proof, tmp_path)
    # the trace of the base case (from the initial values), not of a failed induction step
    assert re.search(r"init \\taken\s+0\s", message)


class Overdrawn(result_drain.RowQueue):
    """A RowQueue that claims a row more than it holds (the drain counts against it)."""

    def __init__(self, layout, *, depth):
        super().__init__(layout, depth=depth)
        self.capacity = depth + 2


class SmallDrain(result_drain.ResultDrain):
    """A result drain with a one-row store (so the overdrawn credit shows in a few
    cycles)."""

    @staticmethod
    def queue_depth():
        return 1


def test_a_drain_whose_credit_passes_its_queue_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(result_drain, "RowQueue", Overdrawn)
    proof = Proof("ResultDrain, credit 1 over", "credit", lambda: DrainHarness(drain=SmallDrain))
    message = _fails_from_reset(proof, tmp_path)
    assert "\\load_next" in message and re.search(r"init \\dut.credits_used\s+0\s", message)


def test_a_row_queue_written_past_its_capacity_loses_a_row(tmp_path):
    # A writer that counts on 4 rows for a queue that holds 3 (its store of 2 and its
    # output register) overwrites a row.
    proof = Proof("RowQueue, writer 1 over", "rows in order",
                  lambda: CreditQueueHarness(lambda: result_drain.RowQueue(WIDTH, depth=2),
                                             capacity=4, invariant=row_queue_invariant))
    assert "\\i_valid" in _fails_from_reset(proof, tmp_path)


def test_a_packer_whose_fifo_is_short_of_its_credit_fails(tmp_path, monkeypatch):
    # row_beats 1 and a FIFO of 3 beats made 1: the second beat packed while the first
    # waits overflows it (16 elements: the base case needs 17 steps).
    monkeypatch.setattr(output_packer, "SyncFIFOBuffered",
                        lambda width, depth: SyncFIFOBuffered(width=width, depth=depth - 2))
    params = TaylorParams(head_dim=8, mac_units=1, max_tokens=4, heads=1)
    proof = Proof("OutputPacker, FIFO 2 short", "credit",
                  lambda: PackerHarness(params), maxsteps=18)
    assert "\\row_start" in _fails_from_reset(proof, tmp_path)


@pytest.mark.sweep      # make test: the packer's and the reader's short credit fail
def test_a_softmax_unit_whose_csr_queue_is_short_of_its_credit_fails(tmp_path, monkeypatch):
    monkeypatch.setattr(softmax_unit, "ShapedQueue", lambda layout, depth: ShapedQueue(
        # (the queue holds the words not in flight and not in the walk's head register)
        layout, depth - 1 if depth == softmax_unit.CSR_QUEUE_DEPTH - 1 else depth))
    proof = Proof("SoftmaxUnit, CSR queue 1 short", "credit", SoftmaxHarness)
    assert "\\unit__start" in _fails_from_reset(proof, tmp_path)


def test_a_writer_that_counts_past_the_buffer_fails(tmp_path):
    proof = Proof("BufferWriter, 1 word over", "count at most depth", lambda: WriterHarness(
        2, writer=lambda shape, *, depth, sequential: BufferWriter(
            shape, depth=depth + 1, sequential=sequential)))
    assert "\\i_valid" in _fails_from_reset(proof, tmp_path)
