"""d accumulator sums -> one word of d requantized values through the common
requantizer, `lanes` values a cycle: the row writer of the ViTCoD SpMM and auto-encoder."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.utils import exact_log2
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..common.requant import Requantizer
from ...spec.checks import check_int
from ...spec.numerics import MULT_BITS, SHIFT_BITS

__all__ = ["LOAD_GROUP", "RowRequantizer", "load_copies", "write_port_signature"]


def write_port_signature(depth, width):
    """A write port as the shell's engine-written buffers have (contract.buffer_port_signature)."""
    return wiring.Signature({"addr": Out(range(depth)), "data": Out(width), "write": Out(1)})



# Lanes of the working register that one copy of `load` steers: a single load net into
# every lane's register (64 lanes of 22 bits, 1,372 enables) was a build's worst path.
LOAD_GROUP = 8


def load_copies(head_dim):
    """How many copies of `load` a RowRequantizer of `head_dim` lanes takes."""
    return -(-head_dim // LOAD_GROUP)


class RowRequantizer(wiring.Component):
    """d accumulator sums -> one word of d requantized values, `lanes` values a cycle.

    Used by the SpMM's OutputStage (output_stage.py) and the auto-encoder's HeadMixer
    (ae_codec.py). `load` (only while `ready`) copies `sums` and `addr` into a working
    register that shifts `lanes` sums a cycle into as many common Requantizers
    (y = requantize(x, multiplier, shift) to `out_width` bits); the word is written on
    `out` when its last lanes leave them. A row takes K = d / lanes cycles; `ready` is high
    while the working register is empty or shows its last lanes, so loads may follow one
    another every K cycles. A row loaded in cycle c is written in cycle c + K +
    Requantizer.latency; `busy` is high from the cycle after a load up to its write.

    With `beats` b > 1 a row is b words of d/b values (buffer word addr·b + j holds values
    j·d/b onwards; `depth` counts words, `addr` rows): word j is written as its last lanes
    leave the requantizers, the last one in the same cycle as a one-word row's.

    `load` comes as load_copies(d) equal bits, each steering LOAD_GROUP lanes of the
    working register (a user whose load fans out far drives them from register copies);
    the working register has no enable: it loads, else shifts.
    """

    def __init__(self, *, head_dim, acc_width, lanes, out_width, depth, beats=1):
        check_int("head_dim", head_dim, minimum=1)
        check_int("lanes", lanes, minimum=1, maximum=head_dim)
        if head_dim % lanes:
            raise ValueError(f"lanes must divide head_dim ({head_dim}), not {lanes!r}")
        check_int("acc_width", acc_width, minimum=2, maximum=64)
        check_int("out_width", out_width, minimum=2, maximum=acc_width)
        check_int("depth", depth, minimum=1)
        check_int("beats", beats, minimum=1, maximum=head_dim // lanes)
        if (head_dim // lanes) % beats or beats & (beats - 1):
            raise ValueError(f"beats must be a power of two dividing head_dim / lanes "
                             f"({head_dim // lanes}), not {beats!r}")
        self.head_dim, self.acc_width, self.lanes = head_dim, acc_width, lanes
        self.out_width, self.depth, self.beats = out_width, depth, beats
        self.chunks = head_dim // lanes
        self.latency = self.chunks + Requantizer.latency
        super().__init__({
            "load": In(load_copies(head_dim)),
            "sums": In(data.ArrayLayout(signed(acc_width), head_dim)),
            "addr": In(range(max(1, depth // beats))),
            "multiplier": In(unsigned(MULT_BITS)),
            "shift": In(unsigned(SHIFT_BITS)),
            "ready": Out(1),
            "out": Out(write_port_signature(depth, head_dim * out_width // beats)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        lanes, chunks, w, acc_width = self.lanes, self.chunks, self.out_width, self.acc_width

        work = Signal(data.ArrayLayout(signed(acc_width), self.head_dim))
        work_addr = Signal.like(self.addr)
        left = Signal(range(chunks + 1))           # chunks still to present
        present = Signal()
        m.d.comb += [present.eq(left != 0), self.ready.eq(left <= 1)]
        with m.If(self.load[0]):
            m.d.sync += [work_addr.eq(self.addr), left.eq(chunks)]
        with m.Elif(present):
            m.d.sync += left.eq(left - 1)
        # Loaded, else shifted every cycle (what it holds while `left` is 0 is never used):
        # no enable to fan out, each lane's choice by its group's copy of `load`.
        for k in range(self.head_dim):
            shifted = work[k + lanes] if k + lanes < self.head_dim else 0
            m.d.sync += work[k].eq(Mux(self.load[k // LOAD_GROUP], self.sums[k], shifted))

        # The requantizers never stall (the write port has no backpressure): `en` stays
        # high and a delay line of their latency carries valid / write / address along.
        results = []
        for k in range(lanes):
            req = Requantizer(in_width=acc_width, multiplier_width=MULT_BITS,
                              shift_width=SHIFT_BITS, out_width=w)
            m.submodules[f"requant_{k}"] = req
            m.d.comb += [req.en.eq(1), req.x.eq(work[k]), req.multiplier.eq(self.multiplier),
                         req.shift.eq(self.shift), req.bypass.eq(0)]
            results.append(req.y[:w])
        chunk = Cat(*results)

        # A word ends with chunk c = chunks - left when (c + 1) is a multiple of per_word.
        per_word = chunks // self.beats
        if self.beats > 1:
            ends = Array(int(n >= 1 and (n - 1) % per_word == 0) for n in range(chunks + 1))
            index = Array((chunks - n) // per_word if n >= 1 else 0 for n in range(chunks + 1))
            word_end = Signal()
            word_index = Signal(exact_log2(self.beats))
            m.d.comb += [word_end.eq(ends[left]), word_index.eq(index[left])]
            first_addr = Cat(word_index, work_addr)
        else:
            word_end, first_addr = left == 1, work_addr
        valid, write, addr = present, present & word_end, first_addr
        line = []
        for stage in range(Requantizer.latency):
            nxt = (Signal(name=f"valid_{stage}"), Signal(name=f"write_{stage}"),
                   Signal.like(self.out.addr, name=f"addr_{stage}"))
            m.d.sync += [nxt[0].eq(valid), nxt[1].eq(write), nxt[2].eq(addr)]
            line.append(nxt[0])
            valid, write, addr = nxt

        # Earlier chunks of the row wait in `collect` (the oldest lowest); the last joins
        # them straight from the requantizers, so the word is written as it completes.
        if per_word > 1:
            collect = Signal((per_word - 1) * lanes * w)
            with m.If(valid):
                m.d.sync += collect.eq(Cat(collect[lanes * w:], chunk))
            word = Cat(collect, chunk)
        else:
            word = chunk
        m.d.comb += [
            self.out.addr.eq(addr),
            self.out.data.eq(word),
            self.out.write.eq(write),
            self.busy.eq(present | Cat(*line).any()),
        ]
        return m
