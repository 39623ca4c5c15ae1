"""The row maxima of a head's kept scores, tracked while its SDDMM engines run
(docs/vitcod.md, "The hardware", phase 1)."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..common.compare import exceeds
from ..common.fanout import register_copies
from ..common.pick import picked_bit
from ..shell.block_ram import BlockRAM
from .dpu import biased, check_params, row_value_signature

__all__ = ["RowMax"]

DISTRIBUTED = {"ram_style": "distributed"}      # yosys: LUT RAM, not a block RAM


class RowMax(wiring.Component):
    """m_i = max(the denser engine's row maximum, the sparser engine's scores of row i).

    clear (In): a head starts: every row's two valid bits (max_tokens each, in registers)
        are cleared at once. Pulse it with nothing in flight (busy low, no en with it).
    dense (In): {row, value, en}: a row's maximum over its global columns (stored as is).
    sparse (In): {row, value, en}: one score, folded into its row's running maximum; one a
        cycle, any rows in any order (the same row in consecutive cycles too). Into an
        input register, then a three-stage read-modify-write (read, compare, write back),
        exact by forwarding the new maxima of the two scores before (see elaborate).
    busy (Out): a sparse score is still being folded in (presented in one of the three
        previous cycles).
    read: {addr (In), load (In, 1 by default), data (Out)}: data `read_latency` = 3
        cycles later is the maximum of whichever of the row's two maxima are valid (0 if
        neither is: the caller reads only rows with a kept entry), if `load` was high the
        cycle before; with `load` low the output register holds (the caller reads a row
        ahead and loads it when the row changes). The address walks the rows: in the
        cycle of a read it is the cycle before's or one more (the caller reads rows in
        order; it holds its first address a cycle). The read begins the cycle before,
        at that cycle's address and the next (see elaborate). A read in a cycle with busy
        low sees every value presented before the cycle before it: reads may begin once
        the engines are idle and busy has been low a cycle (four cycles after the last
        score).
    """

    read_latency = 3

    def __init__(self, params):
        self.params = p = check_params(params)
        super().__init__({
            "clear": In(1),
            "dense": In(row_value_signature(p)),
            "sparse": In(row_value_signature(p)),
            "busy": Out(1),
            "read": In(wiring.Signature({"addr": Out(range(p.max_tokens)),
                                         "load": Out(1, init=1),
                                         "data": In(signed(p.score_width))})),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        # The running sparse maxima in distributed RAM (a block RAM's read would cost the
        # read-modify-write a cycle, or its unregistered output the clock), in two halves
        # of whole LUT-RAM nibbles, each read at its own copy of the row (`row0`, below):
        # one address net into every LUT-RAM cell of the word, then their multiplexer, was
        # a ViTCoD build's slow path (8.2 ns). The read port reads block RAM copies (below).
        nibbles = -(-p.score_width // 4)
        split = min(p.score_width, 4 * -(-nibbles // 2))
        halves = [(0, split)] + ([(split, p.score_width)] if split < p.score_width else [])
        sparse_max = []
        for k, (low, high) in enumerate(halves):
            m.submodules[f"sparse_max_{k}"] = memory = Memory(
                shape=high - low, depth=p.max_tokens, init=[], attrs=DISTRIBUTED)
            sparse_max.append(memory)
        # The read port's copies: the dense maxima (only read there) and the sparse ones,
        # both biased (dpu.biased: their compare is a bare carry chain), each twice: one
        # copy read at the address, one at the next row (see the read port below).
        dense_copies, sparse_copies = [], []
        for lane in range(2):
            for kind, copies in (("dense", dense_copies), ("sparse", sparse_copies)):
                copy = BlockRAM.for_bits(p.score_width, p.max_tokens, output_register=True)
                m.submodules[f"{kind}_copy_{lane}"] = copy
                copies.append(copy)
        if dense_copies[0].read_latency != self.read_latency - 1:
            raise RuntimeError(f"the row maxima's copies read in "
                               f"{dense_copies[0].read_latency} cycles, RowMax's read needs "
                               f"{self.read_latency - 1}")
        dense_valid = Signal(p.max_tokens)
        sparse_valid = Signal(p.max_tokens)
        with m.If(self.clear):
            m.d.sync += [dense_valid.eq(0), sparse_valid.eq(0)]

        # The dense maxima: stored.
        for copy in dense_copies:
            copy.write_word(m, self.dense.row, biased(self.dense.value), self.dense.en)
        with m.If(self.dense.en):
            m.d.sync += dense_valid.bit_select(self.dense.row, 1).eq(1)

        # The sparse maxima, a score presented in cycle X - 1 (into the input register,
        # `s0`: the score's net from the engine into the compares below was a ViTCoD
        # build's worst path, 8.9 ns), then in cycle X:
        #   X    its row's maximum and valid bit are read (into registers, `s1`);
        #   X+1  compared with the score (`s2` gets the new maximum);
        #   X+2  written back. The two scores before it are not yet in what X read: if one
        #        of them is of the same row, its new maximum (in `s2` or `s3`, the later
        #        one first) replaces the read.
        row0_copies = register_copies(m, "row0", self.sparse.row, len(halves))
        row0 = row0_copies[0]
        value0 = Signal(p.score_width)
        en0 = Signal()
        m.d.sync += [value0.eq(biased(self.sparse.value)), en0.eq(self.sparse.en)]
        old_reads = [memory.read_port(transparent_for=()) for memory in sparse_max]
        old_data = Cat(*(read.data for read in old_reads))
        row1, row2 = (Signal.like(row0, name=f"row{k}") for k in (1, 2))
        value1, value2, value3 = (Signal(p.score_width, name=f"value{k}") for k in (1, 2, 3))
        en1, en2 = (Signal(name=f"en{k}") for k in (1, 2))
        forward_2, forward_3 = (Signal(name=f"forward_{k}") for k in (2, 3))
        m.d.comb += [read.addr.eq(row) for read, row in zip(old_reads, row0_copies)]
        m.d.comb += self.busy.eq(en0 | en1 | en2)
        # The row's valid bit, as of X, a register (s1): picked in two steps (common.pick)
        # from the incoming row, its group registered beside s0 and its bit picked in X.
        # That group is of X - 1, so the write of X - 1 (the third score before, in s3
        # then: `row3`) is forwarded into it. A max_tokens-to-1 pick from row0 into a
        # register was a ViTCoD build's worst path (9.0 ns, 7 levels); the bit picked
        # from the group beside the compare below, then through the pick into value2,
        # another (8.1 ns).
        row3 = Signal.like(row0, name="row3")
        en3 = Signal(name="en3")
        valid1 = Signal(name="valid1")
        m.d.sync += valid1.eq(picked_bit(m, sparse_valid, self.sparse.row, "valid0")
                              | (en3 & (row3 == row0)))
        m.d.sync += [row1.eq(row0), value1.eq(value0), en1.eq(en0),
                     forward_2.eq(en1 & (row1 == row0)),    # in s2 next cycle
                     forward_3.eq(en2 & (row2 == row0))]    # in s3 next cycle
        # The candidates for s2's new maximum: the score itself (value1), the new maximum
        # of the score before (value2, if of the same row), or `older` (the row's stored
        # maximum, or the one in s3 not yet written). Which wins over value1 comes from a
        # bit registered the cycle before: `beats` (value1 > value2) is the incoming score
        # compared, beside s1, with each candidate for value2 and picked by the same
        # selects that pick value2. So the loop through s2 (the same row twice in a row)
        # is no longer a 22-bit compare and a pick into value2 in one cycle (that was a
        # ViTCoD build's worst path, 9.7 ns and 20 levels): value2's compare goes into
        # `beats`, and `beats` picks value2 the cycle after. (Equal values: either pick is
        # the same maximum.) Every compare is a subtraction's borrow (common.compare.
        # exceeds): one carry chain, never a ripple of LUTs.
        older = Mux(forward_3, value3, old_data)
        older_wins = Mux(forward_3, exceeds(value3, value1),
                         valid1 & exceeds(old_data, value1))
        beats = Signal()                # value1 > value2 (used when forward_2)
        pick_value1 = Mux(forward_2, beats, ~older_wins)
        pick_value2 = forward_2 & ~beats
        new = Mux(pick_value1, value1, Mux(pick_value2, value2, older))
        incoming = value0
        m.d.sync += beats.eq(Mux(pick_value1, exceeds(incoming, value1),
                                 Mux(pick_value2, exceeds(incoming, value2),
                                     exceeds(incoming, older))))
        m.d.sync += [row2.eq(row1), en2.eq(en1), value2.eq(new), value3.eq(value2),
                     row3.eq(row2), en3.eq(en2)]
        for memory, (low, high) in zip(sparse_max, halves):
            write = memory.write_port()
            m.d.comb += [write.addr.eq(row2), write.data.eq(value2[low:high]), write.en.eq(en2)]
        for copy in sparse_copies:
            copy.write_word(m, row2, value2, en2)
        with m.If(en2):
            m.d.sync += sparse_valid.bit_select(row2, 1).eq(1)

        # The read port. The two maxima used to be compared straight after the copies'
        # output registers, and a copy placed far from the compare made that a ViTCoD
        # build's worst path (9.0 ns: a 4.0 ns net from the block, then the carry chain).
        # So the words are registered beside the compare first, which takes a cycle the
        # read has not got (the softmax unit loads a row's maximum ROW_MAX_READ_LATENCY
        # cycles after it knows the row, with rows one cycle apart at times): instead the
        # read begins a cycle early, at the address of the cycle before (`a`) and at the
        # row after it (`a + 1`), in two copies of each memory, and the cycle after picks
        # whichever the address then named (it is `a` or `a + 1`).
        #   T-1  the four copies read at a and a + 1; the valid bits' groups picked
        #        (common.pick: a max_tokens-to-1 pick in one step was a build's worst
        #        path, 9.5 ns, 7 levels);
        #   T    `stepped` (the address moved since T-1) registered;
        #   T+1  the copies' words, and the valid bits, of the row the address named in T,
        #        picked by `stepped` into registers beside the compare;
        #   T+2  the two maxima compared (a carry chain on their biased forms) and the
        #        larger valid one picked into the output register, if `load`.
        addr = self.read.addr
        rows = [addr, Signal.like(addr, name="read_next_row")]
        m.d.comb += rows[1].eq(addr + 1)
        lane_words, lane_valid = [], []
        for lane, row in enumerate(rows):
            dense_copy, sparse_copy = dense_copies[lane], sparse_copies[lane]
            m.d.comb += [dense_copy.raddr.eq(row), sparse_copy.raddr.eq(row)]
            # The valid bits of row a + 1 are bit a of the vectors shifted down by one: the
            # same pick as lane 0's, no adder before it (through `a + 1`, max_row's net
            # and the adder into the pick's group register was a ViTCoD build's worst
            # path, 8.4 ns).
            d_valid = Signal(name=f"d_valid_{lane}")
            s_valid = Signal(name=f"s_valid_{lane}")
            m.d.sync += [
                d_valid.eq(picked_bit(m, dense_valid[lane:], addr, f"d_valid_{lane}_pick")),
                s_valid.eq(picked_bit(m, sparse_valid[lane:], addr, f"s_valid_{lane}_pick"))]
            lane_words.append((dense_copy.data[:p.score_width], sparse_copy.data[:p.score_width]))
            lane_valid.append((d_valid, s_valid))
        last_addr = Signal.like(addr, name="read_last_addr")
        stepped = Signal(name="read_stepped")
        m.d.sync += [last_addr.eq(addr), stepped.eq(addr != last_addr)]
        d, s = (Signal(p.score_width, name=f"read_{kind}") for kind in ("dense", "sparse"))
        d_valid, s_valid = Signal(name="read_d_valid"), Signal(name="read_s_valid")
        (d0, s0), (d1, s1) = lane_words
        (dv0, sv0), (dv1, sv1) = lane_valid
        m.d.sync += [d.eq(Mux(stepped, d1, d0)), s.eq(Mux(stepped, s1, s0)),
                     d_valid.eq(Mux(stepped, dv1, dv0)), s_valid.eq(Mux(stepped, sv1, sv0))]
        take_d = d_valid & (~s_valid | exceeds(d, s))
        biased_zero = 1 << (p.score_width - 1)
        with m.If(self.read.load):
            m.d.sync += self.read.data.eq(
                biased(Mux(take_d, d, Mux(s_valid, s, biased_zero))))
        return m
