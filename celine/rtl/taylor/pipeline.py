from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .centering import CenteringUnit
from .mac_tile import MacTile
from .output_lane import OutputLane
from ...engines.taylor.spec import LANES, MULT_BITS, SHIFT_BITS, TaylorParams
from .reciprocal import Reciprocal
from .row_loader import RowLoader, beat_layout


class TaylorPipeline(wiring.Component):
    """ViTALiTy linear Taylor attention, the inference (low-rank) part (docs/taylor.md).

    Per kept head (bit h of `head_mask` set skips head h), in four phases:
      KV      the token sums S_K, S_V and P = K^T V; the r x c MAC tile adds one block of
              the outer product K_i^T V_i per cycle into the context memory (d^2/M cycles
              per token, read-modify-write four cycles apart);
      center  G_q = clamp_2w(round_shift(N*P - S_K^T S_V, ctx_shift)), one block row per
              cycle, in place (d^2/c cycles);
      Q       A_i = Q_i G_q: r query elements times a block of G_q, reduced over the r rows
              by an adder tree into c running sums (d^2/M cycles per row); each finished
              group of c sums goes through the output lane (numerator, division by N,
              requantization) one element per cycle, then into 8-lane output beats;
      drain   the next head starts when the output lane is empty.
    A Q row starts only when the output FIFO has room for all of its beats, so the
    pipeline never stalls inside a row: backpressure on `o` holds rows back instead.

    `start` (while not `busy`) samples `tokens` (N) and the settings; N outside
    1..max_tokens sets `errors.tokens` and nothing runs. `busy` holds until the last
    output beat has left. `errors.framing` (sticky until the next start) flags input
    beats whose `last` disagrees with the block structure.
    """

    def __init__(self, params: TaylorParams):
        if not isinstance(params, TaylorParams):
            raise TypeError(f"params must be a TaylorParams, not {params!r}")
        self.params = params
        p = params
        super().__init__({
            "i": In(stream.Signature(beat_layout(p.operand_width))),
            "o": Out(stream.Signature(beat_layout(p.operand_width))),
            "start": In(1),
            "tokens": In(unsigned(p.token_width)),
            "head_mask": In(unsigned(p.heads)),
            "ctx_shift": In(unsigned(SHIFT_BITS)),
            "v_mult": In(unsigned(MULT_BITS)),
            "v_shift": In(unsigned(SHIFT_BITS)),
            "out_mult": In(unsigned(MULT_BITS), init=p.out_mult),
            "out_shift": In(unsigned(SHIFT_BITS), init=p.out_shift),
            "busy": Out(1),
            "errors": Out(data.StructLayout({"framing": 1, "tokens": 1})),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        d, r, c, w = p.head_dim, p.tile_rows, p.tile_cols, p.operand_width
        ew = p.element_width
        col_blocks, row_blocks = d // c, d // r

        m.submodules.loader = loader = RowLoader(p)
        m.submodules.recip = recip = Reciprocal(shift=p.recip_shift, n_width=p.token_width)
        m.submodules.centering = centering = CenteringUnit(p)
        m.submodules.tile = tile = MacTile(p)
        m.submodules.lane = lane = OutputLane(p)
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=len(self.o.payload.as_value()),
                                                     depth=p.output_fifo_depth)
        m.submodules.memory = memory = Memory(shape=unsigned(p.mac_units * ew),
                                              depth=p.blocks, init=[])
        rd = memory.read_port(transparent_for=())
        wr = memory.write_port(granularity=c * ew)
        wiring.connect(m, wiring.flipped(self.i), loader.i)

        # -- run settings, sampled at start --------------------------------------------
        tokens = Signal.like(self.tokens)
        mask = Signal.like(self.head_mask)
        ctx_shift = Signal.like(self.ctx_shift)
        v_mult = Signal.like(self.v_mult)
        v_shift = Signal.like(self.v_shift)
        out_mult = Signal.like(self.out_mult)
        out_shift = Signal.like(self.out_shift)
        running = Signal()
        kept = sum((~self.head_mask[h]).as_unsigned() for h in range(p.heads))
        launch = self.start & ~self.busy
        bad_tokens = (self.tokens == 0) | (self.tokens > p.max_tokens)
        with m.If(launch):
            m.d.sync += [self.errors.framing.eq(0), self.errors.tokens.eq(bad_tokens)]
            with m.If(~bad_tokens):
                m.d.sync += [
                    running.eq(1), tokens.eq(self.tokens), mask.eq(self.head_mask),
                    ctx_shift.eq(self.ctx_shift), v_mult.eq(self.v_mult),
                    v_shift.eq(self.v_shift), out_mult.eq(self.out_mult),
                    out_shift.eq(self.out_shift),
                ]
        kept_heads = Signal(range(p.heads + 1))
        with m.If(launch):
            m.d.sync += kept_heads.eq(kept)
        m.d.comb += [
            loader.start.eq(launch & ~bad_tokens),
            loader.tokens.eq(Mux(launch, self.tokens, tokens)),
            loader.heads.eq(Mux(launch, kept, kept_heads)),
            recip.start.eq(launch & ~bad_tokens),
            recip.n.eq(self.tokens),
        ]
        with m.If(loader.framing):
            m.d.sync += self.errors.framing.eq(1)
        m.d.comb += self.busy.eq(running | fifo.r_rdy)

        # -- the token sums (S_K, S_V) and the slot the computation reads -------------------
        sums_k = Signal(data.ArrayLayout(signed(p.sum_width), d))
        sums_v = Signal(data.ArrayLayout(signed(p.sum_width), d))
        read_slot = Signal()
        with m.If(loader.release):
            m.d.sync += read_slot.eq(~read_slot)
        with m.If(launch):
            m.d.sync += read_slot.eq(0)
        row_a = Mux(read_slot, loader.row_a[1].as_value(), loader.row_a[0].as_value())
        row_b = Mux(read_slot, loader.row_b[1].as_value(), loader.row_b[0].as_value())
        slot_full = loader.full.bit_select(read_slot, 1)

        # -- the MAC tile pipeline (KV and Q phases) ---------------------------------------
        # issue -> s1 (the block's memory data arrives) -> the MAC tile (rtl/taylor/mac_tile.py)
        head = Signal(range(p.heads + 1))
        token = Signal(p.token_width)
        ta = Signal(range(row_blocks))        # block row: K (or Q) elements ta*r ..
        tb = Signal(range(col_blocks))        # block column: V (or output) elements tb*c ..
        sub = Signal(range(r))                # the row inside a block (centering)
        issue_kv = Signal()
        issue_q = Signal()
        issue_center = Signal()
        last_ta, last_tb = ta == row_blocks - 1, tb == col_blocks - 1

        m.d.comb += rd.addr.eq(ta * col_blocks + tb)

        operand = data.ArrayLayout(signed(w), r)
        s1_valid, s1_query, s1_first, s1_last = Signal(), Signal(), Signal(), Signal()
        s1_addr = Signal(range(p.blocks))
        s1_tb = Signal(range(col_blocks))
        s1_a = Signal(operand)
        s1_v = Signal(data.ArrayLayout(signed(w), c))
        m.d.sync += [
            s1_valid.eq(issue_kv | issue_q),
            s1_query.eq(issue_q),
            s1_first.eq(Mux(issue_q, ta == 0, token == 0)),
            s1_last.eq(last_ta),
            s1_addr.eq(rd.addr),
            s1_tb.eq(tb),
            s1_a.eq(row_a.word_select(ta, r * w)),
            s1_v.eq(row_b.word_select(tb, c * w)),
        ]
        m.d.comb += [
            tile.valid.eq(s1_valid), tile.query.eq(s1_query), tile.first.eq(s1_first),
            tile.last.eq(s1_last), tile.addr.eq(s1_addr), tile.column.eq(s1_tb),
            tile.a.eq(s1_a), tile.v.eq(s1_v), tile.stored.eq(rd.data),
        ]

        # Serializer: c finished sums -> the output lane, one per cycle. A new group
        # arrives every d/r cycles and c <= d/r (mac_units <= head_dim), so it never waits.
        held = Signal.like(tile.scores)
        held_tb = Signal(range(col_blocks))
        held_count = Signal(range(c + 1))
        held_index = Signal(range(c))
        m.d.comb += [
            lane.valid.eq(held_count != 0),
            lane.score.eq(held[held_index]),
            lane.column.eq(held_tb * c + held_index),
        ]
        with m.If(held_count != 0):
            m.d.sync += [held_count.eq(held_count - 1), held_index.eq(held_index + 1)]
        with m.If(tile.scores_valid):
            m.d.sync += [held.eq(tile.scores), held_tb.eq(tile.scores_column), held_count.eq(c),
                         held_index.eq(0)]

        m.d.comb += [
            lane.token_sums_v.eq(sums_v),
            lane.v_mult.eq(v_mult), lane.v_shift.eq(v_shift),
            lane.recip.eq(recip.recip),
            lane.out_mult.eq(out_mult), lane.out_shift.eq(out_shift),
        ]

        # Packer: 8 output elements per beat, `last` on a head's final beat.
        packed = Signal(data.ArrayLayout(signed(w), LANES - 1))
        packed_count = Signal(range(LANES))
        head_beats = Signal(range(p.max_tokens * p.row_beats + 1))
        beat = Signal(beat_layout(w))
        m.d.comb += [
            beat.data.as_value().eq(Cat(packed.as_value(), lane.out)),
            beat.last.eq(head_beats == tokens * p.row_beats - 1),
            fifo.w_data.eq(beat.as_value()),
            fifo.w_en.eq(lane.out_valid & (packed_count == LANES - 1)),
        ]
        with m.If(lane.out_valid):
            m.d.sync += packed_count.eq(packed_count + 1)
            for k in range(LANES - 1):
                with m.If(packed_count == k):
                    m.d.sync += packed[k].eq(lane.out)
            with m.If(packed_count == LANES - 1):
                m.d.sync += [packed_count.eq(0), head_beats.eq(head_beats + 1)]
        m.d.comb += [
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o.ready),
        ]

        # Output credits: beats of started rows not yet taken from `o`.
        reserved = Signal(range(p.output_fifo_depth + 1))
        row_start = issue_q & (ta == 0) & (tb == 0)
        taken = self.o.valid & self.o.ready
        m.d.sync += reserved.eq(reserved + Mux(row_start, p.row_beats, 0) - taken)
        room = reserved + p.row_beats <= p.output_fifo_depth

        # -- centering --------------------------------------------------------------------
        c1_valid = Signal()
        c1_sub = Signal(range(r))
        c1_ta = Signal(range(row_blocks))
        c1_tb = Signal(range(col_blocks))
        c1_addr = Signal(range(p.blocks))
        m.d.sync += [c1_valid.eq(issue_center), c1_sub.eq(sub), c1_ta.eq(ta), c1_tb.eq(tb),
                     c1_addr.eq(rd.addr)]
        c2_kv = Signal(data.ArrayLayout(signed(ew), c))
        c2_sum_k = Signal(signed(p.sum_width))
        c2_sums_v = Signal(data.ArrayLayout(signed(p.sum_width), c))
        m.d.sync += [
            c2_kv.as_value().eq(rd.data.word_select(c1_sub, c * ew)),
            c2_sum_k.eq(sums_k[c1_ta * r + c1_sub]),
        ]
        for j in range(c):
            m.d.sync += c2_sums_v[j].eq(sums_v[c1_tb * c + j])
        m.d.comb += [
            centering.kv.eq(c2_kv), centering.token_sum_k.eq(c2_sum_k),
            centering.token_sums_v.eq(c2_sums_v), centering.tokens.eq(tokens),
            centering.ctx_shift.eq(ctx_shift),
        ]
        # (valid, address, row) travel beside the centering unit's pipeline.
        track = [(c1_valid, c1_addr, c1_sub)]
        for k in range(1 + centering.latency):
            stage = (Signal(name=f"cv_{k}"), Signal(range(p.blocks), name=f"ca_{k}"),
                     Signal(range(r), name=f"cs_{k}"))
            m.d.sync += [stage[n].eq(track[-1][n]) for n in range(3)]
            track.append(stage)
        center_valid, center_addr, center_sub = track[-1]
        widened = Signal(data.ArrayLayout(signed(ew), c))   # G_q sign-extended to an element
        for j in range(c):
            m.d.comb += widened[j].eq(centering.context[j])

        with m.If(center_valid):
            m.d.comb += [
                wr.addr.eq(center_addr),
                wr.data.eq(widened.as_value().replicate(r)),
                wr.en.eq(Const(1, r) << center_sub),
            ]
        with m.Elif(tile.write_en):
            m.d.comb += [
                wr.addr.eq(tile.write_addr),
                wr.data.eq(tile.write_data),
                wr.en.eq(Const((1 << r) - 1, r)),
            ]

        # -- sequencing -------------------------------------------------------------------
        mac_empty = ~s1_valid & ~tile.busy & (held_count == 0)
        lane_empty = Signal()
        m.d.comb += lane_empty.eq(~lane.busy)
        center_empty = ~c1_valid & ~Cat(*(t[0] for t in track)).any()

        with m.FSM():
            with m.State("IDLE"):
                with m.If(launch & ~bad_tokens):
                    m.d.sync += head.eq(0)
                    m.next = "SELECT"
            with m.State("SELECT"):
                m.d.sync += [token.eq(0), ta.eq(0), tb.eq(0), sub.eq(0), head_beats.eq(0)]
                with m.If(head == p.heads):
                    m.d.sync += running.eq(0)
                    m.next = "IDLE"
                with m.Elif(mask.bit_select(head, 1)):
                    m.d.sync += head.eq(head + 1)
                with m.Else():
                    m.next = "KV"
            with m.State("KV"):
                with m.If(slot_full):
                    m.d.comb += issue_kv.eq(1)
                    with m.If((ta == 0) & (tb == 0)):
                        for a in range(d):
                            first = token == 0
                            m.d.sync += [
                                sums_k[a].eq(Mux(first, 0, sums_k[a]) +
                                             row_a.word_select(a, w).as_signed()),
                                sums_v[a].eq(Mux(first, 0, sums_v[a]) +
                                             row_b.word_select(a, w).as_signed()),
                            ]
                    m.d.sync += tb.eq(tb + 1)
                    with m.If(last_tb):
                        m.d.sync += [tb.eq(0), ta.eq(ta + 1)]
                        with m.If(last_ta):
                            m.d.sync += [ta.eq(0), token.eq(token + 1)]
                            m.d.comb += loader.release.eq(1)
                            with m.If(token == tokens - 1):
                                m.next = "KV_DRAIN"
            with m.State("KV_DRAIN"):
                m.d.sync += token.eq(0)
                with m.If(mac_empty):
                    m.next = "CENTER"
            with m.State("CENTER"):
                m.d.comb += issue_center.eq(1)
                m.d.sync += sub.eq(sub + 1)
                with m.If(sub == r - 1):
                    m.d.sync += [sub.eq(0), tb.eq(tb + 1)]
                    with m.If(last_tb):
                        m.d.sync += [tb.eq(0), ta.eq(ta + 1)]
                        with m.If(last_ta):
                            m.d.sync += ta.eq(0)
                            m.next = "CENTER_DRAIN"
            with m.State("CENTER_DRAIN"):
                with m.If(center_empty):
                    m.next = "Q"
            with m.State("Q"):
                starting = (ta == 0) & (tb == 0)
                with m.If(~starting | (slot_full & room & recip.done)):
                    m.d.comb += issue_q.eq(1)
                    m.d.sync += ta.eq(ta + 1)
                    with m.If(last_ta):
                        m.d.sync += [ta.eq(0), tb.eq(tb + 1)]
                        with m.If(last_tb):
                            m.d.sync += [tb.eq(0), token.eq(token + 1)]
                            m.d.comb += loader.release.eq(1)
                            with m.If(token == tokens - 1):
                                m.next = "Q_DRAIN"
            with m.State("Q_DRAIN"):
                with m.If(mac_empty & lane_empty):
                    m.d.sync += head.eq(head + 1)
                    m.next = "SELECT"
        return m
