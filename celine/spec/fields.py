"""Registers, their bit fields, error flags and host-visible buffers, as plain data.

An engine declares its registers once (a `RegisterMap` of `Register`s, each made of
`Field`s) and its buffers once (`BufferSpec`s); the RTL slices fields with the same
`lsb`/`width`, the golden model and the host encode and decode register values with
`pack`/`unpack`, and the INFO description and docs/protocol.md list them from here.
"""

from dataclasses import dataclass, field

from .checks import check_choice, check_int

__all__ = ["REGISTER_BITS", "READER_LATENCY", "Field", "Register", "RegisterMap",
           "BufferSpec"]

REGISTER_BITS = 32        # a CONFIGURE value
# Cycles from a read request taken by an engine's buffer reader (rtl/common/buffer_reader.py)
# to its word on the reader's output: the block RAM's read, its output register, the queue.
READER_LATENCY = 4


@dataclass(frozen=True)
class Field:
    """Bits lsb .. lsb + width - 1 of a register, an unsigned integer."""
    name: str
    lsb: int
    width: int
    doc: str = ""

    @property
    def maximum(self):
        return (1 << self.width) - 1

    def extract(self, word):
        return (word >> self.lsb) & self.maximum


@dataclass(frozen=True)
class Register:
    """A 32-bit register. Without `fields` it is one field of `width` bits from bit 0.
    `reset`: its value after reset (the whole word)."""
    name: str
    doc: str = ""
    width: int = REGISTER_BITS
    fields: tuple = ()
    reset: int = 0

    def __post_init__(self):
        if not self.fields:
            object.__setattr__(self, "fields", (Field(self.name, 0, self.width, self.doc),))
        end = max(f.lsb + f.width for f in self.fields)
        if end > REGISTER_BITS:
            raise ValueError(f"fields of register {self.name!r} must fit in "
                             f"{REGISTER_BITS} bits, not {end}")

    @property
    def single(self):
        """Whether the register is one field of its own name."""
        return len(self.fields) == 1 and self.fields[0].name == self.name

    def field(self, name):
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def pack(self, **values):
        """The 32-bit word of the given field values (missing fields are 0); ValueError
        names a value that does not fit its field."""
        word = 0
        for name, value in values.items():
            f = self.field(name)
            if not isinstance(value, int) or isinstance(value, bool) or \
                    not 0 <= value <= f.maximum:
                raise ValueError(f"{self.name}.{name} must be an integer between 0 and "
                                 f"{f.maximum}, not {value!r}" if not self.single else
                                 f"{name} must be an integer between 0 and {f.maximum}, "
                                 f"not {value!r}")
            word |= value << f.lsb
        return word

    def unpack(self, word):
        """{field name: value} of a register word."""
        return {f.name: f.extract(word) for f in self.fields}


class RegisterMap:
    """An engine's registers in id order (id = position)."""

    def __init__(self, registers):
        self.registers = tuple(registers)
        names = [r.name for r in self.registers]
        if len(set(names)) != len(names):
            raise ValueError(f"register names must be distinct, not {names!r}")
        self._index = {name: index for index, name in enumerate(names)}

    def __len__(self):
        return len(self.registers)

    def __iter__(self):
        return iter(self.registers)

    def __contains__(self, name):
        return name in self._index

    def __getitem__(self, name):
        return self.registers[self._index[name]]

    def index(self, name):
        return self._index[name]

    @property
    def names(self):
        return tuple(self._index)

    def reset_values(self):
        """{name: reset value}."""
        return {r.name: r.reset for r in self.registers}

    def ids(self):
        """{name: id}: the INFO description's "registers"."""
        return dict(self._index)


@dataclass(frozen=True)
class BufferSpec:
    """A host-visible buffer: `depth` words of `width` bits.

    The host addresses bytes: word i occupies bytes i * word_stride .. + word_bytes - 1
    (word_stride is the power of two >= word_bytes, so an offset splits into word and byte
    with no division). `writable`: the host writes it and the engine reads it; otherwise
    the engine writes it and the host only reads it.

    `read_ports` (keyword, 1 or 2): how many read ports the engine gets into a host-writable
    buffer (celine.rtl.shell.contract). The second costs no block RAM: the shell maps the
    buffer onto the true-dual-port RAM's second port. It is internal to the FPGA, so INFO
    (`describe`) does not show it.

    `engine_writes` (keyword): the engine also writes this host-writable buffer, through
    its first port at that port's address (the contract adds `wdata` and `write`), for an
    engine that rebuilds some words in place before it reads them. Only with two read
    ports: the host's writes and the engine's first port already share one RAM port then,
    so the engine's write costs no block RAM either. Not in INFO: the host sees the same
    buffer, whose words a run may change.

    `watched` (keyword): the engine is told when the host writes this host-writable buffer
    (the contract adds `host_wrote`, a pulse per word written), for an engine that checks
    what the buffer holds once and keeps the verdict until the host changes it.

    `read_latency` (keyword, 1, 2 or 3): cycles from an address on one of the engine's
    read ports of a host-writable buffer to its word. With 2 the word comes out of the
    block RAM's own output register (rtl/shell/block_ram.py), which leaves it 0.96 ns
    after the clock where the block's array takes 5.83 ns: for an engine whose reader
    registers the word as it arrives anyway (rtl/common's BufferReader). With 3 the
    address is registered too, in a copy beside every few blocks: for a
    buffer of dozens of blocks spread over the die; with two read ports the write on the
    first port is registered with its address, so it lands a cycle later. Not in INFO.
    """
    name: str
    width: int
    depth: int
    writable: bool
    read_ports: int = field(default=1, kw_only=True)
    engine_writes: bool = field(default=False, kw_only=True)
    watched: bool = field(default=False, kw_only=True)
    read_latency: int = field(default=1, kw_only=True)

    def __post_init__(self):
        check_int("read_ports", self.read_ports)
        check_choice("read_ports", self.read_ports, (1, 2))
        if not self.writable and self.read_ports != 1:
            raise ValueError(f"read_ports must be 1 for a buffer the engine writes, "
                             f"not {self.read_ports!r}")
        if not isinstance(self.engine_writes, bool):
            raise TypeError(f"engine_writes must be True or False, not {self.engine_writes!r}")
        if self.engine_writes and not self.writable:
            raise ValueError("engine_writes must be False for a buffer the host does not "
                             "write, not True")
        if not isinstance(self.watched, bool):
            raise TypeError(f"watched must be True or False, not {self.watched!r}")
        if self.watched and not self.writable:
            raise ValueError("watched must be False for a buffer the host does not write, "
                             "not True")
        if self.engine_writes and self.read_ports != 2:
            raise ValueError(f"engine_writes must be False for a buffer with "
                             f"{self.read_ports} read port, not True")
        check_int("read_latency", self.read_latency)
        check_choice("read_latency", self.read_latency, (1, 2, 3))
        if not self.writable and self.read_latency != 1:
            raise ValueError(f"read_latency must be 1 for a buffer the engine writes (it "
                             f"does not read it), not {self.read_latency!r}")

    @property
    def word_bytes(self):
        return (self.width + 7) // 8

    @property
    def word_stride(self):
        return 1 << (self.word_bytes - 1).bit_length()

    @property
    def size(self):
        """Bytes of host address space: depth * word_stride."""
        return self.depth * self.word_stride

    def describe(self):
        """This buffer in the INFO description."""
        return {"name": self.name, "word_bytes": self.word_bytes,
                "word_stride": self.word_stride, "depth": self.depth,
                "writable": self.writable}
