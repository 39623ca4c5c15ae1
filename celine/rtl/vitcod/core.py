from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.vitcod.spec import (AE_OPERANDS, AE_STEPS, Errors, VitcodParams, ae_shape,
                                    buffers)
from ...spec.numerics import MULT_BITS, SHIFT_BITS
from ..shell.block_ram import BlockRAM
from ..shell.contract import (CYCLE_BITS, ERROR_BITS, RESULT_WORD_BITS, buffer_port_signature)
from .ae_codec import BIAS_BITS, WEIGHT_BITS
from .ae_decoder import AeDecoder
from .ae_encoder import AeEncoder
from .csr_check import CsrCheck
from .dense_sddmm import DenseSddmm
from .index_check import IndexCheck
from .mac_bank import MacBank
from .row_max import RowMax
from .softmax_unit import ROW_MAX_READ_LATENCY, SCORE_READ_LATENCY, SoftmaxUnit
from .sparse_sddmm import SparseSddmm
from .spmm import Spmm

__all__ = ["VitcodCore", "head_fields", "ae_fields", "AE_FIELD_PREFIX"]


def head_fields(params):
    """The per-head runtime values: name -> width (docs/vitcod.md, "Registers")."""
    p = params
    return {"globals": p.token_bits + 1, "nnz": p.position_bits + 1, "exp_mult": MULT_BITS,
            "exp_shift": SHIFT_BITS, "out_mult": MULT_BITS, "out_shift": SHIFT_BITS}


# The core's ports of each auto-encoder part (with params.autoencoder): "ae_weights" ...
# for the decoders, "ae_enc_weights" ... for the encoders; the mixers' inputs drop it.
AE_FIELD_PREFIX = {"decoder": "ae_", "encoder": "ae_enc_"}


def ae_fields(params, part="decoder"):
    """The runtime values of `part`'s ("decoder" or "encoder") mixers (with
    params.autoencoder), one per AE_OPERANDS entry: port name -> shape of one operand's
    value. A decoder's weights are H rows of C, an encoder's C rows of H."""
    p = params
    rows, cols = ae_shape(p, part)
    prefix = AE_FIELD_PREFIX[part]
    return {prefix + "weights": data.ArrayLayout(data.ArrayLayout(signed(WEIGHT_BITS), cols),
                                                 rows),
            prefix + "biases": data.ArrayLayout(signed(BIAS_BITS), rows),
            prefix + "mult": unsigned(MULT_BITS), prefix + "shift": unsigned(SHIFT_BITS)}


def _score_memory(params, depth):
    """A score memory (signed scores, stored in whole bytes), read through its block's
    output register: SCORE_READ_LATENCY, the softmax unit's contract."""
    ram = BlockRAM.for_bits(params.score_width, max(1, depth), output_register=True)
    if ram.read_latency != SCORE_READ_LATENCY:
        raise RuntimeError(f"a score memory reads in {ram.read_latency} cycles, the softmax "
                           f"unit expects {SCORE_READ_LATENCY}")
    return ram


def _score_write(m, ram, score):
    """An engine's score write port ({addr, data, en}) into `ram`."""
    ram.write_word(m, score.addr, score.data, score.en)


def _score_read(m, ram, port):
    """The softmax unit's read `port` from `ram` (its low score_width bits, signed)."""
    m.d.comb += [ram.raddr.eq(port.addr), port.data.eq(ram.data[:len(port.data)])]


class VitcodCore(wiring.Component):
    """The ViTCoD engine over the shell's buffers (docs/vitcod.md, "The hardware").

    On `start` (the runtime values stable until `busy` drops, as the shell keeps them):
    N outside 1 .. max_tokens sets Errors.TOKENS, a kept head with g > max_global or
    nnz > sparse_capacity sets Errors.CAPACITY, and nothing runs. Otherwise, for each kept
    head in order (bit h of `head_mask` set skips head h):

    1. SDDMM: the denser engine (gcols port A; q, k port B) and the sparser engine (q, k
       port A; csc port A) fill the score memories and the row maxima while CsrCheck
       (gcols port B, csr port A: the global columns and the CSR list) and IndexCheck
       (csc, csr port B) check the lists. A failed check sets Errors.INDEX and ends the
       run before the head writes anything.
    2. Softmax and SpMM: the softmax unit (csr port A, gcols port B) streams (col, p) to
       the SpMM (v port A), which writes the head's N output rows to `out`.

    The MAC bank belongs to the SDDMM engines in phase 1 (units 0 .. dense_macs-1 to the
    denser one) and to the SpMM in phase 2 (its first spmm_units: all M, or d when M > d). `cycles` counts the cycles `busy` was high,
    `result_words` the rows written (saturating).

    With params.autoencoder, before the first head (after the TOKENS and CAPACITY checks),
    the auto-encoder phase: the steps of spec.AE_STEPS in order, each if its bit of
    `ae_enable` (spec.AeEnable) is set. Encoding Q (AeEncoder) compresses the H heads of q
    (words 0 .. H*max_tokens-1, tokens 0 .. N-1) into its C code heads (words from
    H*max_tokens: spec.code_word); encoding K does the same for k; decoding Q (AeDecoder)
    rebuilds q's H heads from its code heads, then K's. Each reads through the buffer's
    port B and writes through port A, on the bank's first spmm_units (all M, or d when
    M > d). Every head is mixed, skipped ones too: the auto-encoder mixes across heads.
    `ae_*[0]` / `ae_enc_*[0]` are Q's decoder / encoder values, `[1]` K's.
    """

    def __init__(self, params):
        if not isinstance(params, VitcodParams):
            raise TypeError(f"params must be a VitcodParams, not {params!r}")
        self.params = params
        p = params
        self.buffers = buffers(p)
        per_head = {name: In(data.ArrayLayout(unsigned(width), p.heads))
                    for name, width in head_fields(p).items()}
        super().__init__({
            "start": In(1),
            "tokens": In(16),
            "head_mask": In(p.heads),
            **per_head,
            **({"ae_enable": In(len(AE_STEPS)),
                **{name: In(data.ArrayLayout(shape, len(AE_OPERANDS)))
                   for part in AE_FIELD_PREFIX
                   for name, shape in ae_fields(p, part).items()}} if p.autoencoder else {}),
            "busy": Out(1),
            "errors": Out(ERROR_BITS),
            "cycles": Out(CYCLE_BITS),
            "result_words": Out(RESULT_WORD_BITS),
            "mem": Out(wiring.Signature({b.name: Out(buffer_port_signature(b))
                                         for b in self.buffers})),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        mem = self.mem
        has_dense, has_sparse = p.dense_macs > 0, p.sparse_macs > 0

        m.submodules.bank = bank = MacBank(p.mac_units)
        m.submodules.row_max = row_max = RowMax(p)
        if RowMax.read_latency != ROW_MAX_READ_LATENCY:
            raise RuntimeError(f"RowMax reads in {RowMax.read_latency} cycles, the softmax "
                               f"unit expects {ROW_MAX_READ_LATENCY}")
        m.submodules.softmax = softmax = SoftmaxUnit(p)
        m.submodules.spmm = spmm = Spmm(p)
        if has_dense:
            m.submodules.dense = dense = DenseSddmm(p)
            m.submodules.dense_scores = dense_scores = _score_memory(
                p, p.max_tokens * p.max_global)
        m.submodules.csr_check = csr_check = CsrCheck(p)
        if has_sparse:
            m.submodules.sparse = sparse = SparseSddmm(p)
            m.submodules.index_check = index_check = IndexCheck(p)
            m.submodules.sparse_scores = sparse_scores = _score_memory(p, p.sparse_capacity)

        # The auto-encoder phase: step `ae_step` of AE_STEPS; `ae_on` (one-hot, registered)
        # marks the step whose mixer owns the bank and its buffer's ports while it runs.
        mixers = {}
        if p.autoencoder:
            m.submodules.decoder = mixers["decoder"] = AeDecoder(p)
            m.submodules.encoder = mixers["encoder"] = AeEncoder(p)
        steps = len(AE_STEPS)
        ae_step = Signal(range(steps))
        ae_on = Signal(steps)
        ae_start = Signal()
        ae_running = Signal()                     # some mixer owns the bank (ae_on != 0)
        encoding = Signal()                       # ... and it is the encoder

        def step_is(operand=None, part=None):
            """The steps of `operand` and/or `part`, as a mask of AE_STEPS."""
            return sum(1 << s for s, (_, x, y) in enumerate(AE_STEPS)
                       if operand in (None, x) and part in (None, y))

        def current_is(operand=None, part=None):
            """ae_step is a step of `operand` and/or `part` (from the step register)."""
            return Const(step_is(operand, part), steps).bit_select(ae_step, 1)

        # -- the run's sequence ------------------------------------------------------------
        head = Signal(range(p.heads + 1))
        phase_b = Signal()                        # the MAC bank and csr port A: phase 2's
        head_base = Signal(range(p.heads * p.max_tokens + 1))
        list_base = Signal(range(max(1, p.heads * p.sparse_capacity) + 1))
        gcols_base = Signal(range(p.heads * p.max_global + 2))
        current = {name: Signal(width, name=f"head_{name}")
                   for name, width in head_fields(p).items()}
        # The phases' start pulses (attributes, so a testbench can watch the phases):
        # registers, high in the START_A / START_B state, set on the way in, because they
        # fan out across the engine (the DPU arrays' slot counters, the checks).
        start_a = self.phase_1_start = Signal()
        start_b = self.phase_2_start = Signal()
        m.d.sync += [start_a.eq(0), start_b.eq(0)]
        tokens = self.tokens[:p.token_bits + 1]

        kept = Array(~self.head_mask[h] for h in range(p.heads))
        over = Signal()
        m.d.comb += over.eq(0)
        for h in range(p.heads):
            with m.If(kept[h] & ((self.globals[h] > p.max_global) |
                                 (self.nnz[h] > p.sparse_capacity))):
                m.d.comb += over.eq(1)

        phase_a_busy = row_max.busy | csr_check.busy
        index_error = csr_check.error
        if has_dense:
            phase_a_busy = phase_a_busy | dense.busy
        if has_sparse:
            phase_a_busy = phase_a_busy | sparse.busy | index_check.busy
            index_error = index_error | sparse.error | index_check.error

        # The phases' ends, registered: the phase's units idle, and not started this cycle
        # (their busy rises the cycle after the pulse). Read straight, the SpMM's row count
        # through its busy into WAIT_B's end and on to the head registers' enables was a
        # ViTCoD build's worst path (9.3 ns): a cycle more a phase (cycles.PHASE_TURN,
        # HEAD_TURN). The error flags are sticky, so they are read a cycle late too.
        a_idle, b_idle = Signal(), Signal()
        m.d.sync += [a_idle.eq(~phase_a_busy & ~start_a),
                     b_idle.eq(~softmax.busy & ~spmm.busy & ~start_b)]

        # The registers the sequencer changes for a head that fan out across the engine
        # (the head's index and bases, its values, phase_b) change a cycle after its
        # decision, from registered pulses, not from the state's decode: from the state
        # register across the die to that decode and back to phase_b's enable was a ViTCoD
        # build's worst path (9.3 ns, three nets of 2.3 ns). A cycle more each: LOAD,
        # PRE_B, ADVANCE (cycles.RUN_SETUP, PHASE_TURN, HEAD_TURN). A run's end rewinds
        # them for the next (`rewind`, from DONE: they are 0 from reset too).
        advance, load, to_phase_a, to_phase_b, rewind = (
            Signal(name=name) for name in ("advance", "load", "to_phase_a", "to_phase_b",
                                           "rewind"))
        m.d.sync += [advance.eq(0), load.eq(0), to_phase_a.eq(0), to_phase_b.eq(0),
                     rewind.eq(0)]
        with m.If(rewind):
            m.d.sync += [head.eq(0), head_base.eq(0), list_base.eq(0), gcols_base.eq(0),
                         phase_b.eq(0)]
        with m.If(advance):
            m.d.sync += [head.eq(head + 1), head_base.eq(head_base + p.max_tokens),
                         list_base.eq(list_base + p.sparse_capacity),
                         gcols_base.eq(gcols_base + p.max_global)]
        with m.If(load):
            for name, signal in current.items():
                m.d.sync += signal.eq(Array(getattr(self, name))[head])
            m.d.sync += start_a.eq(1)
        with m.If(to_phase_b):
            m.d.sync += [phase_b.eq(1), start_b.eq(1)]
        with m.If(to_phase_a):
            m.d.sync += phase_b.eq(0)

        # The cycles busy was high, cleared by a start while idle (as `result_words`
        # below; IDLE's decode into the 32-bit count was a ViTCoD build's slow path, 8.4 ns).
        with m.If(self.start & ~self.busy):
            m.d.sync += self.cycles.eq(0)
        with m.Elif(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        # The rows written, counted from each write a cycle late (`wrote`) and cleared by a
        # start while idle (`busy` is low exactly in IDLE): no state decode into the count
        # (IDLE's decode and the write into it were a build's worst path, 8.7 ns). The last
        # write lands a cycle after it, cycles before `busy` falls (the SpMM is busy
        # through its write, and the sequencer takes turns after it).
        wrote = Signal()
        m.d.sync += wrote.eq(mem.out.write)
        with m.If(self.start & ~self.busy):
            m.d.sync += self.result_words.eq(0)
        with m.Elif(wrote & (self.result_words != (1 << RESULT_WORD_BITS) - 1)):
            m.d.sync += self.result_words.eq(self.result_words + 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [self.busy.eq(1), self.errors.eq(0)]
                    with m.If((self.tokens == 0) | (self.tokens > p.max_tokens)):
                        m.d.sync += self.errors.eq(Errors.TOKENS)
                        m.next = "DONE"
                    with m.Elif(over):
                        m.d.sync += self.errors.eq(Errors.CAPACITY)
                        m.next = "DONE"
                    with m.Else():
                        m.d.sync += ae_step.eq(0)
                        m.next = "AE" if p.autoencoder else "NEXT_HEAD"
            if p.autoencoder:
                # One visit a step: start its mixer if its ae_enable bit is set.
                wanted = Cat(*(self.ae_enable[flag.bit_length() - 1] for flag, _, _ in AE_STEPS))
                last_step = ae_step == steps - 1
                with m.State("AE"):
                    with m.If(wanted.bit_select(ae_step, 1)):
                        m.d.comb += ae_start.eq(1)
                        m.d.sync += [ae_on.eq(Const(1, steps) << ae_step), ae_running.eq(1),
                                     encoding.eq(current_is(part="encoder"))]
                        m.next = "AE_WAIT"
                    with m.Elif(~last_step):
                        m.d.sync += ae_step.eq(ae_step + 1)
                    with m.Else():
                        m.next = "NEXT_HEAD"
                with m.State("AE_WAIT"):
                    busy = Mux(encoding, mixers["encoder"].busy, mixers["decoder"].busy)
                    with m.If(~busy):
                        m.d.sync += [ae_on.eq(0), ae_running.eq(0), ae_step.eq(ae_step + 1)]
                        with m.If(last_step):
                            m.next = "NEXT_HEAD"
                        with m.Else():
                            m.next = "AE"
            with m.State("NEXT_HEAD"):
                # One head a visit: skip it, or load its values and start its SDDMM.
                with m.If(head == p.heads):
                    m.next = "DONE"
                with m.Elif(~kept[head]):
                    m.d.sync += advance.eq(1)
                    m.next = "ADVANCE"
                with m.Else():
                    m.d.sync += load.eq(1)
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.next = "START_A"          # `load` takes the head's values, pulses start_a
            with m.State("START_A"):
                m.next = "WAIT_A"
            with m.State("WAIT_A"):
                with m.If(a_idle):
                    with m.If(index_error):
                        m.d.sync += self.errors.eq(Errors.INDEX)
                        m.next = "DONE"
                    with m.Else():
                        m.d.sync += to_phase_b.eq(1)
                        m.next = "PRE_B"
            with m.State("PRE_B"):
                m.next = "START_B"          # `to_phase_b` sets phase_b, pulses start_b
            with m.State("START_B"):
                m.next = "WAIT_B"
            with m.State("WAIT_B"):
                with m.If(b_idle):
                    m.d.sync += [advance.eq(1), to_phase_a.eq(1)]
                    m.next = "ADVANCE"
            with m.State("ADVANCE"):
                m.next = "NEXT_HEAD"        # `advance` steps the head's registers
            with m.State("DONE"):
                m.d.sync += [self.busy.eq(0), rewind.eq(1)]
                m.next = "IDLE"

        # -- phase 1 -----------------------------------------------------------------------
        m.d.comb += row_max.clear.eq(start_a)
        for unit in ([dense] if has_dense else []) + ([sparse] if has_sparse else []):
            m.d.comb += [unit.start.eq(start_a), unit.tokens.eq(tokens),
                         unit.globals.eq(current["globals"]), unit.head_base.eq(head_base)]
        # gcols: the denser engine on port A; port B the list check's in phase 1 and the
        # softmax unit's in phase 2.
        m.d.comb += [
            csr_check.start.eq(start_a), csr_check.tokens.eq(tokens),
            csr_check.globals.eq(current["globals"]), csr_check.nnz.eq(current["nnz"]),
            csr_check.list_base.eq(list_base), csr_check.gcols_base.eq(gcols_base),
            csr_check.csr.data.eq(mem.csr.data), csr_check.gcols.data.eq(mem.gcols.b.data),
            softmax.gcols.data.eq(mem.gcols.b.data), softmax.gcols_base.eq(gcols_base),
            mem.gcols.b.addr.eq(Mux(phase_b, softmax.gcols.addr, csr_check.gcols.addr)),
            mem.csr.addr.eq(Mux(phase_b, softmax.csr.addr, csr_check.csr.addr)),
        ]
        if has_dense:
            m.d.comb += [
                dense.gcols_base.eq(gcols_base), mem.gcols.addr.eq(dense.gcols.addr),
                dense.gcols.data.eq(mem.gcols.data),
                dense.q.data.eq(mem.q.b.data), dense.k.data.eq(mem.k.b.data),
                row_max.dense.row.eq(dense.row_max.row),
                row_max.dense.value.eq(dense.row_max.value),
                row_max.dense.en.eq(dense.row_max.en),
            ]
            _score_write(m, dense_scores, dense.score)
        if has_sparse:
            m.d.comb += [
                sparse.nnz.eq(current["nnz"]), sparse.list_base.eq(list_base),
                sparse.q.data.eq(mem.q.data), sparse.k.data.eq(mem.k.data),
                mem.csc.addr.eq(sparse.csc.addr), sparse.csc.data.eq(mem.csc.data),
                row_max.sparse.row.eq(sparse.score_row.row),
                row_max.sparse.value.eq(sparse.score_row.value),
                row_max.sparse.en.eq(sparse.score_row.en),
                index_check.start.eq(start_a), index_check.nnz.eq(current["nnz"]),
                index_check.list_base.eq(list_base),
                mem.csc.b.addr.eq(index_check.csc.addr), index_check.csc.data.eq(mem.csc.b.data),
                mem.csr.b.addr.eq(index_check.csr.addr), index_check.csr.data.eq(mem.csr.b.data),
            ]
            _score_write(m, sparse_scores, sparse.score)
        m.d.comb += softmax.csr.data.eq(mem.csr.data)

        # -- q and k: the sparser engine on port A, the denser one on port B; with the
        # auto-encoder a mixer's on both while it runs (reads on B, writes on A) ----------
        # The step's operand is K (its values, its buffer's data): from the step counter,
        # which holds from the start pulse (when the mixer samples its values) to the end.
        ae_k = current_is(operand="k")
        for name in AE_OPERANDS:
            port = getattr(mem, name)
            addr_a = getattr(sparse, name).addr if has_sparse else 0
            addr_b = getattr(dense, name).addr if has_dense else 0
            if p.autoencoder:
                enc, dec = mixers["encoder"], mixers["decoder"]
                mine = (ae_on & step_is(operand=name)).any()
                mine_enc = (ae_on & step_is(operand=name, part="encoder")).any()
                mine_dec = (ae_on & step_is(operand=name, part="decoder")).any()
                addr_a = Mux(mine, Mux(encoding, enc.dst.addr, dec.dst.addr), addr_a)
                addr_b = Mux(mine, Mux(encoding, enc.src.addr, dec.src.addr), addr_b)
                m.d.comb += [port.wdata.eq(Mux(encoding, enc.dst.data, dec.dst.data)),
                             port.write.eq((mine_enc & enc.dst.write) |
                                           (mine_dec & dec.dst.write))]
            m.d.comb += [port.addr.eq(addr_a), port.b.addr.eq(addr_b)]
        code_base = p.heads * p.max_tokens        # spec.code_word(p, 0, 0)
        bases = {"encoder": (0, code_base), "decoder": (code_base, 0)}
        for part, mixer in mixers.items():
            in_base, out_base = bases[part]
            m.d.comb += [
                mixer.start.eq(ae_start & current_is(part=part)),
                mixer.tokens.eq(tokens), mixer.in_base.eq(in_base), mixer.out_base.eq(out_base),
                mixer.src.data.eq(Mux(ae_k, mem.k.b.data, mem.q.b.data)),
            ]
            prefix = AE_FIELD_PREFIX[part]
            for name in ae_fields(p, part):
                values = getattr(self, name)
                m.d.comb += getattr(mixer, name[len(prefix):]).eq(
                    Mux(ae_k, values[1], values[0]))

        # -- the MAC bank: the SDDMM engines' in phase 1, the SpMM's in phase 2, the
        # auto-encoder's mixers' before the first head ----------------------------------------
        for k in range(p.mac_units):
            if k < p.dense_macs:
                engine, unit = dense, k
            else:
                engine, unit = sparse, k - p.dense_macs
            a, b = engine.mul.a[unit], engine.mul.b[unit]
            m.d.comb += engine.mul.p[unit].eq(bank.bus.p[k])
            if k < p.spmm_units:              # with M > d, units d .. M-1 are phase 1's only
                a = Mux(phase_b, spmm.mul.a[k], a)
                b = Mux(phase_b, spmm.mul.b[k], b)
                m.d.comb += spmm.mul.p[k].eq(bank.bus.p[k])
                if p.autoencoder:             # two levels: (encoder | decoder) | the rest
                    enc, dec = mixers["encoder"].mul, mixers["decoder"].mul
                    a = Mux(ae_running, Mux(encoding, enc.a[k], dec.a[k]), a)
                    b = Mux(ae_running, Mux(encoding, enc.b[k], dec.b[k]), b)
                    m.d.comb += [enc.p[k].eq(bank.bus.p[k]), dec.p[k].eq(bank.bus.p[k])]
            m.d.comb += [bank.bus.a[k].eq(a), bank.bus.b[k].eq(b)]

        # -- phase 2 -----------------------------------------------------------------------
        m.d.comb += [
            softmax.start.eq(start_b), softmax.tokens.eq(tokens),
            softmax.globals.eq(current["globals"]), softmax.nnz.eq(current["nnz"]),
            softmax.exp_mult.eq(current["exp_mult"]), softmax.exp_shift.eq(current["exp_shift"]),
            softmax.list_base.eq(list_base),
            row_max.read.addr.eq(softmax.row_max.addr),
            row_max.read.load.eq(softmax.row_max.load),
            softmax.row_max.data.eq(row_max.read.data),
            spmm.start.eq(start_b), spmm.tokens.eq(tokens), spmm.head_base.eq(head_base),
            spmm.out_mult.eq(current["out_mult"]), spmm.out_shift.eq(current["out_shift"]),
            mem.v.addr.eq(spmm.v.addr), spmm.v.data.eq(mem.v.data),
            mem.out.addr.eq(spmm.out.addr), mem.out.data.eq(spmm.out.data),
            mem.out.write.eq(spmm.out.write),
        ]
        wiring.connect(m, softmax.entries, spmm.entries)
        if has_dense:
            _score_read(m, dense_scores, softmax.dense_scores)
        if has_sparse:
            _score_read(m, sparse_scores, softmax.sparse_scores)
        return m
