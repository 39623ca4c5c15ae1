"""The accelerator shell: UART link, protocol, buffers and one engine (docs/protocol.md)."""

import json

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..common.checks import check_int
from .link import HostLink
from .mac_engine import REGISTERS as MAC_REGISTERS, MacEngine
from .taylor_engine import REGISTERS as TAYLOR_REGISTERS, TaylorEngine
from .taylor_engine import register_init as taylor_register_init
from .uart import UARTReceiver, UARTTransmitter

MAX_BAUD_ERROR = 0.02


def uart_divisor(clock_hz, baud):
    """Clock cycles per bit; ValueError if the rate is off by 2 % or more, or too fast."""
    divisor = round(clock_hz / baud)
    if divisor < 4 or abs(clock_hz / divisor - baud) / baud >= MAX_BAUD_ERROR:
        raise ValueError(f"baud must be within 2 % of clock_hz / n for an integer n >= 4, "
                         f"not {baud!r} at {clock_hz!r} Hz")
    return divisor


class Shell(wiring.Component):
    """A UART-attached accelerator: HostLink + buffers in block RAM + an engine.

    The engine (MacEngine, TaylorEngine) has `start`, `busy`, `registers`, `errors`,
    `cycles`, `result_words` and a list `buffers` of BufferSpec; for each buffer, ports
    `<name>_addr` and `<name>_data`, in which it reads a host-writable buffer (one cycle
    of read latency) and writes a read-only one (with `<name>_write`).
    The engine owns the buffers while it runs (`busy`); otherwise the host link does.
    Byte FIFOs decouple the UART from the link in both directions.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    busy: Out(1)

    def __init__(self, engine, *, engine_name, registers, params, clock_hz, baud,
                 max_payload=1024, timeout_bits=64, register_init=None):
        check_int("clock_hz", clock_hz, minimum=1_000_000, maximum=500_000_000)
        check_int("baud", baud, minimum=1200, maximum=clock_hz // 4)
        check_int("timeout_bits", timeout_bits, minimum=12, maximum=1 << 16)
        self.engine = engine
        self.divisor = uart_divisor(clock_hz, baud)
        self.clock_hz = clock_hz
        self.baud = baud
        self.max_payload = max_payload
        self.timeout_cycles = timeout_bits * self.divisor
        self.description = {
            "engine": engine_name,
            "params": params,
            "buffers": [{"name": b.name, "word_bytes": b.word_bytes, "word_stride": b.word_stride,
                         "depth": b.depth, "writable": b.writable} for b in engine.buffers],
            "registers": registers,
            "clock_hz": clock_hz,
            "baud": baud,
            "max_payload": max_payload,
        }
        self.info = json.dumps(self.description, sort_keys=True, separators=(",", ":")).encode()
        super().__init__()
        # Built here so that a bad setting fails at construction, not at elaboration.
        self.link = HostLink(buffers=engine.buffers, registers=len(registers), info=self.info,
                             max_payload=max_payload, timeout_cycles=self.timeout_cycles,
                             register_init=register_init)

    def elaborate(self, platform):
        m = Module()
        engine, link = self.engine, self.link
        m.submodules.engine = engine
        m.submodules.link = link
        m.submodules.uart_rx = uart_rx = UARTReceiver(divisor=self.divisor)
        m.submodules.uart_tx = uart_tx = UARTTransmitter(divisor=self.divisor)
        m.submodules.rx_fifo = rx_fifo = SyncFIFOBuffered(width=8, depth=32)
        m.submodules.tx_fifo = tx_fifo = SyncFIFOBuffered(width=8, depth=16)

        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx)]
        wiring.connect(m, uart_rx.o, rx_fifo.w_stream)
        wiring.connect(m, rx_fifo.r_stream, link.rx)
        wiring.connect(m, link.tx, tx_fifo.w_stream)
        wiring.connect(m, tx_fifo.r_stream, uart_tx.i)

        # Registers, start, status.
        m.d.comb += [
            engine.registers.eq(link.registers),
            engine.start.eq(link.start),
            link.busy.eq(engine.busy),
            self.busy.eq(engine.busy),
            link.status.eq(Cat(engine.busy, Signal(7), engine.errors, engine.cycles,
                               engine.result_words)),
        ]

        # Buffers: engine ports while it runs, the link's otherwise. The engine has, per
        # buffer, `<name>_addr` and `<name>_data`: it reads a host-writable buffer, and
        # writes a read-only one (then also `<name>_write`).
        owned = engine.busy
        rdata = []
        for k, spec in enumerate(engine.buffers):
            memory = Memory(shape=8 * spec.word_bytes, depth=spec.depth, init=[])
            m.submodules[f"buffer_{spec.name}"] = memory
            write = memory.write_port(granularity=8)
            read = memory.read_port(transparent_for=())
            engine_addr = getattr(engine, f"{spec.name}_addr")
            engine_data = getattr(engine, f"{spec.name}_data")
            if spec.writable:
                host_write = link.mem.write & (link.mem.select == k)
                m.d.comb += [
                    write.addr.eq(link.mem.addr),
                    write.data.eq(link.mem.wdata[:len(write.data)]),
                    write.en.eq(Mux(host_write & ~owned, link.mem.mask[:len(write.en)], 0)),
                    read.addr.eq(Mux(owned, engine_addr, link.mem.addr)),
                    engine_data.eq(read.data),
                ]
            else:
                engine_write = getattr(engine, f"{spec.name}_write")
                m.d.comb += [
                    write.addr.eq(Mux(owned, engine_addr, link.mem.addr)),
                    write.data.eq(engine_data),
                    write.en.eq(Mux(owned, engine_write.replicate(len(write.en)), 0)),
                    read.addr.eq(link.mem.addr),
                ]
            rdata.append(read.data)
        selected = link.mem.rdata
        for k, value in enumerate(rdata):
            with m.If(link.mem.select == k):
                m.d.comb += selected.eq(value)
        return m


def build_shell(*, accel="mac", accel_params=None, clock_hz, baud, operand_depth=None,
                result_depth=None, max_payload=1024, timeout_bits=64):
    """The shell around one engine, by name (boards/ builds it for a board).

    accel "mac": the MAC array (MacArrayParams); its act/weight buffers hold
    `operand_depth` words and its result buffer `result_depth` (default 512 each).
    accel "taylor": the Taylor-attention pipeline (TaylorParams); its buffer depths follow
    from the parameters (heads x max_tokens x row_beats), so the two depths must be None.
    """
    if accel == "mac":
        from ..mac.params import MacArrayParams
        params = accel_params if accel_params is not None else MacArrayParams()
        engine = MacEngine(params, operand_depth=operand_depth or 512,
                           result_depth=result_depth or 512)
        registers = MAC_REGISTERS
        init = [0] * len(MAC_REGISTERS)
        init[MAC_REGISTERS["precision"]] = max(params.precisions)
    elif accel == "taylor":
        from ..taylor.params import TaylorParams
        for name, value in (("operand_depth", operand_depth), ("result_depth", result_depth)):
            if value is not None:
                raise ValueError(f"{name} must be None for the taylor engine (its buffers "
                                 f"hold heads x max_tokens x row_beats words), not {value!r}")
        params = accel_params if accel_params is not None else TaylorParams()
        engine = TaylorEngine(params)
        registers = TAYLOR_REGISTERS
        init = taylor_register_init(params)
    else:
        raise ValueError(f"accel must be 'mac' or 'taylor', not {accel!r}")
    return Shell(engine, engine_name=accel, registers=registers, params=params.to_dict(),
                 clock_hz=clock_hz, baud=baud, max_payload=max_payload,
                 timeout_bits=timeout_bits, register_init=init)
