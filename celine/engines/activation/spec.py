"""The activation engine's declarations: generator parameters, registers, error flags and
shell buffers (docs/activation.md). Dependency-free.

The engine maps every int8 element x of its input through a 256-entry table of int8
values: y = table[x + 128] (docs/activation.md, "The arithmetic").
"""

from dataclasses import dataclass
from enum import IntFlag

from ...spec.checks import check_int
from ...spec.fields import BufferSpec, Register, RegisterMap
from ...spec.params import Params

__all__ = ["ActivationParams", "ELEMENT_BITS", "TABLE_SIZE", "TABLE_OFFSET", "MAX_LANES",
           "MAX_WORDS", "LOOKUP_LATENCY", "registers", "Errors", "buffers"]

ELEMENT_BITS = 8                  # int8 in, int8 out
TABLE_SIZE = 1 << ELEMENT_BITS    # one entry per input value
# Cycles from a beat taken by the lookup to its result offered: the table's block RAM
# reads through its own output register (rtl/activation/lookup.py).
LOOKUP_LATENCY = 2
TABLE_OFFSET = TABLE_SIZE // 2    # entry of x: x + 128
MAX_LANES = 64
MAX_WORDS = 16384


@dataclass(frozen=True, kw_only=True)
class ActivationParams(Params):
    """An element-wise table lookup, `lanes` elements a cycle.

    lanes: int8 elements per stream beat and per buffer word (1 .. 64); the table is held
      once per lane, so that every lane looks up in the same cycle.
    max_words: the depth of the `x` and `y` buffers, in words of `lanes` elements: the
      most a run processes (1 .. 16384).
    """

    lanes: int = 8
    max_words: int = 1024

    def __post_init__(self):
        check_int("lanes", self.lanes, minimum=1, maximum=MAX_LANES)
        check_int("max_words", self.max_words, minimum=1, maximum=MAX_WORDS)

    def derived(self):
        """The word width and the largest run, JSON-ready."""
        return {"word_bits": self.word_bits, "table_entries": TABLE_SIZE,
                "max_elements": self.max_elements}

    @property
    def word_bits(self):
        """Bits of one stream beat's data and of one `x`/`y` word."""
        return self.lanes * ELEMENT_BITS

    @property
    def max_elements(self):
        """Elements of the largest run."""
        return self.lanes * self.max_words

    def words_for(self, elements):
        """Words that hold `elements` elements (the last one padded)."""
        return -(-elements // self.lanes)


# -- the engine in the shell ------------------------------------------------------------

def registers(params):
    """The registers, sampled by RUN."""
    return RegisterMap([
        Register("words", f"words of x to process, 1 .. max_words ({params.max_words})",
                 width=16),
        Register("load_table", "1: load the table from the `table` buffer first; "
                 "0: keep the table of the last load", width=1, reset=1),
    ])


class Errors(IntFlag):
    """STATUS engine error flags of a run."""
    WORDS = 0x01          # `words` outside 1 .. max_words: nothing ran


def buffers(params):
    """table (256 entries of 8 bits, entry x + 128 for input x), x (written by the host)
    and y (written by the engine): `lanes` int8 elements a word, lane 0 lowest."""
    p = params
    return [
        # The table is read through the block's output register too (its block's array
        # read into the lookup's blocks' data pins was an activation build's worst path,
        # 8.9 ns): the adapter writes entry k two cycles after reading it.
        BufferSpec("table", ELEMENT_BITS, TABLE_SIZE, True, read_latency=2),
        # x is read through a BufferReader, registered in the block RAM
        # (BufferSpec.read_latency); the table by the lookup (LOOKUP_LATENCY).
        BufferSpec("x", p.word_bits, p.max_words, True, read_latency=2),
        BufferSpec("y", p.word_bits, p.max_words, False),
    ]
