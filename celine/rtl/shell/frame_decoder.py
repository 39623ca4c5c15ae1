"""Request frames in (bytes), checked requests out (docs/protocol.md, "Request frame")."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int
from ...spec.protocol import REQUEST_START, Status
from ..common.compare import greater_than
from .block_ram import BlockRAM
from .crc16 import CRC16
from .link_streams import ARG_BYTES, request_layout, staging_signature

__all__ = ["FrameDecoder"]


class FrameDecoder(wiring.Component):
    """Bytes from `rx` in, one `request` per frame out.

    Waits for the start byte (other bytes are discarded), takes command, sequence number
    and length, stages the payload in a block RAM of `max_payload` bytes (read back
    through `staging`, valid until the request is taken) and checks the CRC. The request
    carries Status.OK, or the error the frame earned: BAD_LENGTH as soon as a length over
    `max_payload` arrives (the rest of the frame is then garbage until a start byte),
    BAD_CRC, or TIMEOUT when the line inside a frame stays quiet for `timeout_cycles`.

    `quiet` says that no byte is on the line (celine.rtl.shell.uart.UARTReceiver.quiet);
    the timeout counts the cycles during which it is high and no byte waits on `rx`, so it
    measures the quiet time between two bytes, not the bytes themselves. Left at 1 it
    counts from the last byte taken. `rx` is registered before use (one byte per two
    cycles at most).
    """

    def __init__(self, *, max_payload, timeout_cycles):
        check_int("max_payload", max_payload, minimum=16, maximum=65535)
        check_int("timeout_cycles", timeout_cycles, minimum=16, maximum=1 << 30)
        self.max_payload = max_payload
        self.timeout_cycles = timeout_cycles
        super().__init__({
            "rx": In(stream.Signature(8)),
            "quiet": In(1, init=1),
            "request": Out(stream.Signature(request_layout())),
            "staging": In(staging_signature(max_payload)),
        })

    def elaborate(self, platform):
        m = Module()
        # The staging RAM gives its byte through the block's output register
        # (STAGING_LATENCY): the executor's buffer writes take it from there.
        m.submodules.staging = staging = BlockRAM(8, self.max_payload, output_register=True)
        m.d.comb += [staging.raddr.eq(self.staging.addr), self.staging.data.eq(staging.data)]
        # A payload byte is written a cycle after it is taken, from registers: the state
        # decode into the block's write port crossed to the block in one net (a build's
        # worst path: 8.6 ns, 3.7 of it that net). The executor reads the staging RAM only
        # after the request is emitted, bytes later.
        stage_wen = Signal()
        stage_waddr = Signal.like(staging.waddr)
        stage_wdata = Signal(8)
        m.d.sync += stage_wen.eq(0)
        m.d.comb += [staging.wen.eq(stage_wen), staging.waddr.eq(stage_waddr),
                     staging.wdata.eq(stage_wdata)]
        m.submodules.crc = crc = CRC16()

        request = self.request.payload
        index = Signal(16)
        crc_low = Signal(8)
        crc_high = Signal(8)

        # Each byte is registered before it is used (`rx` may come straight from a block
        # RAM FIFO): taken into `byte` when it is free, used (`take`) a cycle or more later.
        # Whether it is a start byte is registered with it: that decision clears the
        # request's fields, so no comparison runs into their many enables.
        byte = Signal(8)
        is_start = Signal()
        held = Signal()
        take = Signal()
        m.d.comb += [self.rx.ready.eq(~held), crc.data.eq(byte)]
        with m.If(self.rx.valid & ~held):
            m.d.sync += [byte.eq(self.rx.payload), is_start.eq(self.rx.payload == REQUEST_START),
                         held.eq(1)]
        with m.Elif(take):
            m.d.sync += held.eq(0)

        # Whether the payload byte due is the frame's last: a register, from `index` and
        # the length a cycle earlier (bytes are taken two cycles apart at the closest, and
        # the length is known two cycles before the first payload byte).
        # `index_next` (index + 1, a register stepped with it) keeps the adder off that
        # path (index through the adder and the compare was a build's worst path, 7.9 ns,
        # 12 levels).
        last_payload = Signal()
        index_next = Signal(16, init=1)
        m.d.sync += last_payload.eq(index_next == request.length)

        # The inter-byte timeout: quiet cycles since the last byte.
        timer = Signal(range(self.timeout_cycles + 1))
        with m.If(self.rx.valid | held | ~self.quiet):
            m.d.sync += timer.eq(0)
        with m.Elif(timer != self.timeout_cycles):
            m.d.sync += timer.eq(timer + 1)
        timed_out = timer == self.timeout_cycles

        def finish(status):
            m.d.sync += request.status.eq(status)
            m.next = "EMIT"

        def receive(then, crc_byte=True):
            """In a state inside a frame: take a byte (folded into the CRC) or time out."""
            m.d.comb += take.eq(held)
            with m.If(held):
                if crc_byte:
                    m.d.comb += crc.en.eq(1)
                then()
            with m.Elif(timed_out):
                finish(Status.TIMEOUT)

        def store(field, state):
            def then():
                m.d.sync += field.eq(byte)
                m.next = state
            return then

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [take.eq(held), crc.clear.eq(1)]
                with m.If(held & is_start):
                    m.d.sync += [request.seq.eq(0), request.args.eq(0), index.eq(0),
                                 index_next.eq(1)]
                    m.next = "COMMAND"

            with m.State("COMMAND"):
                receive(store(request.command, "SEQ"))
            with m.State("SEQ"):
                receive(store(request.seq, "LENGTH_LOW"))
            with m.State("LENGTH_LOW"):
                receive(store(request.length[:8], "LENGTH_HIGH"))
            with m.State("LENGTH_HIGH"):
                def got_high():
                    length = Cat(request.length[:8], byte)
                    m.d.sync += request.length[8:].eq(byte)
                    # A compare with a constant as logic (common/compare.py): as `>` it
                    # was a carry chain behind the state decode, 9.5 ns into the status.
                    with m.If(greater_than(length, self.max_payload)):
                        finish(Status.BAD_LENGTH)
                    with m.Elif(length == 0):
                        m.next = "CRC_LOW"
                    with m.Else():
                        m.next = "PAYLOAD"
                receive(got_high)

            with m.State("PAYLOAD"):
                def got_payload():
                    m.d.sync += [stage_wen.eq(1), stage_waddr.eq(index),
                                 stage_wdata.eq(byte)]
                    for k in range(ARG_BYTES):
                        with m.If(index == k):
                            m.d.sync += request.args[k].eq(byte)
                    m.d.sync += [index.eq(index_next), index_next.eq(index_next + 1)]
                    with m.If(last_payload):
                        m.next = "CRC_LOW"
                receive(got_payload)

            with m.State("CRC_LOW"):
                receive(store(crc_low, "CRC_HIGH"), crc_byte=False)
            with m.State("CRC_HIGH"):
                receive(store(crc_high, "CRC_CHECK"), crc_byte=False)
            with m.State("CRC_CHECK"):
                with m.If(Cat(crc_low, crc_high) == crc.value):
                    finish(Status.OK)
                with m.Else():
                    finish(Status.BAD_CRC)

            with m.State("EMIT"):
                m.d.comb += self.request.valid.eq(1)
                with m.If(self.request.ready):
                    m.next = "IDLE"
        return m
