"""A shell adapter alone in the Amaranth simulator: each of its buffers a plain memory
(its `read_latency` on each of its read ports, as in the shell; the engine's writes
into a buffer it writes, a cycle late at read latency 3 as in the shell), its registers
set, `start` pulsed."""

from collections import OrderedDict

from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib.memory import Memory

from .amaranth_sim import REUSED, run_sim

__all__ = ["AdapterBench", "run_adapter"]

_benches = OrderedDict()           # id(engine): its AdapterBench, for run_sim's reuse


class AdapterBench(Elaboratable):
    """`engine` (a shell adapter with `buffers` and the contract's `mem` ports) with each
    buffer as a memory, initialised from `contents` {buffer name: words} (none: all 0)."""

    def __init__(self, engine, contents=None):
        self.engine = engine
        self.memories = {spec.name: Memory(shape=spec.width, depth=spec.depth,
                                           init=(contents or {}).get(spec.name, []))
                         for spec in engine.buffers}

    def elaborate(self, platform):
        m = Module()
        engine = m.submodules.engine = self.engine
        for spec in engine.buffers:
            memory = m.submodules[spec.name] = self.memories[spec.name]
            port = getattr(engine.mem, spec.name)
            if spec.writable:
                # Port A, and port B of a buffer with two read ports (BufferSpec.read_ports).
                ports = [port, port.b] if spec.read_ports == 2 else [port]
                for engine_port in ports:
                    read = memory.read_port(transparent_for=())
                    word, addr = read.data, engine_port.addr
                    # The block RAM's registers: at latency 3 its address register, so
                    # the read meets the writes when the shell's does.
                    if spec.read_latency == 3:
                        addr = Signal.like(engine_port.addr, reset_less=True)
                        m.d.sync += addr.eq(engine_port.addr)
                    for _ in range(min(spec.read_latency, 2) - 1):   # its output register
                        late = Signal.like(read.data, reset_less=True)
                        m.d.sync += late.eq(word)
                        word = late
                    m.d.comb += [read.addr.eq(addr), engine_port.data.eq(word)]
                if spec.engine_writes:
                    # The engine's writes through port A, at port A's address; at read
                    # latency 3 registered with the address first, as the shell's block
                    # RAM does (rtl/shell/block_ram.py), so they land a cycle later.
                    write = memory.write_port()
                    addr, wdata, en = port.addr, port.wdata, port.write
                    if spec.read_latency == 3:
                        late = (Signal.like(addr, reset_less=True),
                                Signal.like(wdata, reset_less=True), Signal())
                        m.d.sync += [r.eq(v) for r, v in zip(late, (addr, wdata, en))]
                        addr, wdata, en = late
                    m.d.comb += [write.addr.eq(addr), write.data.eq(wdata),
                                 write.en.eq(en)]
            else:
                write = memory.write_port()
                m.d.comb += [write.addr.eq(port.addr), write.data.eq(port.data),
                             write.en.eq(port.write)]
        return m


def run_adapter(engine, contents, settings, *, runs=1, limit=20_000, host_writes=None):
    """Set the registers (`settings` by name, the others at their reset values), pulse
    `start` `runs` times, each time waiting for `busy` to fall (TimeoutError after `limit`
    cycles); ([(errors, cycles, result_words)] per run, {buffer name: words} after).
    `host_writes`: per run, {buffer name: {address: word}} the host writes before it, a
    word a cycle, with `host_wrote` high for a watched buffer (BufferSpec.watched).

    The bench and its simulator are kept for the next call with the same `engine` object
    (amaranth_sim.run_sim's `reuse`; tests get one with amaranth_sim.shared), so the
    buffers' contents are written before the first cycle rather than made the memories'
    initial values."""
    bench = _benches.pop(id(engine), None)
    if bench is None or bench.engine is not engine:
        bench = AdapterBench(engine)
    _benches[id(engine)] = bench
    while len(_benches) > REUSED:
        _benches.popitem(last=False)
    registers = engine.register_map
    status, words = [], {}

    async def testbench(ctx):
        for name, memory in bench.memories.items():
            for address, word in enumerate(contents.get(name, [])):
                if word:
                    ctx.set(memory.data[address], word)
        for name in registers.names:
            ctx.set(engine.registers[registers.index(name)],
                    settings.get(name, registers[name].reset))
        for run in range(runs):
            for name, writes in ((host_writes or [{}] * runs)[run] or {}).items():
                spec = next(b for b in engine.buffers if b.name == name)
                port = getattr(engine.mem, name)
                for address, word in writes.items():
                    ctx.set(bench.memories[name].data[address], word)
                    if spec.watched:
                        ctx.set(port.host_wrote, 1)
                    await ctx.tick()
                if spec.watched:
                    ctx.set(port.host_wrote, 0)
            await ctx.tick()        # registers settle a cycle before start (docs/engines.md)
            ctx.set(engine.start, 1)
            await ctx.tick()
            ctx.set(engine.start, 0)
            assert ctx.get(engine.busy), "start did not make the engine busy"
            for _ in range(limit):
                if not ctx.get(engine.busy):
                    break
                await ctx.tick()
            else:
                raise TimeoutError(f"still busy after {limit} cycles")
            status.append((ctx.get(engine.errors), ctx.get(engine.cycles),
                           ctx.get(engine.result_words)))
        for name, memory in bench.memories.items():
            words[name] = [ctx.get(memory.data[i]) for i in range(memory.depth)]

    run_sim(bench, testbench, reuse=True)
    return status, words
