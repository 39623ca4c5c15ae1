"""The Taylor pipeline's formal proofs (`PROOFS`, the record's `proofs`; docs/formal.md):
its output packer (rtl/taylor/output_packer.py): its row credits never let its output
FIFO overflow, and every element comes out once, in order, in its lane of its beat.

The packer packs the output lane's elements (`valid`, `value`) eight to a beat into a
FIFO that cannot refuse one (the lane never stalls). Its credit: a Q row starts
(`row_start`) only with `room`, which is high while the FIFO has room for one more row
of beats (row_beats) beyond those of the rows started and not yet taken from `o`
(`reserved`). The harness plays the pipeline: it numbers the elements (element n carries
n modulo 2**operand_width, so the beat n holds 8n .. 8n + 7) and gives them only for
rows started: the elements owed (8·row_beats a row started, one less for each given)
cover every element, counting a row started in the element's own cycle. Free inputs:
`valid`, `row_start`, `clear`, `tokens`, `o.ready` and the reset; the contract (an
Assume): `row_start` only with `room`, `valid` only with an element owed. Asserted
every cycle:

- credit: the FIFO is never written while full (`w_en` implies `w_rdy`), and the beats
  packed and not taken are at most its depth;
- `reserved` (at most the depth) covers the beats in the FIFO and those still to come of
  the rows started: 8·reserved = 8·(FIFO level) + elements owed + elements packed;
- order: a beat offered on `o` is beat `taken` (the beats taken so far): lane k holds
  element 8·taken + k;
- held: a beat offered on `o` and not taken stays, unchanged.

The invariant: the elements owed and the ones in the partial beat make whole beats, the
partial beat holds the elements before the next one, and the FIFO's invariant (its
words are the beats after the one offered, celine.formal.credits.fifo_invariant).
`PackerHarness(params, order=False)` proves the credit alone (no order, no words in the
invariant): the order's invariant grows with the FIFO's words and lanes, so it is proven
at small parameters, the credit at the default ones. (`last`, from the head's beat
count and `tokens`, is not checked here.)
"""

from amaranth.hdl import Assert, Assume, Cat, Const, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In

from ...formal.credits import count, fifo_invariant, stalled_beat_held
from ...formal.insides import Insides
from ...formal.prove import Proof
from ...rtl.taylor.output_packer import OutputPacker
from ...rtl.taylor.row_loader import beat_layout
from .spec import LANES, TaylorParams

__all__ = ["PROOFS", "PackerHarness"]


class PackerHarness(wiring.Component):
    """`params`: a TaylorParams (small ones: row_beats and the FIFO depth are what
    matter); `packer`: the class under proof."""

    def __init__(self, params=None, *, order=True, packer=OutputPacker):
        self._params = params if params is not None else TaylorParams()
        self._order = order
        self._packer = packer
        p = self._params
        # The beats in the FIFO are counted modulo 2**(operand_width - 3).
        if p.output_fifo_depth >= 1 << (p.operand_width - 3):
            raise ValueError(f"output_fifo_depth must be below 2 ** (operand_width - 3) "
                             f"for the harness's beat count, not {p.output_fifo_depth}")
        super().__init__({"valid": In(1), "row_start": In(1), "clear": In(1),
                          "tokens": In(p.token_width), "o_ready": In(1)})

    def elaborate(self, platform):
        m = Module()
        p = self._params
        w, rb = p.operand_width, p.row_beats
        depth = p.output_fifo_depth
        per_row = LANES * rb
        packer = self._packer(p)
        dut = Insides(packer, platform)
        fifo = dut.open("fifo")
        o = packer.o

        elements = count(m, packer.valid, w, "elements")      # the next element's number
        taken = count(m, o.valid & o.ready, w - 3, "taken")
        owed = Signal(range(LANES * depth + per_row + 1))      # elements of rows started
        m.d.sync += owed.eq(owed + Mux(packer.row_start, per_row, 0) - packer.valid)
        m.d.comb += [packer.valid.eq(self.valid), packer.value.eq(elements),
                     packer.row_start.eq(self.row_start), packer.clear.eq(self.clear),
                     packer.tokens.eq(self.tokens), o.ready.eq(self.o_ready)]

        # The pipeline's contract.
        with m.If(self.row_start):
            m.d.comb += Assume(packer.room)
        with m.If(self.valid):
            m.d.comb += Assume((owed != 0) | self.row_start)

        def holds(beat, n):
            """`beat` (a view of beat_layout) is beat n."""
            first = Cat(Const(0, 3), n)[:w]                      # 8n
            return Cat(*(beat.data[k].as_unsigned() == (first + k)[:w]
                         for k in range(LANES))).all()

        # The property.
        component = fifo.component
        m.d.comb += Assert(~component.w_en | component.w_rdy)
        in_fifo = Signal(w - 3)
        m.d.comb += [in_fifo.eq(elements[3:] - taken), Assert(in_fifo <= depth)]
        # (the FIFO's invariant first: it adds read ports to the FIFO's memory)
        if self._order:
            fifo_invariant(m, fifo, in_fifo, taken,
                           lambda word, n: holds(data.View(beat_layout(w), word), n))
        else:
            fifo_invariant(m, fifo, in_fifo)
        reserved = dut.signal("reserved")
        packed_count = dut.signal("packed_count")
        m.d.comb += [Assert(reserved <= depth),
                     Assert(reserved * LANES == in_fifo * LANES + owed + packed_count)]
        if self._order:
            with m.If(o.valid):
                m.d.comb += Assert(holds(o.payload, taken))
        stalled_beat_held(m, o)

        # The invariant: whole beats owed, and the partial beat (the FIFO's: above).
        m.d.comb += [Assert(packed_count == elements[:3]),
                     Assert((owed + packed_count)[:3] == 0)]
        if self._order:
            packed = dut.signal("packed")
            lanes = data.View(data.ArrayLayout(w, LANES - 1), packed)
            for k in range(LANES - 1):
                with m.If(k < packed_count):
                    m.d.comb += Assert(lanes[k] == (Cat(Const(0, 3), elements[3:]) + k)[:w])

        m.submodules.dut = dut
        return m


def _packer(order=True, **params):
    return lambda: PackerHarness(TaylorParams(**params), order=order)


_CREDIT = ("its FIFO never written while full; reserved covers the FIFO and the rows "
           "started, at most the depth")
_ORDER = f"{_CREDIT}; elements in order, each in its lane of its beat"

PROOFS = [
    Proof("OutputPacker (row_beats 1, FIFO 3)", _ORDER,
          _packer(head_dim=8, mac_units=1, max_tokens=4, heads=1)),
    Proof("OutputPacker (row_beats 2, FIFO 8, operand width 7)", _ORDER,
          _packer(head_dim=16, mac_units=16, max_tokens=4, heads=1, operand_width=7)),
    Proof("OutputPacker (default parameters: row_beats 8, FIFO 24)", _CREDIT,
          _packer(order=False)),
]
