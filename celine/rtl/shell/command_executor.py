"""Checked requests in, commands done, reply descriptors out (docs/protocol.md, "Commands")."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int
from ...spec.fields import BufferSpec
from ...spec.protocol import ADDRESS_BYTES, STATUS_BYTES, Command, Status, StatusFlags
from ..common.compare import greater_than
from .link_streams import (CONFIGURE_BYTES, READ_BYTES, Source, buffer_write_signature,
                           byte_lane, reply_layout, request_fields, request_layout,
                           staging_signature)

__all__ = ["CommandExecutor"]


class CommandExecutor(wiring.Component):
    """Executes one `request` at a time and describes its reply on `reply`.

    A request that arrived with an error status is answered with it. Otherwise the checks
    run in the protocol's order (command, length for the command, buffer address or
    register, busy), and only then does anything change: WRITE copies the staged data
    bytes (`staging`) into the buffer through `mem`, CONFIGURE sets a `registers` entry,
    RUN pulses `start` (from a register, the cycle after the decision), STATUS snapshots
    `status`. `busy` is registered twice before the BUSY check: a request's checks come at
    least a reply's length after the previous RUN, so the extra cycles never let a RUN
    through while the engine works. The request is taken when its reply
    descriptor is offered; the next request waits until the reply was sent (the reply
    encoder takes the descriptor at the end of the frame), so `mem` is free whenever the
    reply stream is idle (the encoder reads the buffers while it is valid).

    A RUN whose sequence number is the one of a RUN that started and that was the last
    request to pass the CRC check is a replay: the host repeating a RUN whose reply it
    lost. It is answered OK and starts nothing (docs/protocol.md, "Repeated RUN"), ahead
    of the BUSY check, so the replay of a run still in progress is OK too. Any other
    request that passes the CRC check forgets the RUN.

    `overrun` pulses when the receiver lost a byte: a sticky flag, reported in the next
    STATUS reply (StatusFlags.OVERRUN) and cleared by it.
    """

    def __init__(self, *, buffers, registers, max_payload, info_length, register_init=None):
        if not buffers or any(not isinstance(b, BufferSpec) for b in buffers):
            raise TypeError(f"buffers must be a non-empty list of BufferSpec, not {buffers!r}")
        check_int("registers", registers, minimum=1, maximum=256)
        check_int("max_payload", max_payload, minimum=16, maximum=65535)
        check_int("info_length", info_length, minimum=1, maximum=65535)
        self.buffers = list(buffers)
        self.register_count = registers
        self.register_init = list(register_init or [0] * registers)
        if len(self.register_init) != registers:
            raise ValueError(f"register_init must have {registers} values, not {register_init!r}")
        self.max_payload = max_payload
        self.info_length = info_length
        super().__init__({
            "request": In(stream.Signature(request_layout())),
            "staging": Out(staging_signature(max_payload)),
            "reply": Out(stream.Signature(reply_layout(self.buffers))),
            "mem": Out(buffer_write_signature(self.buffers)),
            "registers": Out(data.ArrayLayout(32, registers), init=self.register_init),
            "start": Out(1),
            "busy": In(1),
            "status": In(8 * STATUS_BYTES),
            "overrun": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        buffers = self.buffers
        request = self.request.payload
        reply = self.reply.payload
        command = request.command
        select, offset, count = request_fields(request)

        # First cycle of a request: the length of its byte range and the length check,
        # registered; the second, the range's end; the third, whether that end is within
        # each buffer (`fits`).
        span = Signal(max(16, len(count)))
        end = Signal(34)
        length_ok = Signal()
        m.d.sync += [
            span.eq(Mux(command == Command.WRITE, request.length - ADDRESS_BYTES, count)),
            end.eq(offset + span),
            length_ok.eq(Mux(command == Command.WRITE, request.length > ADDRESS_BYTES,
                         Mux(command == Command.READ,
                             (request.length == READ_BYTES) & (count != 0)
                             & (count <= self.max_payload),
                         Mux(command == Command.CONFIGURE, request.length == CONFIGURE_BYTES,
                             request.length == 0)))),
        ]
        # The fourth cycle registers the checks (from `fits` and the request), so that the
        # fifth (CHECK) only picks a status: no comparison of its own runs into the reply
        # registers, which that decision enables.
        known = Signal()
        in_range = Signal()
        writable = Signal()
        address_ok = Signal()
        register_ok = Signal()
        # Each buffer's `end <= size`, registered in the third cycle, the size a constant:
        # as logic (common.compare.greater_than), not a carry chain a buffer. The select's
        # pick of it is the fourth cycle's: the compare and the pick in one cycle were
        # 8.0 ns into address_ok in an engine build, the adder and the compare 7.9 ns.
        fits = Signal(len(buffers))
        m.d.sync += fits.eq(Cat(*(~greater_than(end, b.size) for b in buffers)))
        for k, b in enumerate(buffers):
            with m.If(select == k):
                m.d.comb += [in_range.eq(fits[k]), writable.eq(b.writable)]
        m.d.sync += [
            known.eq(Cat(*(command == c for c in Command)).any()),
            address_ok.eq(Mux(command == Command.WRITE, in_range & writable,
                              Mux(command == Command.READ, in_range, 1))),
            register_ok.eq((command != Command.CONFIGURE) | (select < self.register_count)),
        ]
        needs_idle = (command != Command.STATUS) & (command != Command.INFO)
        # The engine's `busy` may be combinational deep inside it, and `start` fans out to
        # its run checks: both are registered here so that neither path runs through the
        # CHECK decision.
        busy = Signal()
        start = Signal()
        m.d.sync += [busy.eq(self.busy), start.eq(0)]
        m.d.comb += self.start.eq(start)

        # A CONFIGURE's write is decided with the checks (registered in the fourth cycle,
        # like them), so CHECK's decode only enables it: `configure_ok` is exactly "the
        # checks below reach the CONFIGURE branch" (a CONFIGURE is known and its address
        # always ok; its length, its register and the engine idle), and `checked_busy` is
        # the `busy` both saw. `configure_at` is the register it sets, one-hot.
        checked_busy = Signal()
        configure_ok = Signal()
        configure_at = Signal(self.register_count)
        # Likewise a STATUS's snapshot and overrun clear: `status_ok` is exactly "the
        # checks below reach the STATUS branch" (a STATUS is known, needs no idle engine
        # and has no address or register to check: its length alone). From the request
        # through the CHECK decision into the overrun flag was an engine build's worst
        # path (10.8 ns, 8 levels).
        status_ok = Signal()
        m.d.sync += [
            checked_busy.eq(busy),
            configure_ok.eq((command == Command.CONFIGURE) & length_ok
                            & (select < self.register_count) & ~busy),
            configure_at.eq(Cat(*(select == k for k in range(self.register_count)))),
            status_ok.eq((command == Command.STATUS) & length_ok),
        ]
        # The repeated-RUN check: `replay` is registered from the request and from
        # `run_armed`/`run_seq`, which change only in CHECK; a request reaches CHECK at
        # least five cycles after the previous one left it, so `replay` is current there.
        run_armed = Signal()
        run_seq = Signal(8)
        replay = Signal()
        m.d.sync += replay.eq(run_armed & (command == Command.RUN) & (request.seq == run_seq))
        # A RUN's start is decided with them, like a CONFIGURE's write: `run_ok` is exactly
        # "the checks below reach the RUN branch" (a RUN is known, its address and register
        # always ok; its length, not a replay, the engine idle). The request's command
        # through CHECK's decode into run_seq's enable was an engine build's worst path
        # (8.0 ns, 6 levels).
        run_ok = Signal()
        m.d.sync += run_ok.eq((command == Command.RUN) & length_ok & ~busy
                              & ~(run_armed & (request.seq == run_seq)))

        # A WRITE's store cycle is a register of its own (set with the address, cleared
        # by the store), so the buffers' write enables do not decode the FSM's state.
        store = Signal()

        # The overrun flag.
        overrun = Signal()
        clear_overrun = Signal()
        with m.If(self.overrun):
            m.d.sync += overrun.eq(1)
        with m.Elif(clear_overrun):
            m.d.sync += overrun.eq(0)

        # WRITE: staged payload byte `index` goes to byte `address` of the buffer.
        # `index_next` (index + 1, a register of its own) is compared with the length for
        # the last byte and addresses the staging RAM's read ahead: an adder before the
        # 16-bit compare was a build's worst path (index -> last_byte, 8.2 ns, 12 levels).
        index = Signal(16)
        index_next = Signal(16)
        address = Signal(32)
        word, lane, lane_ok = byte_lane(m, buffers, select, address)
        word_1 = Signal.like(word, name="word_1")
        lane_1 = Signal.like(lane, name="lane_1")
        lane_ok_1 = Signal(name="lane_ok_1")
        mask = Signal.like(self.mem.mask)
        last_byte = Signal()
        # The staged byte goes to the buffers from the staging RAM's output register
        # (STAGING_LATENCY 2): the block's array read (5.8 ns clock-to-out) and the nets to
        # every buffer's data pins were one cycle (9.8 ns, an engine build's worst path),
        # and a register in the fabric after it was still 8 ns from the block. So the RAM
        # reads the byte two cycles ahead: the first in CHECK, each next one in the
        # WRITE_STORE before its WRITE_LANE; the byte is there in WRITE_STORE.
        staged = self.staging.data
        # `select` is steady from the request's arrival, its first store five cycles on.
        write_to = Signal(len(buffers))
        m.d.sync += write_to.eq(Cat(*(select == k for k in range(len(buffers)))))
        m.d.comb += [
            self.mem.select.eq(select),
            self.mem.write_to.eq(write_to),
            self.mem.wdata.eq(staged.replicate(len(self.mem.mask))),
            self.mem.mask.eq(mask),
        ]

        def respond(status, length=0, source=Source.NONE):
            m.d.sync += [reply.status.eq(status), reply.length.eq(length),
                         reply.source.eq(source)]
            m.next = "ACCEPT"

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.request.valid):
                    m.next = "PREPARE"
            with m.State("PREPARE"):
                with m.If(request.status != Status.OK):
                    respond(request.status)
                with m.Else():
                    m.next = "RANGE"
            with m.State("RANGE"):
                m.next = "FITS"
            with m.State("FITS"):
                m.next = "CHECK"

            with m.State("CHECK"):
                m.d.sync += [address.eq(offset), index.eq(ADDRESS_BYTES),
                             index_next.eq(ADDRESS_BYTES + 1), run_armed.eq(0)]
                with m.If(~known):
                    respond(Status.UNKNOWN_COMMAND)
                with m.Elif(~length_ok):
                    respond(Status.BAD_LENGTH)
                with m.Elif(~address_ok):
                    respond(Status.BAD_ADDRESS)
                with m.Elif(~register_ok):
                    respond(Status.BAD_REGISTER)
                with m.Elif(replay):
                    m.d.sync += run_armed.eq(1)
                    respond(Status.OK)
                with m.Elif(needs_idle & checked_busy):
                    respond(Status.BUSY)
                with m.Elif(command == Command.WRITE):
                    # The reply's fields load in every branch of CHECK (a WRITE's are set
                    # again when its last byte is stored), so CHECK's decode is in their
                    # values, not their enable (the request through the checks' chain into
                    # the enable was 7.9 ns in a build).
                    m.d.sync += [reply.status.eq(Status.OK), reply.length.eq(0),
                                 reply.source.eq(Source.NONE)]
                    m.next = "WRITE_LANE"
                with m.Elif(command == Command.READ):
                    respond(Status.OK, count, Source.BUFFER)
                with m.Elif(command == Command.CONFIGURE):
                    respond(Status.OK)          # the register is set below
                with m.Elif(command == Command.RUN):
                    respond(Status.OK)          # the engine is started below
                with m.Elif(command == Command.STATUS):
                    respond(Status.OK, STATUS_BYTES, Source.STATUS)   # snapshot below
                with m.Else():
                    respond(Status.OK, self.info_length, Source.INFO)

            # Three cycles a byte: the byte's word and lane registered, then the lane
            # decoded into the mask (and whether it is the last byte), then written. The
            # buffer's stride pick, the lane compare and the decode in one cycle were a
            # build's slow path (8.0-9.0 ns into `mask`); a UART byte is hundreds
            # of cycles.
            with m.State("WRITE_LANE"):
                m.d.sync += [word_1.eq(word), lane_1.eq(lane), lane_ok_1.eq(lane_ok)]
                m.next = "WRITE_ADDRESS"
            with m.State("WRITE_ADDRESS"):
                m.d.sync += [self.mem.addr.eq(word_1),
                             mask.eq(Mux(lane_ok_1, Const(1, len(mask)) << lane_1, 0)),
                             last_byte.eq(index_next == request.length), store.eq(1)]
                m.next = "WRITE_STORE"
            with m.State("WRITE_STORE"):
                m.d.sync += [index.eq(index_next), index_next.eq(index_next + 1),
                             address.eq(address + 1), store.eq(0)]
                with m.If(last_byte):
                    respond(Status.OK)
                with m.Else():
                    m.next = "WRITE_LANE"

            with m.State("ACCEPT"):
                m.d.comb += [self.request.ready.eq(1), self.reply.valid.eq(1)]
                with m.If(self.reply.ready):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "REPLY"
            with m.State("REPLY"):
                m.d.comb += self.reply.valid.eq(1)
                with m.If(self.reply.ready):
                    m.next = "IDLE"

        # `in_check`: the FSM is in CHECK, as a register of its own (FITS always goes to
        # CHECK next). Decoded from the state register, whose nets reach the whole
        # executor, it was an engine build's worst path (the state -> the CHECK decode ->
        # the overrun flag's clear, 9.2 ns, two nets of 3.2 and 3.5 ns).
        in_check = Signal()
        m.d.sync += in_check.eq(fsm.ongoing("FITS"))
        m.d.comb += [
            self.mem.write.eq(store),
            self.staging.addr.eq(Mux(in_check, ADDRESS_BYTES,
                                     Mux(fsm.ongoing("WRITE_STORE"), index_next, index))),
        ]
        with m.If(in_check & status_ok):
            m.d.sync += reply.snapshot.eq(self.status | Mux(overrun, int(StatusFlags.OVERRUN), 0))
            m.d.comb += clear_overrun.eq(1)
        with m.If(in_check & run_ok):
            m.d.sync += [start.eq(1), run_armed.eq(1), run_seq.eq(request.seq)]
        with m.If(in_check & configure_ok):
            for k in range(self.register_count):
                with m.If(configure_at[k]):
                    m.d.sync += self.registers[k].eq(offset)

        # The reply's echo of the request (sequence number, buffer, offset) follows the
        # request until the reply is offered, and holds while it goes out (the decoder may
        # take the next request meanwhile): only the status, length and source wait for
        # the decision, so its enable (the checks' decode, a WRITE's last byte) drives 26
        # registers rather than every field of the reply.
        with m.If(~fsm.ongoing("ACCEPT") & ~fsm.ongoing("REPLY")):
            m.d.sync += [reply.seq.eq(request.seq), reply.buffer.eq(select),
                         reply.offset.eq(offset)]
        return m
