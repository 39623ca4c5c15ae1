"""The device side of the host protocol (docs/protocol.md): frames in, commands, replies out."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int
from ...spec.fields import BufferSpec
from ...spec.protocol import REPLY_START, REQUEST_START, STATUS_BYTES, Command, Status
from .crc16 import CRC16

def memory_port_signature(buffers):
    """The link's one port into the buffers (the shell routes it by `select`)."""
    word_bytes = max(b.word_bytes for b in buffers)
    depth = max(b.depth for b in buffers)
    return wiring.Signature({
        "select": Out(range(len(buffers))),
        "addr": Out(range(depth)),
        "write": Out(1),
        "mask": Out(word_bytes),          # byte enables of the write
        "wdata": Out(8 * word_bytes),
        "rdata": In(8 * word_bytes),      # word at `addr` of buffer `select`, one cycle later
    })


class HostLink(wiring.Component):
    """Parses request frames from `rx`, executes them, and sends reply frames on `tx`.

    One frame at a time: a request is checked completely (CRC, command, length, address,
    busy; in that order) before anything changes, so a bad frame never touches a buffer
    or a register. The payload is staged in a block RAM of `max_payload` bytes; WRITE
    copies it into the buffer only after the CRC has matched. A frame whose bytes stop
    for `timeout_cycles` is answered with TIMEOUT, an oversized length at once with
    BAD_LENGTH; either way the link then waits for the next start byte.

    Buffers are reached through `mem`, one byte per two cycles (plenty against a UART).
    `registers` hold CONFIGURE values; `start` pulses on RUN; `busy` (the engine runs)
    makes WRITE, READ, CONFIGURE and RUN answer BUSY. `status` is the 8-byte STATUS payload,
    `info` the bytes of the INFO reply.
    """

    def __init__(self, *, buffers, registers, info, max_payload=1024, timeout_cycles=1024,
                 register_init=None):
        if not buffers or any(not isinstance(b, BufferSpec) for b in buffers):
            raise TypeError(f"buffers must be a non-empty list of BufferSpec, not {buffers!r}")
        check_int("registers", registers, minimum=1, maximum=256)
        check_int("max_payload", max_payload, minimum=16, maximum=65535)
        check_int("timeout_cycles", timeout_cycles, minimum=16, maximum=1 << 30)
        if not isinstance(info, bytes) or not 0 < len(info) <= 65535:
            raise ValueError(f"info must be 1 to 65535 bytes, not {info!r}")
        self.buffers = list(buffers)
        self.register_count = registers
        self.register_init = list(register_init or [0] * registers)
        if len(self.register_init) != registers:
            raise ValueError(f"register_init must have {registers} values, not {register_init!r}")
        self.info = info
        self.max_payload = max_payload
        self.timeout_cycles = timeout_cycles
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "mem": Out(memory_port_signature(self.buffers)),
            "registers": Out(data.ArrayLayout(32, registers), init=self.register_init),
            "start": Out(1),
            "busy": In(1),
            "status": In(8 * STATUS_BYTES),
        })

    def elaborate(self, platform):
        m = Module()
        buffers = self.buffers

        m.submodules.staging = staging = Memory(shape=8, depth=self.max_payload, init=[])
        stage_write = staging.write_port()
        stage_read = staging.read_port(transparent_for=())
        m.submodules.info = info_rom = Memory(shape=8, depth=len(self.info), init=list(self.info))
        info_read = info_rom.read_port(transparent_for=())

        m.submodules.rx_crc = rx_crc = CRC16()
        m.submodules.tx_crc = tx_crc = CRC16()

        command = Signal(8)
        seq = Signal(8)
        length = Signal(16)
        index = Signal(16)
        args = [Signal(8, name=f"arg{k}") for k in range(7)]   # first payload bytes
        crc_low = Signal(8)
        timer = Signal(range(self.timeout_cycles + 1))
        status = Signal(8)
        reply_seq = Signal(8)
        reply_length = Signal(16)
        status_bytes = Signal(64)
        payload_byte = Signal(8)

        buffer_id = args[0]
        offset = Cat(args[1], args[2], args[3], args[4])
        count = Cat(args[5], args[6])
        data_bytes = (length - 5)[:16]

        # -- byte addressing into the selected buffer ------------------------------------
        def stride_bits(b):
            return (b.word_stride - 1).bit_length()

        address = Signal(33)              # byte address in the selected buffer
        in_range = Signal()               # buffer id valid and address range fits
        writable = Signal()
        word = Signal.like(self.mem.addr)
        lane = Signal(16)
        lane_ok = Signal()
        end = Signal(34)
        m.d.comb += end.eq(offset + Mux(command == Command.WRITE, data_bytes, count))
        for k, b in enumerate(buffers):
            with m.If(buffer_id == k):
                m.d.comb += [
                    in_range.eq(end <= b.size),
                    writable.eq(b.writable),
                    word.eq(address >> stride_bits(b)),
                    lane.eq(address & (b.word_stride - 1)),
                    lane_ok.eq((address & (b.word_stride - 1)) < b.word_bytes),
                ]
        m.d.comb += [
            self.mem.select.eq(buffer_id),
            self.mem.addr.eq(word),
            self.mem.wdata.eq(stage_read.data.replicate(len(self.mem.mask))),
        ]
        read_byte = Mux(lane_ok, self.mem.rdata.word_select(lane[:len(self.mem.mask).bit_length()], 8), 0)

        m.d.comb += info_read.addr.eq(index)
        rx_byte = self.rx.payload
        rx_take = self.rx.valid & self.rx.ready
        m.d.comb += [rx_crc.data.eq(rx_byte), tx_crc.data.eq(self.tx.payload)]

        with m.If(rx_take):
            m.d.sync += timer.eq(0)
        with m.Elif(timer != self.timeout_cycles):
            m.d.sync += timer.eq(timer + 1)
        timed_out = timer == self.timeout_cycles

        def reply(m, code, payload_length=0):
            m.d.sync += [status.eq(code), reply_length.eq(payload_length), index.eq(0)]
            m.next = "REPLY_START"

        def receive(m, then):
            """In a receiving state: take a byte (folded into the CRC) or time out."""
            m.d.comb += self.rx.ready.eq(1)
            with m.If(rx_take):
                m.d.comb += rx_crc.en.eq(1)
                then()
            with m.Elif(timed_out):
                reply(m, Status.TIMEOUT)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.rx.ready.eq(1), rx_crc.clear.eq(1)]
                with m.If(rx_take & (rx_byte == REQUEST_START)):
                    m.d.sync += reply_seq.eq(0)
                    m.next = "COMMAND"

            with m.State("COMMAND"):
                def got_command():
                    m.d.sync += command.eq(rx_byte)
                    m.next = "SEQ"
                receive(m, got_command)

            with m.State("SEQ"):
                def got_seq():
                    m.d.sync += [seq.eq(rx_byte), reply_seq.eq(rx_byte)]
                    m.next = "LENGTH_LOW"
                receive(m, got_seq)

            with m.State("LENGTH_LOW"):
                def got_low():
                    m.d.sync += length[:8].eq(rx_byte)
                    m.next = "LENGTH_HIGH"
                receive(m, got_low)

            with m.State("LENGTH_HIGH"):
                def got_high():
                    full = Cat(length[:8], rx_byte)
                    m.d.sync += [length[8:].eq(rx_byte), index.eq(0)]
                    with m.If(full > self.max_payload):
                        reply(m, Status.BAD_LENGTH)
                    with m.Elif(full == 0):
                        m.next = "CRC_LOW"
                    with m.Else():
                        m.next = "PAYLOAD"
                receive(m, got_high)

            with m.State("PAYLOAD"):
                def got_payload():
                    m.d.comb += [stage_write.en.eq(1), stage_write.addr.eq(index),
                                 stage_write.data.eq(rx_byte)]
                    for k, arg in enumerate(args):
                        with m.If(index == k):
                            m.d.sync += arg.eq(rx_byte)
                    m.d.sync += index.eq(index + 1)
                    with m.If(index + 1 == length):
                        m.next = "CRC_LOW"
                receive(m, got_payload)

            with m.State("CRC_LOW"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_take):
                    m.d.sync += crc_low.eq(rx_byte)
                    m.next = "CRC_HIGH"
                with m.Elif(timed_out):
                    reply(m, Status.TIMEOUT)

            with m.State("CRC_HIGH"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(rx_take):
                    with m.If(Cat(crc_low, rx_byte) == rx_crc.value):
                        m.next = "CHECK"
                    with m.Else():
                        reply(m, Status.BAD_CRC)
                with m.Elif(timed_out):
                    reply(m, Status.TIMEOUT)

            with m.State("CHECK"):
                known = Cat(*(command == c for c in Command)).any()
                length_ok = Mux(command == Command.WRITE, length >= 6,
                            Mux(command == Command.READ,
                                (length == 7) & (count != 0) & (count <= self.max_payload),
                            Mux(command == Command.CONFIGURE, length == 5, length == 0)))
                address_ok = Mux(command == Command.WRITE, in_range & writable,
                             Mux(command == Command.READ, in_range, 1))
                register_ok = (command != Command.CONFIGURE) | (buffer_id < self.register_count)
                needs_idle = (command != Command.STATUS) & (command != Command.INFO)
                m.d.sync += [address.eq(offset), index.eq(0)]
                with m.If(~known):
                    reply(m, Status.UNKNOWN_COMMAND)
                with m.Elif(~length_ok):
                    reply(m, Status.BAD_LENGTH)
                with m.Elif(~address_ok):
                    reply(m, Status.BAD_ADDRESS)
                with m.Elif(~register_ok):
                    reply(m, Status.BAD_REGISTER)
                with m.Elif(needs_idle & self.busy):
                    reply(m, Status.BUSY)
                with m.Elif(command == Command.WRITE):
                    m.next = "WRITE_FETCH"
                with m.Elif(command == Command.READ):
                    reply(m, Status.OK, count)
                with m.Elif(command == Command.CONFIGURE):
                    for k in range(self.register_count):
                        with m.If(buffer_id == k):
                            m.d.sync += self.registers[k].eq(Cat(*args[1:5]))
                    reply(m, Status.OK)
                with m.Elif(command == Command.RUN):
                    m.d.comb += self.start.eq(1)
                    reply(m, Status.OK)
                with m.Elif(command == Command.STATUS):
                    m.d.sync += status_bytes.eq(self.status)
                    reply(m, Status.OK, STATUS_BYTES)
                with m.Else():
                    reply(m, Status.OK, len(self.info))

            # WRITE: staged byte 5 + index goes to byte address offset + index.
            with m.State("WRITE_FETCH"):
                m.d.comb += stage_read.addr.eq(index + 5)
                m.next = "WRITE_STORE"
            with m.State("WRITE_STORE"):
                m.d.comb += [
                    self.mem.write.eq(lane_ok),
                    self.mem.mask.eq(Const(1, len(self.mem.mask)) << lane[:len(self.mem.mask).bit_length()]),
                ]
                m.d.sync += [index.eq(index + 1), address.eq(address + 1)]
                with m.If(index + 1 == data_bytes):
                    reply(m, Status.OK)
                with m.Else():
                    m.next = "WRITE_FETCH"

            # Reply: start, status, seq, length, payload, CRC (over status .. payload).
            def goto(state):
                def then():
                    m.next = state
                return then

            def send(m, byte, then, crc=True):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(byte)]
                with m.If(self.tx.ready):
                    if crc:
                        m.d.comb += tx_crc.en.eq(1)
                    then()

            with m.State("REPLY_START"):
                m.d.comb += tx_crc.clear.eq(1)
                send(m, REPLY_START, goto("REPLY_STATUS"), crc=False)
            with m.State("REPLY_STATUS"):
                send(m, status, goto("REPLY_SEQ"))
            with m.State("REPLY_SEQ"):
                send(m, reply_seq, goto("REPLY_LENGTH_LOW"))
            with m.State("REPLY_LENGTH_LOW"):
                send(m, reply_length[:8], goto("REPLY_LENGTH_HIGH"))
            with m.State("REPLY_LENGTH_HIGH"):
                def after_length():
                    with m.If(reply_length == 0):
                        m.next = "REPLY_CRC_LOW"
                    with m.Else():
                        m.next = "REPLY_FETCH"
                send(m, reply_length[8:], after_length)
            with m.State("REPLY_FETCH"):
                # Memories answer one cycle after the address ...
                m.next = "REPLY_LATCH"
            with m.State("REPLY_LATCH"):
                # ... and the chosen byte is registered before it goes out (the block
                # RAM's output and the byte-lane multiplexer would not fit in one cycle).
                m.d.sync += payload_byte.eq(
                    Mux(command == Command.READ, read_byte,
                        Mux(command == Command.STATUS, status_bytes.word_select(index[:3], 8),
                            info_read.data)))
                m.next = "REPLY_PAYLOAD"
            with m.State("REPLY_PAYLOAD"):
                byte = payload_byte

                def next_byte():
                    m.d.sync += [index.eq(index + 1), address.eq(address + 1)]
                    with m.If(index + 1 == reply_length):
                        m.next = "REPLY_CRC_LOW"
                    with m.Else():
                        m.next = "REPLY_FETCH"
                send(m, byte, next_byte)
            with m.State("REPLY_CRC_LOW"):
                send(m, tx_crc.value[:8], goto("REPLY_CRC_HIGH"), crc=False)
            with m.State("REPLY_CRC_HIGH"):
                send(m, tx_crc.value[8:], goto("IDLE"), crc=False)
        return m
