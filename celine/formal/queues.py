"""The invariant of a ShapedQueue holding numbered beats: what every register and every
word of its memory holds, for harnesses whose induction needs it.

ShapedQueue is amaranth.lib.fifo.SyncFIFOBuffered: from depth 2 on, a memory of depth - 1
words (`storage`, written at `produce`, read at `consume`, `inner_level` words) and an
output register (`r_data`, full when `r_rdy`). A beat may wait in the memory for any number
of cycles, so a proof that does not say what the memory holds meets, in its induction step,
a memory full of words that were never written, and never closes (docs/formal.md). The
invariant, with the beats numbered in order of arrival and `first` the number of the beat
that leaves next:

- the pointers are in range and the fill level agrees with them;
- the output register, when full, holds beat `first`;
- the memory's word j after `consume` (j < inner_level) holds beat first + r_rdy + j;
- the queue holds `count` beats (the harness's count of beats in minus beats out).
"""

from amaranth.hdl import Assert, Const

__all__ = ["queue_invariant", "pointer_invariant"]


def queue_invariant(m, queue, first, count, holds):
    """Assert the invariant of the ShapedQueue `queue` (an Insides) in `m`: `first` is the
    number of the beat that leaves next, `count` the beats the queue holds, and
    `holds(word, n)` is 1 when `word` (a beat as the queue stores it, a plain value) is
    beat n."""
    fifo = queue.open("fifo")
    depth = fifo.component.depth
    inner_depth = depth - 1
    # One asynchronous read port for each word of the memory (added before it is
    # elaborated), so the invariant can name every word.
    words = []
    if inner_depth:
        storage = fifo.submodule("storage")
        for address in range(inner_depth):
            port = storage.read_port(domain="comb")
            m.d.comb += port.addr.eq(address)
            words.append(port.data)

    r_rdy, r_data = fifo.component.r_rdy, fifo.component.r_data
    m.d.comb += Assert(queue.component.level == count)
    with m.If(r_rdy):
        m.d.comb += Assert(holds(r_data, first))
    if not inner_depth:                # depth 1: the output register is all there is
        return

    pointer_invariant(m, fifo, count)
    consume, level = fifo.signal("consume"), fifo.signal("inner_level")
    # Word j after `consume` holds beat first + r_rdy + j, for the `level` words held.
    for start in range(inner_depth):
        with m.If(consume == start):
            for j in range(inner_depth):
                with m.If(j < level):
                    n = first + r_rdy + Const(j)
                    m.d.comb += Assert(holds(words[(start + j) % inner_depth], n))


def pointer_invariant(m, fifo, count):
    """Assert, of the SyncFIFOBuffered `fifo` (an Insides) of depth 2 or more holding
    `count` beats, that its memory's pointers are in range and its fill level agrees with
    them and with `count`."""
    inner_depth = fifo.component.depth - 1
    produce, consume = fifo.signal("produce"), fifo.signal("consume")
    level = fifo.signal("inner_level")
    m.d.comb += [Assert(produce < inner_depth), Assert(consume < inner_depth),
                 Assert(level <= inner_depth),
                 Assert(level + fifo.component.r_rdy == count)]
    # The fill level agrees with the pointers (as amaranth.lib.fifo's own formal checks
    # state it): equal pointers mean empty or full.
    with m.If(produce == consume):
        m.d.comb += Assert((level == 0) | (level == inner_depth))
    with m.Elif(produce > consume):
        m.d.comb += Assert(level == produce - consume)
    with m.Else():
        m.d.comb += Assert(level == inner_depth + produce - consume)
