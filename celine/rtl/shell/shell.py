"""The accelerator shell: UART link, protocol, buffers and one engine (docs/protocol.md)."""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ... import registry
from ...boards.baud import check_baud
from ...spec.checks import check_int
from ...spec.protocol import DEFAULT_MAX_PAYLOAD, DEFAULT_TIMEOUT_BITS, info_bytes
from ..common.skid import SkidBuffer
from .contract import check_engine
from .link import HostLink
from .hosted_buffer import HostedBuffer
from .receive_fifo import ReceiveFIFO
from .uart import UARTReceiver, UARTTransmitter


def uart_divisor(clock_hz, baud):
    """Clock cycles per bit; TypeError/ValueError if `baud` breaks the UART rate rule
    (celine.boards.baud.check_baud, the same rule and message as the board top's)."""
    check_baud(clock_hz, baud)
    return round(clock_hz / baud)


class Shell(wiring.Component):
    """A UART-attached accelerator: HostLink + buffers in block RAM + an engine adapter.

    `engine` is a shell adapter (celine.rtl.shell.contract): checked against the contract
    for `buffers` (BufferSpecs, in id order) and `registers` (a RegisterMap) here, so
    that a missing or mistyped member fails when the design is built. The engine owns
    the buffers while it runs (`busy`); otherwise the host link does. Byte FIFOs
    decouple the UART from the link in both directions. `description` is the engine's
    part of INFO (celine.engines.Accelerator.describe).
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    busy: Out(1)

    def __init__(self, engine, *, buffers, registers, description, clock_hz, baud,
                 max_payload=DEFAULT_MAX_PAYLOAD, timeout_bits=DEFAULT_TIMEOUT_BITS):
        check_int("clock_hz", clock_hz, minimum=1_000_000, maximum=500_000_000)
        uart_divisor(clock_hz, baud)                # the baud rule (celine.boards.baud)
        check_int("timeout_bits", timeout_bits, minimum=12, maximum=1 << 16)
        check_engine(engine, buffers, registers)
        self.engine = engine
        self.buffers = list(buffers)
        self.divisor = uart_divisor(clock_hz, baud)
        self.clock_hz = clock_hz
        self.baud = baud
        self.max_payload = max_payload
        self.timeout_cycles = timeout_bits * self.divisor
        self.description = {**description, "clock_hz": clock_hz, "baud": baud,
                            "max_payload": max_payload}
        self.info = info_bytes(self.description)
        super().__init__()
        # Built here so that a bad setting fails at construction, not at elaboration.
        self.link = HostLink(buffers=self.buffers, registers=len(registers), info=self.info,
                             max_payload=max_payload, timeout_cycles=self.timeout_cycles,
                             register_init=list(registers.reset_values().values()))

    def elaborate(self, platform):
        m = Module()
        engine, link = self.engine, self.link
        m.submodules.engine = engine
        m.submodules.link = link
        m.submodules.uart_rx = uart_rx = UARTReceiver(divisor=self.divisor)
        m.submodules.uart_tx = uart_tx = UARTTransmitter(divisor=self.divisor)
        # The receive FIFO (a block RAM) holds a whole request sent while a reply goes out;
        # a byte lost all the same is reported in STATUS (StatusFlags.OVERRUN).
        m.submodules.rx_fifo = rx_fifo = ReceiveFIFO(link.longest_request)
        m.submodules.tx_fifo = tx_fifo = SyncFIFOBuffered(width=8, depth=16)

        # The link sees the line's bytes through the receive FIFO, `latency` cycles late
        # when it is empty, and so sees its `quiet` that late too: the inter-byte timeout
        # then counts quiet line time from the stop bit of the byte it last took.
        quiet = uart_rx.quiet
        for k in range(rx_fifo.latency):
            late = Signal(init=1, name=f"quiet_{k + 1}")
            m.d.sync += late.eq(quiet)
            quiet = late
        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx),
                     link.quiet.eq(quiet), link.overrun.eq(uart_rx.overrun)]
        # A skid buffer registers the receive FIFO's `ready` toward the link's decoder.
        m.submodules.rx_skid = rx_skid = SkidBuffer(8)
        wiring.connect(m, uart_rx.o, rx_fifo.i)
        wiring.connect(m, rx_fifo.o, rx_skid.i)
        wiring.connect(m, rx_skid.o, link.rx)
        # And one the link's reply bytes (registered in its encoder) toward the transmit
        # FIFO (the encoder's state into the FIFO's level was a build's worst path, 9.1 ns
        # and 7 levels).
        m.submodules.tx_skid = tx_skid = SkidBuffer(8)
        wiring.connect(m, link.tx, tx_skid.i)
        wiring.connect(m, tx_skid.o, tx_fifo.w_stream)
        wiring.connect(m, tx_fifo.r_stream, uart_tx.i)

        # Registers, start, status.
        m.d.comb += [
            engine.registers.eq(link.registers),
            engine.start.eq(link.start),
            link.busy.eq(engine.busy),
            self.busy.eq(engine.busy),
            # The STATUS payload (celine.spec.protocol.STATUS_FORMAT): flags, errors,
            # cycles, result words.
            link.status.eq(Cat(engine.busy, Const(0, 7), engine.errors, engine.cycles,
                               engine.result_words)),
        ]

        # Buffers: the engine's port while it runs, the link's otherwise (HostedBuffer:
        # each buffer registers the ownership itself). The engine reads a
        # host-writable buffer (and may write it: engine_writes) and writes a read-only
        # one.
        rdata = []
        for k, spec in enumerate(self.buffers):
            hosted = HostedBuffer(spec, k, getattr(engine.mem, spec.name), link.mem)
            m.submodules[f"buffer_{spec.name}"] = hosted
            m.d.comb += hosted.owned_next.eq(engine.busy | link.start)
            rdata.append(hosted.byte)
        # The read byte's pick, by the select a cycle late: only the link's reply encoder
        # reads, its select holds through a reply and its first read comes several cycles
        # after it (the select's switch to the encoder through this pick into the
        # encoder's byte was a build's worst path, 9.2 ns). The pick goes into a register
        # (the last of link_streams.HOST_READ_STAGES).
        read_select = Signal.like(link.mem.select)
        m.d.sync += read_select.eq(link.mem.select)
        for k, value in enumerate(rdata):
            with m.If(read_select == k):
                m.d.sync += link.mem.rdata.eq(value)
        return m


def build_shell(*, accel=None, accel_params=None, clock_hz, baud,
                max_payload=DEFAULT_MAX_PAYLOAD, timeout_bits=DEFAULT_TIMEOUT_BITS, **options):
    """The shell around the engine named `accel` (default: the registry's first) with
    generator parameters `accel_params` (default: the engine's defaults). `options` are
    the engine's shell options (celine.engines.Accelerator.options), e.g. buffer depths."""
    record = registry.get(registry.DEFAULT if accel is None else accel)
    params = record.params() if accel_params is None else accel_params
    if not isinstance(params, record.params):
        raise TypeError(f"accel_params must be a {record.params.__name__}, not {params!r}")
    options = record.resolve_options(options)
    adapter = record.adapter.load()(params, **options)
    return Shell(adapter, buffers=record.buffers(params, **options),
                 registers=record.registers(params), description=record.describe(params, **options),
                 clock_hz=clock_hz, baud=baud, max_payload=max_payload,
                 timeout_bits=timeout_bits)
