"""The harness of the command executor (rtl/shell/command_executor.py): a request whose
status is not OK (a frame that failed the decoder's length, CRC or timeout checks) changes
nothing.

The executor works on the request offered on `request` until it takes it (with its reply
descriptor), so the request offered while the executor acts is the one it acts for. Free
inputs: every input port (the request's valid and every field of its payload, the reply's
ready, `busy`, `status`, `overrun`, the staged byte) and the reset; the requests keep the
stream rule (an offer stays, unchanged, until taken). Asserted every cycle, from the ports
alone (the executor's insides are not named, so the harness holds whatever the executor
does inside):

- a buffer write (`mem.write`) is a WRITE request's, and that request's status is OK;
- `start` pulses for a RUN request whose status is OK;
- the registers change only for a CONFIGURE request whose status is OK, and only the
  register it names, to the value it carries (a reset aside: it puts them back to their
  initial values);
- (what the induction needs) `mem.write` is never high two cycles running: a write takes
  two cycles a byte, so a write enable stuck high, which would write for every later
  request, is not a state the step may start from.
"""

from amaranth.hdl import Assert, Assume, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from ..rtl.shell.command_executor import CommandExecutor
from ..rtl.shell.link_streams import request_fields, request_layout
from ..spec.fields import BufferSpec
from ..spec.protocol import STATUS_BYTES, Command, Status

__all__ = ["ExecutorHarness"]

# Small buffers: a writable one of byte words and a read-only one of 16-bit words.
BUFFERS = (BufferSpec("host", width=8, depth=4, writable=True),
           BufferSpec("engine", width=16, depth=2, writable=False))
REGISTERS = 2
MAX_PAYLOAD = 16


class ExecutorHarness(wiring.Component):
    """`executor`: the class under proof (CommandExecutor, or a variant of it)."""
    request_valid: In(1)
    request: In(request_layout())
    reply_ready: In(1)
    busy: In(1)
    status: In(8 * STATUS_BYTES)
    overrun: In(1)
    staged: In(8)

    def __init__(self, executor=CommandExecutor):
        self._executor = executor
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self._executor(buffers=BUFFERS, registers=REGISTERS,
                                                max_payload=MAX_PAYLOAD, info_length=8)
        m.d.comb += [dut.request.valid.eq(self.request_valid),
                     dut.request.payload.eq(self.request), dut.reply.ready.eq(self.reply_ready),
                     dut.busy.eq(self.busy), dut.status.eq(self.status),
                     dut.overrun.eq(self.overrun), dut.staging.data.eq(self.staged)]

        # The requests' stream rule.
        was_waiting = Signal()
        last_request = Signal.like(self.request)
        m.d.sync += [was_waiting.eq(dut.request.valid & ~dut.request.ready),
                     last_request.eq(self.request)]
        with m.If(was_waiting):
            m.d.comb += [Assume(self.request_valid), Assume(self.request == last_request)]

        request = dut.request.payload
        select, value, _count = request_fields(request)

        def acting_for(command):
            """The request offered is a `command` whose frame passed its checks."""
            return (dut.request.valid & (request.status == Status.OK)
                    & (request.command == command))

        # Buffer writes: a WRITE's, never two cycles running.
        wrote = Signal()
        m.d.sync += wrote.eq(dut.mem.write)
        with m.If(dut.mem.write):
            m.d.comb += [Assert(acting_for(Command.WRITE)), Assert(~wrote)]

        # Runs: a RUN's.
        with m.If(dut.start):
            m.d.comb += Assert(acting_for(Command.RUN))

        # Registers: a CONFIGURE's, the register it names, to its value. (`last_registers`
        # is reset with the executor, to the same initial values.)
        last_registers = Signal.like(dut.registers)
        m.d.sync += last_registers.eq(dut.registers)
        for k in range(REGISTERS):
            with m.If(dut.registers[k] != last_registers[k]):
                m.d.comb += Assert(acting_for(Command.CONFIGURE) & (select == k)
                                   & (dut.registers[k] == value))
        return m
