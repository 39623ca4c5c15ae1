from amaranth.hdl import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...engines.taylor.spec import (CONTEXT_READ_LATENCY, MULT_BITS, SHIFT_BITS,
                                    TaylorParams, head_register, registers)
from ..common.compare import greater_than
from ..common.delay import delayed
from .centering_pass import CenteringPass
from .context_memory import ContextMemory
from .mac_tile import MacTile
from .output_lane import OutputLane
from .output_packer import OutputPacker
from .reciprocal import Reciprocal
from .row_loader import RowLoader, beat_layout
from .sequencer import PhaseSequencer
from .serializer import Serializer
from .tile_feed import TileFeed
from .token_sums import TokenSums


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

    Components (celine/rtl/taylor/, one per file): RowLoader (input beats into two token
    slots), PhaseSequencer (the phases and which block issues when), TokenSums (S_K,
    S_V), TileFeed (a block's operands for the tile), MacTile (the multipliers, K/V
    write-back, adder tree), ContextMemory (P, then G_q), CenteringPass, Serializer (c
    sums -> one element a cycle), OutputLane (numerator, division, requantization),
    OutputPacker (beats, the output FIFO and its credits) and Reciprocal (1/N, once per
    run).

    `start` (while not `busy`) samples `tokens` (N) and the settings, one port per
    register of engines/taylor/spec.py `registers` but `tokens` (names in `settings`):
    `head_mask`, `ctx_shift`, `v_mult`, `v_shift` for every head, and each head's output
    scale `out_mult_<h>`, `out_shift_<h>`, which the output lane uses for head h's
    output. N outside 1..max_tokens sets `errors.tokens` and nothing runs. `busy` holds
    until the last output beat has left. `errors.framing` (sticky until the next start)
    flags input beats whose `last` disagrees with the block structure.
    """

    def __init__(self, params: TaylorParams):
        if not isinstance(params, TaylorParams):
            raise TypeError(f"params must be a TaylorParams, not {params!r}")
        self.params = params
        p = params
        # One port per register of spec.registers but `tokens` (narrower here).
        self.settings = tuple(r.name for r in registers(p) if r.name != "tokens")
        super().__init__({
            "i": In(stream.Signature(beat_layout(p.operand_width))),
            "o": Out(stream.Signature(beat_layout(p.operand_width))),
            "start": In(1),
            "tokens": In(unsigned(p.token_width)),
            **{r.name: In(unsigned(r.width), init=r.reset)
               for r in registers(p) if r.name in self.settings},
            "busy": Out(1),
            "errors": Out(data.StructLayout({"framing": 1, "tokens": 1})),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params

        # -- run settings, sampled at start --------------------------------------------
        tokens = Signal.like(self.tokens)
        sampled = {name: Signal.like(getattr(self, name), name=f"run_{name}")
                   for name in self.settings}
        kept = sum((~self.head_mask[h]).as_unsigned() for h in range(p.heads))
        kept_heads = Signal(range(p.heads + 1))
        launch = self.start & ~self.busy
        bad_tokens = (self.tokens == 0) | greater_than(self.tokens, p.max_tokens)
        # `begin` restarts every unit a cycle after `launch` (START_DELAY), from a register:
        # decoded from the link's `tokens` in the same cycle, it reached the row loader's
        # slot-select copies and every unit's restart through a compare and a long net
        # (10.9 ns, Taylor's worst path). The settings are sampled at `launch`, so they
        # are registers by the time `begin` comes; `busy` covers the cycle between.
        begin = Signal()
        m.d.sync += begin.eq(launch & ~bad_tokens)
        with m.If(launch):
            m.d.sync += [self.errors.framing.eq(0), self.errors.tokens.eq(bad_tokens),
                         kept_heads.eq(kept), tokens.eq(self.tokens)]
            m.d.sync += [sampled[name].eq(getattr(self, name)) for name in self.settings]

        m.submodules.loader = loader = RowLoader(p)
        m.submodules.sequencer = seq = PhaseSequencer(p)
        m.submodules.token_sums = sums = TokenSums(p)
        m.submodules.feed = feed = TileFeed(p)
        m.submodules.tile = tile = MacTile(p)
        # The centering pass writes row k of a block CONTEXT_READ_LATENCY + 1 +
        # centering_latency cycles after it read it; a block with more rows than that is
        # still being read (its later rows) when its first row is written.
        write_distance = CONTEXT_READ_LATENCY + 1 + p.centering_latency
        m.submodules.memory = memory = ContextMemory(
            p, reads_during_writes=p.tile_rows > write_distance)
        m.submodules.centering = centering = CenteringPass(p)
        m.submodules.serializer = serializer = Serializer(p)
        m.submodules.lane = lane = OutputLane(p)
        m.submodules.packer = packer = OutputPacker(p)
        m.submodules.recip = recip = Reciprocal(shift=p.recip_shift, n_width=p.token_width)

        # The tile and the centering pass take a block's word the cycle after its address,
        # so what goes with the address waits CONTEXT_READ_LATENCY - 1 cycles more.
        wait = CONTEXT_READ_LATENCY - 1
        to_tile = {name: delayed(m, getattr(feed, name), wait, f"feed_{name}")
                   for name in ("valid", "query", "first", "last", "block", "column", "a", "v")}
        to_center = {name: delayed(m, value, wait, f"center_{name}")
                     for name, value in (("issue", seq.issue_center), ("sub", seq.sub),
                                         ("ta", seq.ta), ("tb", seq.tb), ("addr", feed.addr))}

        # -- input: beats into token slots; the reciprocal of N ---------------------------
        wiring.connect(m, wiring.flipped(self.i), loader.i)
        m.d.comb += [
            loader.start.eq(begin),
            loader.tokens.eq(tokens),
            loader.heads.eq(kept_heads),
            loader.release.eq(seq.release),
            recip.start.eq(begin),
            recip.n.eq(tokens),
        ]
        with m.If(loader.framing):
            m.d.sync += self.errors.framing.eq(1)

        # -- the phases ---------------------------------------------------------------------
        m.d.comb += [
            seq.start.eq(begin),
            seq.tokens.eq(tokens),
            seq.head_mask.eq(sampled["head_mask"]),
            seq.slot_ready.eq(loader.ready),
            seq.room.eq(packer.room),
            seq.recip_done.eq(recip.done),
            seq.mac_empty.eq(~feed.valid & ~to_tile["valid"] & ~tile.busy & ~serializer.busy),
            seq.center_empty.eq(~to_center["issue"] & ~centering.busy),
            seq.lane_empty.eq(~lane.busy),
            self.busy.eq(begin | seq.running | packer.pending),
        ]

        # -- K/V and Q: token sums, the tile's operands, the MAC tile, the context ------------
        m.d.comb += [
            sums.add.eq(seq.issue_kv & (seq.ta == 0) & (seq.tb == 0)),
            sums.first.eq(seq.token == 0),
            sums.k.eq(loader.row_a),
            sums.v.eq(loader.row_b),
            feed.issue_kv.eq(seq.issue_kv),
            feed.issue_q.eq(seq.issue_q),
            feed.ta.eq(seq.ta),
            feed.tb.eq(seq.tb),
            feed.ta_zero_if_step.eq(seq.ta_zero_if_step),
            feed.ta_zero_if_hold.eq(seq.ta_zero_if_hold),
            feed.tb_zero_if_step.eq(seq.tb_zero_if_step),
            feed.tb_zero_if_hold.eq(seq.tb_zero_if_hold),
            feed.ta_steps.eq(seq.ta_steps),
            feed.tb_steps.eq(seq.tb_steps),
            feed.token.eq(seq.token),
            feed.row_a.eq(loader.row_a),
            feed.row_b.eq(loader.row_b),
            tile.valid.eq(to_tile["valid"]), tile.query.eq(to_tile["query"]),
            tile.first.eq(to_tile["first"]), tile.last.eq(to_tile["last"]),
            tile.addr.eq(to_tile["block"]), tile.column.eq(to_tile["column"]),
            tile.a.eq(to_tile["a"]), tile.v.eq(to_tile["v"]), tile.stored.eq(memory.read_data),
            memory.read_addr.eq(feed.addr),
            memory.tile_write.eq(tile.write_en),
            memory.tile_addr.eq(tile.write_addr),
            memory.tile_data.eq(tile.write_data),
        ]

        # -- centering: P -> G_q in place ---------------------------------------------------
        m.d.comb += [
            centering.issue.eq(to_center["issue"]),
            centering.sub.eq(to_center["sub"]),
            centering.ta.eq(to_center["ta"]),
            centering.tb.eq(to_center["tb"]),
            centering.addr.eq(to_center["addr"]),
            centering.stored.eq(memory.read_data),
            centering.sums_k.eq(sums.sums_k),
            centering.sums_v.eq(sums.sums_v),
            centering.tokens.eq(tokens),
            centering.ctx_shift.eq(sampled["ctx_shift"]),
            memory.center_write.eq(centering.write),
            memory.center_addr.eq(centering.write_addr),
            memory.center_row.eq(centering.write_row),
            memory.center_data.eq(centering.context),
        ]

        # -- output: finished sums -> the output lane -> beats ------------------------------
        # The output scale of the head being computed (registered: the head changes only
        # when the output lane is empty, long before the next head's first output).
        out_mult = Signal(MULT_BITS)
        out_shift = Signal(SHIFT_BITS)
        with m.Switch(seq.head):
            for h in range(p.heads):
                with m.Case(h):
                    m.d.sync += [out_mult.eq(sampled[head_register("out_mult", h)]),
                                 out_shift.eq(sampled[head_register("out_shift", h)])]
        m.d.comb += [
            serializer.load.eq(tile.scores_valid),
            serializer.scores.eq(tile.scores),
            serializer.column.eq(tile.scores_column),
            lane.valid.eq(serializer.valid),
            lane.score.eq(serializer.score),
            lane.column.eq(serializer.index),
            lane.token_sums_v.eq(sums.sums_v),
            lane.v_mult.eq(sampled["v_mult"]),
            lane.v_shift.eq(sampled["v_shift"]),
            lane.recip.eq(recip.recip),
            lane.out_mult.eq(out_mult),
            lane.out_shift.eq(out_shift),
            packer.valid.eq(lane.out_valid),
            packer.value.eq(lane.out),
            packer.tokens.eq(tokens),
            packer.clear.eq(seq.selecting),
            packer.row_start.eq(seq.row_start),
        ]
        wiring.connect(m, packer.o, wiring.flipped(self.o))
        return m
