from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.taylor.spec import TaylorParams
from ..common.multiplier import RegisteredMultiplier


class MacTile(wiring.Component):
    """The M = r x c multipliers of the Taylor pipeline and what follows them.

    Each `valid` cycle takes one block of the context memory (`stored`: r x c elements,
    row-major, the memory's output for block `addr`), r elements `a` of a K (or Q) row and
    c elements `v` of a V row:

      K/V (`query` low): block += a^T v, an outer product; the sum leaves on `write_*` four
          cycles later, to go back to `addr` (all granules). `first` (token 0) reads the
          old block as 0.
      Q (`query` high): the r x c products a[i] * G[i][j] are reduced over i by an adder
          tree and added into c running sums, restarted on `first` (block row 0); on
          `last` (the final block row) the c finished sums leave on `scores` with
          `scores_valid` and the block column `scores_column`, five cycles later.

    Stages: the multiplier inputs (the context or the V element, selected and
    registered: the block RAM's output never feeds a multiplier directly), the products,
    then the write-back register (K/V) or the adder tree's two levels and the running
    sums (Q). A block
    is read again no sooner than blocks = d²/M >= 8 cycles later, after its write-back.
    `busy` while any stage holds a block.
    """

    def __init__(self, params: TaylorParams):
        self.params = p = params
        w, r, c = p.operand_width, p.tile_rows, p.tile_cols
        super().__init__({
            "valid": In(1),
            "query": In(1),
            "first": In(1),
            "last": In(1),
            "addr": In(range(p.blocks)),
            "column": In(range(p.head_dim // c)),
            "a": In(data.ArrayLayout(signed(w), r)),
            "v": In(data.ArrayLayout(signed(w), c)),
            "stored": In(unsigned(p.mac_units * p.element_width)),
            "write_en": Out(1),
            "write_addr": Out(range(p.blocks)),
            "write_data": Out(unsigned(p.mac_units * p.element_width)),
            "scores_valid": Out(1),
            "scores": Out(data.ArrayLayout(signed(p.score_width), c)),
            "scores_column": Out(range(p.head_dim // c)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        r, c, ew = p.tile_rows, p.tile_cols, p.element_width
        elements = data.ArrayLayout(signed(ew), p.mac_units)
        stored = data.View(elements, self.stored)

        def control(name):
            """(valid, query, first, last, addr, column) registers of one stage."""
            return [Signal(name=f"{name}_valid"), Signal(name=f"{name}_query"),
                    Signal(name=f"{name}_first"), Signal(name=f"{name}_last"),
                    Signal.like(self.addr, name=f"{name}_addr"),
                    Signal.like(self.column, name=f"{name}_column")]

        given = [self.valid, self.query, self.first, self.last, self.addr, self.column]

        # Stages 1 and 2: the multipliers' operand registers (a_i, and G or v_j) and their
        # product registers (RegisteredMultiplier: on ECP5 a MULT18X18D's own registers);
        # beside them the old block (0 for a K/V run's first token).
        ctl_1 = control("in")
        old_1 = Signal(elements)
        m.d.sync += [reg.eq(value) for reg, value in zip(ctl_1, given)]
        ctl_2 = control("product")
        products = Signal(data.ArrayLayout(signed(3 * p.operand_width), p.mac_units))
        old_2 = Signal(elements)
        m.d.sync += [reg.eq(value) for reg, value in zip(ctl_2, ctl_1)]
        m.d.sync += old_2.eq(old_1)
        for i in range(r):
            for j in range(c):
                e = i * c + j
                context = stored[e][:p.context_width].as_signed()
                m.submodules[f"mult{e}"] = mult = RegisteredMultiplier(p.operand_width,
                                                                      p.context_width)
                m.d.comb += [mult.a.eq(self.a[i]),
                             mult.b.eq(Mux(self.query, context, self.v[j])),
                             products[e].eq(mult.p)]
                m.d.sync += old_1[e].eq(Mux(self.first, 0, stored[e]))

        # K/V, stage W: the updated block, registered and written back the next cycle.
        # Straight from the sum, a product register's clock-to-out, the add's carry chain
        # and the nets across the die to the context memory's blocks were one cycle
        # (12.6 ns, Taylor's worst path).
        valid_2, query_2, first_2, last_2, addr_2, column_2 = ctl_2
        updated = Signal(elements, reset_less=True)
        write_en = Signal()
        busy = Signal()
        write_addr = Signal.like(self.addr)
        for e in range(p.mac_units):
            m.d.sync += updated[e].eq(old_2[e] + products[e])
        m.d.sync += [write_en.eq(valid_2 & ~query_2), write_addr.eq(addr_2)]
        m.d.comb += [
            self.write_en.eq(write_en),
            self.write_addr.eq(write_addr),
            self.write_data.eq(updated.as_value()),
        ]

        # Q, stages 3 and 4: the adder tree over the r rows in two registered levels,
        # the rows' sums in pairs, then the pairs' sum; then the running sums. In one
        # level (a product register's clock-to-out, the carry chains of r - 1 adds and
        # the nets from the multiplier columns) it was Taylor's worst path on two of
        # three seeds (8.8 ns, 26 levels).
        valid_p, first_p, last_p = Signal(), Signal(), Signal()
        column_p = Signal.like(self.column)
        pairs = [[Signal(signed(p.score_width), name=f"pair{j}_{k}") for k in range(0, r, 2)]
                 for j in range(c)]
        m.d.sync += [valid_p.eq(valid_2 & query_2), first_p.eq(first_2), last_p.eq(last_2),
                     column_p.eq(column_2)]
        for j in range(c):
            for pair, k in zip(pairs[j], range(0, r, 2)):
                m.d.sync += pair.eq(sum(products[i * c + j] for i in range(k, min(k + 2, r))))
        valid_3, first_3, last_3 = Signal(), Signal(), Signal()
        column_3 = Signal.like(self.column)
        tree = Signal(data.ArrayLayout(signed(p.score_width), c))
        m.d.sync += [valid_3.eq(valid_p), first_3.eq(first_p), last_3.eq(last_p),
                     column_3.eq(column_p)]
        for j in range(c):
            m.d.sync += tree[j].eq(sum(pairs[j]))
        sums = Signal.like(tree)
        for j in range(c):
            m.d.comb += self.scores[j].eq(Mux(first_3, 0, sums[j]) + tree[j])
        with m.If(valid_3):
            m.d.sync += sums.eq(self.scores)
        m.d.comb += [
            self.scores_valid.eq(valid_3 & last_3),
            self.scores_column.eq(column_3),
            self.busy.eq(busy),
        ]
        # `busy` (any stage holds a block) is a register of its own, made from the stages'
        # next values: the tile never stalls, so next cycle's stages are this cycle's input
        # and stages 1, 2 and P (W and 3 follow 2 and P). Read through `write_en`, whose net
        # reaches every context memory block, it was a build's worst path (write_en ->
        # the sequencer's mac_empty -> its state, 8.7 ns, one 2.4 ns net).
        m.d.sync += busy.eq(Cat(self.valid, ctl_1[0], valid_2, valid_p).any())
        return m
