"""The formal proofs (celine/formal, make formal): each holds, within the induction depth
docs/formal.md lists, in a few seconds; a broken block fails with its counterexample."""

import pytest
from amaranth.hdl import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from celine.formal import PROOFS, Proof, ProofFailed, prove
from celine.formal.streams import WIDTH, StreamHarness


@pytest.mark.parametrize("proof", PROOFS, ids=[p.name for p in PROOFS])
def test_proof_holds(proof, tmp_path):
    result = prove(proof, tmp_path)
    assert result["proven"] and 1 <= result["depth"] <= proof.maxsteps


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
