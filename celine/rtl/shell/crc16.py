from amaranth.hdl import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...spec.protocol import CRC_INIT as INIT, CRC_POLY as POLY


def crc16_update(crc, byte):
    """CRC-16/CCITT-FALSE of one more byte, as Amaranth logic (8 unrolled steps)."""
    for k in range(8):
        feedback = byte[7 - k] ^ crc[15]
        crc = (crc << 1)[:16] ^ Mux(feedback, POLY, 0)
    return crc


class CRC16(wiring.Component):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF), one byte per cycle.

    `clear` restarts from 0xFFFF; with `en` the byte `data` is folded in. `value` is the
    CRC of the bytes so far (registered: it includes a byte from the cycle after `en`).
    """

    clear: In(1)
    en: In(1)
    data: In(8)
    value: Out(16, init=INIT)

    def elaborate(self, platform):
        m = Module()
        with m.If(self.clear):
            m.d.sync += self.value.eq(INIT)
        with m.Elif(self.en):
            m.d.sync += self.value.eq(crc16_update(self.value, self.data))
        return m
