"""Reply descriptors in, reply frames out (docs/protocol.md, "Reply frame")."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ...spec.fields import BufferSpec
from ...spec.protocol import REPLY_START, STATUS_BYTES
from .block_ram import BlockRAM
from .crc16 import CRC16
from .link_streams import READ_LATENCY, Source, buffer_read_signature, byte_lane, reply_layout

__all__ = ["ReplyEncoder"]

SNAPSHOT_INDEX_BITS = (STATUS_BYTES - 1).bit_length()


class ReplyEncoder(wiring.Component):
    """Sends the frame a `reply` descriptor describes on `tx`: start byte, status, sequence
    number, length, payload, CRC-16 (over status .. payload).

    Payload bytes come from buffer `buffer` from byte `offset` on (through `mem`, whose
    read byte follows the address and lane by READ_LATENCY cycles: the shell registers the
    lane beside each buffer), from the descriptor's STATUS `snapshot`, or from the INFO
    ROM holding `info`.

    `tx.valid` and `tx.payload` are registers (`out_valid`, `out_byte`): a byte is decided
    and loaded a cycle before it is offered, and the next one is loaded once it has gone,
    so nothing of the state's decode reaches the stream's far end (the encoder's state
    through the byte's mux into the transmit side's enables, across the die, was a
    build's worst path, 10.0 ns). A header or CRC byte takes two cycles, a payload byte
    READ_LATENCY + 3 (its read overlaps the previous byte's wait), far less than a UART
    needs. The descriptor is taken after the last CRC byte went out: until then it stays
    valid, and `mem` is this encoder's.
    """

    def __init__(self, *, buffers, info):
        if not buffers or any(not isinstance(b, BufferSpec) for b in buffers):
            raise TypeError(f"buffers must be a non-empty list of BufferSpec, not {buffers!r}")
        if not isinstance(info, bytes) or not 0 < len(info) <= 65535:
            raise ValueError(f"info must be 1 to 65535 bytes, not {info!r}")
        self.buffers = list(buffers)
        self.info = info
        super().__init__({
            "reply": In(stream.Signature(reply_layout(self.buffers))),
            "tx": Out(stream.Signature(8)),
            "mem": Out(buffer_read_signature(self.buffers)),
        })

    def elaborate(self, platform):
        m = Module()
        reply = self.reply.payload
        m.submodules.crc = crc = CRC16()

        index = Signal(16)                # payload byte
        # index + 1, kept as a register: the adder ahead of the compare into `last_byte`
        # was a build's worst path (7.6 ns).
        index_next = Signal(16)
        # The INFO ROM, read through its block RAM's own output register (a block's
        # clock-to-out is most of a cycle: the ROM into a fabric register was a build's
        # worst path, 10.0 ns with its net): `index` holds from ADDRESS to LATCH,
        # READ_LATENCY + 1 cycles, so the byte is there.
        m.submodules.info = info_rom = BlockRAM(8, len(self.info), output_register=True,
                                                init=list(self.info))
        m.d.comb += [info_rom.wen.eq(0), info_rom.raddr.eq(index)]
        info_byte = info_rom.data
        address = Signal(32)              # its byte address in the buffer
        word, lane, lane_ok = byte_lane(m, self.buffers, reply.buffer, address)
        byte_lane_reg = Signal.like(lane)
        lane_ok_reg = Signal()
        # Whether `index` is the payload's last byte: registered in ADDRESS, as `index`
        # holds from ADDRESS to PAYLOAD (its adder and compare into the state were a
        # build's worst path: 8.5 ns, 13 levels).
        last_byte = Signal()

        # The outgoing byte, from registers. `out_byte` loads the state's byte in every
        # cycle `out_valid` is low, whatever the state (no state decode in its enable:
        # the states' load conditions into it were a build's worst path, 8.6 ns); the
        # states that send a byte set `out_valid`, and it is cleared when taken, so
        # `tx.ready` reaches `out_valid` alone, not the state.
        out_valid = Signal()
        out_byte = Signal(8)
        state_byte = Signal(8)            # the byte the state would send
        payload_byte = Signal(8)          # a payload byte, registered (below)
        # The CRC folds each byte the cycle after it is loaded, from `out_byte` (the state
        # through the byte's mux and the CRC's XORs was a build's worst path, 8.6 ns); the
        # next load is two cycles later at the earliest, so the CRC bytes see every fold.
        fold = Signal()
        m.d.comb += [
            self.tx.valid.eq(out_valid),
            self.tx.payload.eq(out_byte),
            self.mem.select.eq(reply.buffer),
            self.mem.lane.eq(byte_lane_reg),
            crc.en.eq(fold),
            crc.data.eq(out_byte),
        ]
        m.d.sync += fold.eq(0)
        with m.If(self.tx.ready):
            m.d.sync += out_valid.eq(0)
        with m.If(~out_valid):
            m.d.sync += out_byte.eq(state_byte)
        # The payload byte is loaded in every cycle (no state decode in its enable: LATCH's
        # decode into it was an engine build's slow path, 8.1 to 8.3 ns). What PAYLOAD sends
        # is the load of LATCH's cycle or a later one: the buffers' read, the snapshot's
        # index and the source hold from LATCH until the byte has gone.
        buffer_byte = Mux(lane_ok_reg, self.mem.rdata, 0)
        status_byte = reply.snapshot.word_select(index[:SNAPSHOT_INDEX_BITS], 8)
        with m.Switch(reply.source):
            with m.Case(Source.BUFFER):
                m.d.sync += payload_byte.eq(buffer_byte)
            with m.Case(Source.STATUS):
                m.d.sync += payload_byte.eq(status_byte)
            with m.Default():
                m.d.sync += payload_byte.eq(info_byte)

        def send(byte, state, fold_it=True):
            m.d.comb += state_byte.eq(byte)
            with m.If(~out_valid):
                m.d.sync += out_valid.eq(1)
                if fold_it:
                    m.d.sync += fold.eq(1)
                m.next = state

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += crc.clear.eq(1)
                m.d.sync += [index.eq(0), index_next.eq(1), address.eq(reply.offset)]
                with m.If(self.reply.valid):
                    m.next = "START"
            with m.State("START"):
                send(REPLY_START, "STATUS", fold_it=False)
            with m.State("STATUS"):
                send(reply.status, "SEQ")
            with m.State("SEQ"):
                send(reply.seq, "LENGTH_LOW")
            with m.State("LENGTH_LOW"):
                send(reply.length[:8], "LENGTH_HIGH")
            with m.State("LENGTH_HIGH"):
                send(reply.length[8:], "ADDRESS")
                with m.If(~out_valid & (reply.length == 0)):
                    m.next = "CRC_LOW"

            # READ_LATENCY + 3 cycles a payload byte: word and lane, the buffers' read
            # (`mem.rdata` is valid in LATCH), byte registered, sent once the byte before
            # has gone (the read overlaps that wait).
            with m.State("ADDRESS"):
                m.d.sync += [self.mem.addr.eq(word), byte_lane_reg.eq(lane),
                             lane_ok_reg.eq(lane_ok), last_byte.eq(index_next == reply.length)]
                m.next = "READ_0"
            for k in range(READ_LATENCY):
                with m.State(f"READ_{k}"):
                    m.next = f"READ_{k + 1}" if k + 1 < READ_LATENCY else "LATCH"
            with m.State("LATCH"):
                m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                send(payload_byte, "ADDRESS")
                with m.If(~out_valid):
                    m.d.sync += [index.eq(index_next), index_next.eq(index_next + 1),
                                 address.eq(address + 1)]
                    with m.If(last_byte):
                        m.next = "CRC_LOW"

            with m.State("CRC_LOW"):
                send(crc.value[:8], "CRC_HIGH", fold_it=False)
            with m.State("CRC_HIGH"):
                send(crc.value[8:], "DRAIN", fold_it=False)
            with m.State("DRAIN"):
                with m.If(~out_valid):
                    m.d.comb += self.reply.ready.eq(1)
                    m.next = "IDLE"
        return m
