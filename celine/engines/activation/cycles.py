"""Cycle model of the activation engine in the shell (rtl/activation/shell_adapter.py).

One run counts the cycles `busy` is high (the adapter's `cycles`, STATUS's figure):
TABLE_LOAD cycles to copy the table when `load_table` is set, then one cycle per word of
x, and STREAM_LATENCY cycles from the first read of x to the write of its result (three
through rtl/common's BufferReader: the buffer's registered read and its prefetch queue;
LOOKUP_LATENCY through the lookup's table read and the block's output register). tests/test_activation.py holds it
against RTL simulation (exact).

A workload of `elements` int8 values is what the host API does: ceil(elements / lanes)
words in runs of at most max_words, the table loaded by the first run only.
"""

from .. import CycleEstimate
from ...spec.fields import READER_LATENCY
from .spec import LOOKUP_LATENCY, TABLE_SIZE, ActivationParams

TABLE_LOAD = TABLE_SIZE      # one table entry a cycle into every lane's copy
STREAM_LATENCY = READER_LATENCY + LOOKUP_LATENCY   # x read -> reader output -> lookup output

__all__ = ["TABLE_LOAD", "STREAM_LATENCY", "run_cycles", "runs", "cycles", "estimate"]


def _check_count(name, value, maximum=None):
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or \
            (maximum is not None and value > maximum):
        rule = f"between 1 and {maximum}" if maximum is not None else "a positive integer"
        raise ValueError(f"{name} must be {rule}, not {value!r}")


def run_cycles(params: ActivationParams, words, *, load_table=True):
    """Cycles of one run of `words` words (1 .. max_words)."""
    _check_count("words", words, params.max_words)
    return (TABLE_LOAD if load_table else 0) + words + STREAM_LATENCY


def runs(params: ActivationParams, elements):
    """[(words, load_table)] of the runs the host makes for `elements` elements."""
    _check_count("elements", elements)
    words = params.words_for(elements)
    sizes = [min(params.max_words, words - start)
             for start in range(0, words, params.max_words)]
    return [(size, index == 0) for index, size in enumerate(sizes)]


def cycles(params: ActivationParams, elements):
    """Engine cycles of the host's runs for `elements` elements (link time not counted)."""
    return sum(run_cycles(params, words, load_table=load)
               for words, load in runs(params, elements))


def estimate(params: ActivationParams, elements=197 * 768) -> CycleEstimate:
    """`elements` lookups (default: the GELU of one DeiT-Tiny MLP, 197 tokens x 768);
    `mac_units` is the lanes (lookups a cycle at best)."""
    return CycleEstimate(cycles(params, elements), elements, params.lanes)
