"""The row maxima of a head's kept scores, tracked while its SDDMM engines run
(docs/vitcod.md, "The hardware", phase 1)."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..common.pick import picked_bit
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
        ahead and loads it when the row changes). The reads are registered, compared
        into a register of their own, then picked into the output register: the compare
        (22 bits, a carry chain) and the pick in one cycle were a ViTCoD build's worst
        path, 9.2 ns and 20 levels (and combined on the way into the caller's register,
        9.4 ns and 26 levels). A read in a cycle with busy low sees every value presented
        before that cycle: reads may begin once the engines are idle and busy is low (three
        cycles after the last score).
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
        shape = signed(p.score_width)
        # Small memories in distributed RAM: a block RAM's unregistered output is slow, and
        # its output register would cost the read-modify-write a cycle.
        m.submodules.dense_max = dense_max = Memory(shape=shape, depth=p.max_tokens, init=[],
                                                    attrs=DISTRIBUTED)
        m.submodules.sparse_max = sparse_max = Memory(shape=p.score_width, depth=p.max_tokens,
                                                      init=[], attrs=DISTRIBUTED)
        dense_valid = Signal(p.max_tokens)
        sparse_valid = Signal(p.max_tokens)
        with m.If(self.clear):
            m.d.sync += [dense_valid.eq(0), sparse_valid.eq(0)]

        # The dense maxima: stored.
        dense_write = dense_max.write_port()
        m.d.comb += [dense_write.addr.eq(self.dense.row), dense_write.data.eq(self.dense.value),
                     dense_write.en.eq(self.dense.en)]
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
        row0 = Signal.like(self.sparse.row)
        value0 = Signal(p.score_width)
        en0 = Signal()
        m.d.sync += [row0.eq(self.sparse.row), value0.eq(biased(self.sparse.value)),
                     en0.eq(self.sparse.en)]
        sparse_old = sparse_max.read_port(transparent_for=())
        row1, row2 = Signal.like(row0), Signal.like(row0)
        value1, value2, value3 = (Signal(p.score_width) for _ in range(3))
        en1, en2 = Signal(), Signal()
        forward_2, forward_3 = Signal(), Signal()
        m.d.comb += [sparse_old.addr.eq(row0), self.busy.eq(en0 | en1 | en2)]
        # The row's valid bit, as of X, picked in two steps (common.pick: its group
        # registered beside s1, the bit picked beside the compare below): a max_tokens-to-1
        # pick from row0 into a register was a ViTCoD build's worst path, 9.0 ns, 7 levels.
        valid1 = picked_bit(m, sparse_valid, row0, "valid1")
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
        # the same maximum.)
        older = Mux(forward_3, value3, sparse_old.data)
        older_wins = Mux(forward_3, value3 > value1, valid1 & (sparse_old.data > value1))
        beats = Signal()                # value1 > value2 (used when forward_2)
        pick_value1 = Mux(forward_2, beats, ~older_wins)
        pick_value2 = forward_2 & ~beats
        new = Mux(pick_value1, value1, Mux(pick_value2, value2, older))
        incoming = value0
        m.d.sync += beats.eq(Mux(pick_value1, incoming > value1,
                                 Mux(pick_value2, incoming > value2, incoming > older)))
        m.d.sync += [row2.eq(row1), en2.eq(en1), value2.eq(new), value3.eq(value2)]
        sparse_write = sparse_max.write_port()
        m.d.comb += [sparse_write.addr.eq(row2), sparse_write.data.eq(value2),
                     sparse_write.en.eq(en2)]
        with m.If(en2):
            m.d.sync += sparse_valid.bit_select(row2, 1).eq(1)

        # The read port: both maxima read into registers, compared, then picked.
        dense_read = dense_max.read_port(transparent_for=())
        sparse_read = sparse_max.read_port(transparent_for=())
        m.d.comb += [dense_read.addr.eq(self.read.addr), sparse_read.addr.eq(self.read.addr)]
        # The valid bits are picked in two steps (common.pick), a group beside the reads
        # and its bit beside the compare (in one step, a max_tokens-to-1 multiplexer into
        # a register, it was a ViTCoD build's worst path: 9.5 ns, 7 levels).
        d_valid = picked_bit(m, dense_valid, self.read.addr, "d_valid")
        s_valid = picked_bit(m, sparse_valid, self.read.addr, "s_valid")
        d, s = dense_read.data, biased(sparse_read.data).as_signed()
        # Which to take (the dense maximum, the sparse one or neither), registered with
        # both values.
        d_2, s_2 = Signal(shape), Signal(shape)
        take_d, take_s = Signal(), Signal()
        m.d.sync += [d_2.eq(d), s_2.eq(s),
                     take_d.eq(d_valid & (~s_valid | (d > s))), take_s.eq(s_valid)]
        with m.If(self.read.load):
            m.d.sync += self.read.data.eq(Mux(take_d, d_2, Mux(take_s, s_2, 0)))
        return m
