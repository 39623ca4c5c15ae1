"""What a harness may name inside the design under proof: its registers, its state
machine's state, its submodules (a memory, to read every word of it).

k-induction proves an invariant only when the asserts describe every register that
matters: a state the design cannot reach, but that agrees with the asserts, may lead to a
failure after any number of quiet cycles, and then no induction length closes the proof
(docs/formal.md). Where the ports alone do not pin the state down, the harness asserts an
invariant on the design's insides too; `Insides` gives it them without touching the design:

    dut = Insides(FrameDecoder(...), platform)
    queue = dut.open("fifo")                  # a submodule, elaborated in place
    storage = queue.submodule("storage")      # a submodule as it was added (a Memory)
    index = dut.signal("index")               # a signal the module's statements use
    emit = dut.state("EMIT")                  # the state machine is in state EMIT
    m.submodules.dut = dut                    # the design itself, elaborated once

The design is elaborated by the harness, once: `open` and `submodule` come first (a memory
takes a new port only before it is elaborated), `signal` and `state` after them. This reads
Amaranth 0.5's Module (its named submodules) and statements (the signals they use), which
requirements.txt pins.
"""

from amaranth.hdl import Elaboratable, Fragment

__all__ = ["Insides"]


class Insides(Elaboratable):
    """`component` (any Elaboratable whose `elaborate` returns a Module), elaborated by
    the harness so that its insides can be named; add it as the harness's submodule."""

    def __init__(self, component, platform):
        self.component = component
        self._platform = platform
        component._MustUse__used = True       # elaborated here (as Fragment.get marks it)
        self._module = component.elaborate(platform)
        self._fragment = None
        self._signals = None

    def submodule(self, name):
        """The object added as submodule `name` (not elaborated yet: a memory still takes
        ports)."""
        if self._fragment is not None:
            raise RuntimeError(f"{self.component!r} is elaborated already")
        return self._module._named_submodules[name][0]

    def open(self, name):
        """Submodule `name` as an Insides of its own, elaborated with this one."""
        inner = Insides(self.submodule(name), self._platform)
        src_loc = self._module._named_submodules[name][1]
        self._module._named_submodules[name] = (inner, src_loc)
        return inner

    def elaborate(self, platform):
        if self._fragment is None:
            self._fragment = Fragment.get(self._module, self._platform)
        return self._fragment

    def signal(self, name):
        """The one signal called `name` that this module's own statements use."""
        if self._signals is None:
            fragment = self.elaborate(self._platform)
            self._signals = {}
            for statements in fragment.statements.values():
                for signal in statements._lhs_signals() | statements._rhs_signals():
                    self._signals.setdefault(signal.name, {})[id(signal)] = signal
        found = list(self._signals.get(name, {}).values())
        if len(found) != 1:
            raise LookupError(f"{len(found)} signals named {name!r} in {self.component!r}")
        return found[0]

    def state(self, name, fsm="fsm"):
        """1 while the state machine `fsm` (m.FSM(name=...)) is in state `name`."""
        signal = self.signal(f"{fsm}_state")
        for code in range(1 << len(signal)):
            try:
                decoded = signal.decoder(code)          # "NAME/code"
            except KeyError:                            # a code no state has
                continue
            if decoded.split("/")[0] == name:
                return signal == code
        raise LookupError(f"no state {name!r} in {self.component!r}")
