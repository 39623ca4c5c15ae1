"""The harness of the frame decoder (rtl/shell/frame_decoder.py): a request it passes as OK
is a whole frame of at most `max_payload` payload bytes whose CRC bytes match the CRC of
the bytes it took.

The harness reads the frames itself, from the bytes the decoder takes on `rx`, with a
reference of its own: after a start byte, the command, sequence number, length (two bytes),
`length` payload bytes and the two CRC bytes; `ref` is the CRC-16/CCITT-FALSE of the bytes
from the command to the payload's last, computed here bit by bit (not with the decoder's
CRC16). A request on `request` ends the frame (an error ends it early): the harness looks
for the next start byte from there, beginning with the byte the decoder holds unused if
there is one (the decoder takes one byte ahead; `rx.ready` is low while it holds one).
Free inputs: `rx` (valid and byte), `quiet`, `request.ready`, the staging read address and
the reset; `rx` keeps the stream rule (a byte offered stays, unchanged, until taken).
Asserted whenever a request is offered with Status.OK:

- its length is at most `max_payload`;
- it is the frame just read: the harness has taken exactly the frame's bytes since its
  start byte (and the one byte held after them, if any), and the request's command,
  sequence number, length and first payload bytes (`args`, 0 beyond the payload) are the
  frame's;
- the frame's CRC bytes equal `ref`.

The invariant the induction needs (the decoder's insides, celine.formal.insides): in each
state of the decoder, how many of the frame's bytes the harness has taken (the decoder's
`index` in the payload, plus the byte it holds), that the fields it stored and the byte it
holds are the harness's, and that its CRC register is `ref` (with the byte it holds folded
in, while that byte is one the CRC covers). Without it a state the decoder cannot reach
(say, its CRC register out of step with the bytes) could sit quiet for any number of
cycles before a request, and no induction length would close the proof.
"""

from amaranth.hdl import Assert, Assume, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In

from ..rtl.shell.frame_decoder import FrameDecoder
from ..rtl.shell.link_streams import ARG_BYTES
from ..spec.protocol import CRC_INIT, CRC_POLY, REQUEST_START, Status
from .insides import Insides

__all__ = ["FrameHarness"]


def crc16_byte(m, crc, byte):
    """CRC-16/CCITT-FALSE of one more byte, the textbook way (spec.protocol.crc16): the
    byte into the top bits, then eight shifts. A signal a step (in `m`): an expression
    that used the previous step three times would grow threefold with each."""
    step = Signal(16)
    m.d.comb += step.eq(crc ^ (byte << 8))
    for _ in range(8):
        shifted = Signal(16)
        m.d.comb += shifted.eq(Mux(step[15], (step << 1) ^ CRC_POLY, step << 1)[:16])
        step = shifted
    return step


class FrameHarness(wiring.Component):
    def __init__(self, *, max_payload=16, timeout_cycles=16):
        self._max_payload = max_payload
        self._timeout_cycles = timeout_cycles
        super().__init__({"rx_valid": In(1), "rx_byte": In(8), "quiet": In(1),
                          "request_ready": In(1), "staging_addr": In(range(max_payload))})

    def elaborate(self, platform):
        m = Module()
        max_payload = self._max_payload
        decoder = FrameDecoder(max_payload=max_payload, timeout_cycles=self._timeout_cycles)
        dut = Insides(decoder, platform)
        crc = dut.submodule("crc")             # (named before the decoder is elaborated)
        rx, request = decoder.rx, decoder.request
        m.d.comb += [rx.valid.eq(self.rx_valid), rx.payload.eq(self.rx_byte),
                     decoder.quiet.eq(self.quiet), request.ready.eq(self.request_ready),
                     decoder.staging.addr.eq(self.staging_addr)]

        # The stream rule of `rx`.
        was_waiting = Signal()
        last_offer = Signal(8)
        m.d.sync += [was_waiting.eq(rx.valid & ~rx.ready), last_offer.eq(rx.payload)]
        with m.If(was_waiting):
            m.d.comb += [Assume(self.rx_valid), Assume(self.rx_byte == last_offer)]

        # The reference reader. `count`: the frame's bytes taken after its start byte
        # (saturating: no frame the decoder may pass is longer).
        cap = max_payload + 8
        in_frame = Signal()
        count = Signal(range(cap + 1))
        ref = Signal(16, init=CRC_INIT)
        command, seq, length = Signal(8), Signal(8), Signal(16)
        args = Signal(data.ArrayLayout(8, ARG_BYTES))     # the first payload bytes (0 beyond)
        crc_bytes = Signal(16)
        last = Signal(8)                      # the byte taken last

        took = rx.valid & rx.ready
        emitted = request.valid & request.ready

        def begin(byte):
            """A byte taken outside a frame: a start byte begins one."""
            m.d.sync += [in_frame.eq(byte == REQUEST_START), count.eq(0), ref.eq(CRC_INIT),
                         args.eq(0)]

        with m.If(took):
            m.d.sync += last.eq(rx.payload)
        with m.If(emitted):
            with m.If(~rx.ready):              # the byte the decoder holds comes first
                begin(last)
            with m.Elif(took):
                begin(rx.payload)
            with m.Else():
                m.d.sync += in_frame.eq(0)
        with m.Elif(took & ~in_frame):
            begin(rx.payload)
        with m.Elif(took):
            byte = rx.payload
            k = Signal(range(cap + 2))         # this byte's place after the start byte
            m.d.comb += k.eq(count + 1)
            m.d.sync += count.eq(Mux(k > cap, cap, k))
            with m.If(k <= 4 + Mux(k <= 4, 0, length)):
                m.d.sync += ref.eq(crc16_byte(m, ref, byte))
                for j in range(ARG_BYTES):
                    with m.If(k == 5 + j):
                        m.d.sync += args[j].eq(byte)
            with m.Switch(k):
                with m.Case(1):
                    m.d.sync += command.eq(byte)
                with m.Case(2):
                    m.d.sync += seq.eq(byte)
                with m.Case(3):
                    m.d.sync += length[:8].eq(byte)
                with m.Case(4):
                    m.d.sync += length[8:].eq(byte)
            with m.If(k == 5 + length):
                m.d.sync += crc_bytes[:8].eq(byte)
            with m.If(k == 6 + length):
                m.d.sync += crc_bytes[8:].eq(byte)

        # The property.
        held = ~rx.ready
        fields = request.payload
        with m.If(request.valid & (fields.status == Status.OK)):
            m.d.comb += [
                Assert(fields.length <= max_payload),
                Assert(in_frame & (count == 6 + length + held)),
                Assert((fields.command == command) & (fields.seq == seq)
                       & (fields.length == length) & (fields.args == args)),
                Assert(crc_bytes == ref),
            ]

        # The invariant. Everywhere: the byte the decoder holds is the one taken last.
        state = dut.state
        byte, is_start = dut.signal("byte"), dut.signal("is_start")
        index, last_payload = dut.signal("index"), dut.signal("last_payload")
        crc_low, crc_high = dut.signal("crc_low"), dut.signal("crc_high")
        index_next = dut.signal("index_next")
        m.d.comb += [Assert(is_start == (byte == REQUEST_START)), Assert(count <= cap),
                     Assert(index_next == (index + 1)[:len(index_next)])]
        with m.If(held):
            m.d.comb += Assert(byte == last)
        # Between frames: the harness is in a frame only if the decoder holds its start.
        with m.If(state("IDLE")):
            m.d.comb += Assert(in_frame == (held & is_start))
            with m.If(in_frame):
                m.d.comb += Assert((count == 0) & (ref == CRC_INIT) & (args.as_value() == 0))

        # In a frame, per state: the frame's bytes the decoder has used (the harness has
        # taken them and the one it holds), the harness's field that the byte it holds
        # went to, and the fields the decoder has stored.
        frame = ["COMMAND", "SEQ", "LENGTH_LOW", "LENGTH_HIGH", "PAYLOAD", "CRC_LOW",
                 "CRC_HIGH", "CRC_CHECK"]
        used = {"COMMAND": 0, "SEQ": 1, "LENGTH_LOW": 2, "LENGTH_HIGH": 3,
                "PAYLOAD": 4 + index, "CRC_LOW": 4 + length, "CRC_HIGH": 5 + length,
                "CRC_CHECK": 6 + length}
        held_into = {"COMMAND": command, "SEQ": seq, "LENGTH_LOW": length[:8],
                     "LENGTH_HIGH": length[8:], "CRC_LOW": crc_bytes[:8],
                     "CRC_HIGH": crc_bytes[8:]}        # (PAYLOAD's: below)
        stored = [("SEQ", fields.command == command), ("LENGTH_LOW", fields.seq == seq),
                  ("LENGTH_HIGH", fields.length[:8] == length[:8]),
                  ("PAYLOAD", fields.length == length), ("PAYLOAD", length <= max_payload),
                  ("CRC_LOW", fields.args == args), ("CRC_HIGH", crc_low == crc_bytes[:8]),
                  ("CRC_CHECK", crc_high == crc_bytes[8:])]
        for place, name in enumerate(frame):
            with m.If(state(name)):
                m.d.comb += Assert(in_frame & (count == used[name] + held))
                m.d.comb += [Assert(check) for since, check in stored
                             if frame.index(since) <= place]
                if name in held_into:
                    with m.If(held):
                        m.d.comb += Assert(held_into[name] == byte)
                if place < frame.index("PAYLOAD"):
                    m.d.comb += Assert((index == 0) & (fields.args.as_value() == 0)
                                       & (args.as_value() == 0))
        with m.If(state("PAYLOAD")):
            m.d.comb += Assert((length != 0) & (index < length))
            with m.If(held):
                m.d.comb += Assert(last_payload == (index + 1 == length))
            # The payload bytes used are in both `args`; the one held in the harness's.
            for j in range(ARG_BYTES):
                with m.If(j < index):
                    m.d.comb += Assert(fields.args[j] == args[j])
                with m.Elif((j == index) & held):
                    m.d.comb += Assert((fields.args[j] == 0) & (args[j] == byte))
                with m.Else():
                    m.d.comb += Assert((fields.args[j] == 0) & (args[j] == 0))

        # The decoder's CRC register: `ref`, or `ref` but for the byte it holds (up to the
        # payload's last, every byte is one the CRC covers).
        with_held = Mux(held, crc16_byte(m, crc.value, byte), crc.value)
        for place, name in enumerate(frame):
            with m.If(state(name)):
                if place <= frame.index("PAYLOAD"):
                    m.d.comb += Assert(with_held == ref)
                else:
                    m.d.comb += Assert(crc.value == ref)
        with m.If(state("COMMAND")):
            m.d.comb += Assert(crc.value == CRC_INIT)

        m.submodules.dut = dut
        return m
