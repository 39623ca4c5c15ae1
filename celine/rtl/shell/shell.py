"""The accelerator shell: UART link, protocol, buffers and one engine (docs/protocol.md)."""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ... import registry
from ...boards.baud import check_baud
from ...spec.checks import check_int
from ...spec.protocol import DEFAULT_MAX_PAYLOAD, DEFAULT_TIMEOUT_BITS, info_bytes
from .contract import check_engine
from .link import HostLink
from .link_streams import BYTES_A_GROUP
from .uart import UARTReceiver, UARTTransmitter


def uart_divisor(clock_hz, baud):
    """Clock cycles per bit; TypeError/ValueError if `baud` breaks the UART rate rule
    (celine.boards.baud.check_baud, the same rule and message as the board top's)."""
    check_baud(clock_hz, baud)
    return round(clock_hz / baud)


# The memory attributes of a buffer with two read ports. A DP16KD read on one port of the
# word the other port writes in the same cycle is undefined, and yosys' ECP5 library says
# so (no cross-port transparency), so it would keep the "read the old word" promise of
# port B towards port A's write by doubling the block RAM. `no_rw_check` waives that
# promise: port B is the engine's and the host writes only while the engine does not own
# the buffer, when the engine ignores what port B returns. It waives it on port A too,
# where nothing depends on it: the link writes a buffer before it replies and reads one
# only to send a reply (link.py), never both in one cycle.
_TWO_READ_PORTS = {"no_rw_check": 1}


def _host_byte(m, spec, word, lane):
    """The byte the link reads from buffer `spec`: byte `lane` of the block RAM's output
    `word`, through HOST_READ_STAGES register stages beside the buffer (link_streams.
    READ_LATENCY): the word as the block RAM gives it (a block RAM's output has a long
    clock-to-out and no logic may follow it in the same cycle), then BYTES_A_GROUP : 1
    multiplexers, then one multiplexer over the groups. The link holds `lane` (and the
    buffer select) steady while it waits, so every stage reads it undelayed. No reset:
    the link only looks at the result READ_LATENCY cycles after an address."""
    name = spec.name
    lane = lane[:max(1, (spec.word_stride - 1).bit_length())]
    held = Signal.like(word, name=f"host_word_{name}", reset_less=True)
    m.d.sync += held.eq(word)
    group_bits = (BYTES_A_GROUP - 1).bit_length()
    groups = [held[8 * k:8 * (k + BYTES_A_GROUP)] for k in range(0, spec.word_bytes, BYTES_A_GROUP)]
    picked = []
    for k, group in enumerate(groups):
        reg = Signal(8, name=f"host_group_{name}_{k}", reset_less=True)
        # A short last group reads 0 past its end (a padding lane: the link ignores it).
        wide = Cat(group, Const(0, 8 * BYTES_A_GROUP - len(group)))
        m.d.sync += reg.eq(wide.word_select(lane[:group_bits], 8))
        picked.append(reg)
    byte = Signal(8, name=f"host_byte_{name}", reset_less=True)
    if len(picked) == 1:
        m.d.sync += byte.eq(picked[0])
    else:
        m.d.sync += byte.eq(Array(picked)[lane[group_bits:]])
    return byte


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
        # The receive FIFO (block RAM) holds a whole request sent while a reply goes out;
        # a byte lost all the same is reported in STATUS (StatusFlags.OVERRUN).
        m.submodules.rx_fifo = rx_fifo = SyncFIFOBuffered(width=8, depth=link.longest_request)
        m.submodules.tx_fifo = tx_fifo = SyncFIFOBuffered(width=8, depth=16)

        m.d.comb += [uart_rx.rx.eq(self.rx), self.tx.eq(uart_tx.tx),
                     link.quiet.eq(uart_rx.quiet), link.overrun.eq(uart_rx.overrun)]
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
            # The STATUS payload (celine.spec.protocol.STATUS_FORMAT): flags, errors,
            # cycles, result words.
            link.status.eq(Cat(engine.busy, Const(0, 7), engine.errors, engine.cycles,
                               engine.result_words)),
        ]

        # Buffers: the engine's port while it runs, the link's otherwise. The engine
        # reads a host-writable buffer (and may write it: engine_writes) and writes a
        # read-only one.
        owned = engine.busy
        rdata = []
        for k, spec in enumerate(self.buffers):
            memory = Memory(shape=8 * spec.word_bytes, depth=spec.depth, init=[],
                            attrs=_TWO_READ_PORTS if spec.read_ports == 2 else None)
            m.submodules[f"buffer_{spec.name}"] = memory
            write = memory.write_port(granularity=8)
            read = memory.read_port(transparent_for=())
            port = getattr(engine.mem, spec.name)
            # The link's address, byte enables and data, registered beside the buffer
            # (link_streams.HOST_ADDRESS_STAGES): the link's address drives every buffer,
            # and a register here keeps that spread out of a block RAM's address setup.
            host_addr = Signal(range(spec.depth), name=f"host_addr_{spec.name}", reset_less=True)
            host_mask = Signal(len(write.en), name=f"host_mask_{spec.name}")
            m.d.sync += host_addr.eq(link.mem.addr)
            if spec.writable:
                host_data = Signal(len(write.data), name=f"host_data_{spec.name}",
                                   reset_less=True)
                m.d.sync += [
                    host_mask.eq(Mux(link.mem.write & (link.mem.select == k),
                                     link.mem.mask[:len(write.en)], 0)),
                    host_data.eq(link.mem.wdata[:len(write.data)]),
                ]
                read_addr = Mux(owned, port.addr, host_addr)
                # With a second read port, port A of the true-dual-port block RAM (DP16KD)
                # writes and reads, port B reads (see _TWO_READ_PORTS): yosys merges a
                # write and a read port into one RAM port only when their addresses are
                # the same signal. The write is disabled while the engine owns the
                # buffer, so its address may be the engine's then.
                # An engine that writes the buffer (BufferSpec.engine_writes) does so on
                # the same port, at the same address, while it owns it: still one RAM port.
                two = spec.read_ports == 2
                host_en = Mux(owned, 0, host_mask)
                if spec.watched:
                    m.d.comb += port.host_wrote.eq(host_en.any())
                if spec.engine_writes:
                    engine_en = Mux(owned, port.write.replicate(len(write.en)), 0)
                    m.d.comb += [write.data.eq(Mux(owned, port.wdata, host_data)),
                                 write.en.eq(engine_en | host_en)]
                else:
                    m.d.comb += [write.data.eq(host_data), write.en.eq(host_en)]
                m.d.comb += [
                    write.addr.eq(read_addr if two else host_addr),
                    read.addr.eq(read_addr),
                    port.data.eq(read.data),
                ]
                if two:
                    read_b = memory.read_port(transparent_for=())
                    m.d.comb += [read_b.addr.eq(port.b.addr), port.b.data.eq(read_b.data)]
            else:
                m.d.comb += [
                    write.addr.eq(Mux(owned, port.addr, host_addr)),
                    write.data.eq(port.data),
                    write.en.eq(Mux(owned, port.write.replicate(len(write.en)), 0)),
                    read.addr.eq(host_addr),
                ]
            rdata.append(_host_byte(m, spec, read.data, link.mem.lane))
        selected = link.mem.rdata
        for k, value in enumerate(rdata):
            with m.If(link.mem.select == k):
                m.d.comb += selected.eq(value)
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
