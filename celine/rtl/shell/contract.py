"""The engine <-> shell contract: the signature an engine's shell adapter must have.

An adapter has, besides its own parameters, exactly what `engine_signature(buffers,
registers)` lists:
- `start` (In, one cycle: RUN), `busy` (Out: running). The engine owns the buffers in
  every cycle that follows one with `start` or `busy` (each buffer registers that,
  HostedBuffer), so `busy` must rise the cycle after `start` (or stay high from it) and
  stay high up to the cycle of the engine's last buffer access,
- `registers` (In: the CONFIGURE values, 32 bits each, in register id order),
- `errors` (Out, 8 bits: the STATUS engine error flags of the last run), `cycles` (Out,
  32 bits) and `result_words` (Out, 16 bits) of the last run,
- `mem`: one port per buffer, by the buffer's name. A host-writable buffer is read by the
  engine (`addr` out, `data` in the buffer's `read_latency` cycles later: 1, or 2 from
  the block RAM's output register); a read-only one is written by it
  (`addr`, `data`, `write` out). A host-writable buffer with `read_ports=2` (BufferSpec)
  has a second read port `b` (`b.addr` out, `b.data` in, the same timing
  as the first), for reading two addresses in the same cycle; the shell serves it from
  the block RAM's second port, so it costs no block RAM. One declared with
  `engine_writes=True` (and two read ports) adds `wdata` (out, the buffer's width) and
  `write` (out, 1) to the first port: while `write` is high the engine writes `wdata` at
  that port's `addr` (the address it reads at), through the RAM port the host writes by.
  One declared `watched=True` adds `host_wrote` (in, 1): high in each cycle the host
  writes a word of it (the engine is idle then), so the engine can keep a verdict about
  the buffer's contents until they change.
The shell checks an adapter against it when the design is built (`check_engine`).
"""

from amaranth.hdl import Shape
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...spec.fields import REGISTER_BITS

__all__ = ["read_port_signature", "buffer_port_signature", "engine_signature", "check_engine",
           "ERROR_BITS", "CYCLE_BITS", "RESULT_WORD_BITS"]

ERROR_BITS, CYCLE_BITS, RESULT_WORD_BITS = 8, 32, 16     # STATUS fields


def read_port_signature(buffer):
    """One read port into a buffer (a BufferSpec): `addr` out, `data` in
    `buffer.read_latency` cycles later."""
    return wiring.Signature({"addr": Out(range(buffer.depth)), "data": In(buffer.width)})


def buffer_port_signature(buffer):
    """The engine's port into one buffer (a BufferSpec)."""
    if buffer.writable:
        members = dict(read_port_signature(buffer).members)
        if buffer.read_ports == 2:
            members["b"] = Out(read_port_signature(buffer))
        if buffer.engine_writes:
            members["wdata"] = Out(buffer.width)
            members["write"] = Out(1)
        if buffer.watched:
            members["host_wrote"] = In(1)
        return wiring.Signature(members)
    return wiring.Signature({"addr": Out(range(buffer.depth)), "data": Out(buffer.width),
                             "write": Out(1)})


def engine_signature(buffers, registers):
    """The adapter side of the contract for `buffers` (BufferSpecs) and `registers`."""
    return wiring.Signature({
        "start": In(1),
        "busy": Out(1),
        "registers": In(data.ArrayLayout(REGISTER_BITS, len(registers))),
        "errors": Out(ERROR_BITS),
        "cycles": Out(CYCLE_BITS),
        "result_words": Out(RESULT_WORD_BITS),
        "mem": Out(wiring.Signature({b.name: Out(buffer_port_signature(b)) for b in buffers})),
    })


def _ports(signature):
    return {".".join(map(str, path)): (member.flow, Shape.cast(member.shape))
            for path, member in signature.members.flatten() if member.is_port}


def check_engine(engine, buffers, registers, *, name="engine"):
    """TypeError naming the first member `engine` lacks or has wrong, if any."""
    if not isinstance(engine, wiring.Component):
        raise TypeError(f"{name} must be a wiring.Component, not {engine!r}")
    want = _ports(engine_signature(buffers, registers))
    have = _ports(engine.signature)
    for path, (flow, shape) in want.items():
        if path not in have:
            raise TypeError(f"{name} must have a member {path!r} of {flow.name}({shape!r}) "
                            f"(the shell contract), not none")
        if have[path] != (flow, shape):
            got_flow, got_shape = have[path]
            raise TypeError(f"{name} member {path!r} must be {flow.name}({shape!r}), "
                            f"not {got_flow.name}({got_shape!r})")
