"""Analytical cycle model of the Taylor-attention pipeline (rtl/taylor/pipeline.py).

It follows the pipeline's phases for one run with the input always valid and the output
always ready (the bench's conditions): for each kept head, N tokens of K/V at
blocks = d²/M cycles each, the centering pass over d²/c block rows, N query rows at
d²/M cycles each, and the fixed latencies between phases. `cycles` counts from the
cycle `start` is high to the cycle the last output beat is taken, inclusive.
tests/test_taylor.py holds it against RTL simulation (within 2 %, in practice exact).
"""

from .. import CycleEstimate
from .spec import CONTEXT_READ_LATENCY, TaylorParams

# Latencies of the RTL's phase changes (cycles), named after what they wait for; each
# begins with the context memory's read (CONTEXT_READ_LATENCY).
KV_DRAIN = CONTEXT_READ_LATENCY + 4   # last K/V issue -> first centering issue (the
                                      # tile's operands, products, write-back register,
                                      # write)
CENTER_WRITE_BACK = CONTEXT_READ_LATENCY + 2  # last centering issue -> first Q issue,
                                      # beyond the centering unit's latency
                                      # (TaylorParams.centering_latency): the write-back
TILE_TO_LANE = CONTEXT_READ_LATENCY + 4  # last Q issue -> its sums enter the serializer
                                      # (memory, operands, products, the tree's pairs
                                      # and sum)
LANE_TO_BEAT = 2      # output lane done -> beat leaves the output FIFO
HEAD_TURN = 2         # output lane empty -> the next head's first K/V issue
START_DELAY = 1       # `start` -> the units restart (the pipeline's registered `begin`)
LOAD_DELAY = 1        # a token's last beat taken -> its slot full (the row loader's
                      # write stage)


def kept_heads(params: TaylorParams, head_mask: int):
    return [h for h in range(params.heads) if not head_mask >> h & 1]


def cycles(params: TaylorParams, tokens: int, head_mask: int = 0) -> int:
    """Cycles of one run (see the module docstring); 0 if every head is skipped."""
    p = params
    if not 1 <= tokens <= p.max_tokens:
        raise ValueError(f"tokens must be between 1 and {p.max_tokens}, not {tokens!r}")
    kept = kept_heads(p, head_mask)
    if not kept:
        return 0
    per_row = p.blocks                        # d²/M cycles per token and per query row
    recip_done = START_DELAY + p.recip_shift + 2
    # K and V rows of token 0, one beat per cycle from the cycle after the restart.
    first_token_loaded = START_DELAY + 2 * p.row_beats + 1 + LOAD_DELAY
    kv_start = max(START_DELAY + 2 + kept[0], first_token_loaded)
    last_beat = 0
    for index, head in enumerate(kept):
        center_start = kv_start + tokens * per_row + KV_DRAIN
        q_start = max(center_start + p.blocks * p.tile_rows + p.centering_latency
                      + CENTER_WRITE_BACK, recip_done)
        last_in_lane = q_start + tokens * per_row + TILE_TO_LANE + p.tile_cols - 1
        lane_empty = last_in_lane + p.output_latency + 1
        last_beat = lane_empty + LANE_TO_BEAT - 1
        if index + 1 < len(kept):
            skipped = kept[index + 1] - head - 1
            kv_start = lane_empty + HEAD_TURN + skipped
    return last_beat + 1


def estimate(params: TaylorParams, tokens: int, head_mask: int = 0) -> CycleEstimate:
    heads = len(kept_heads(params, head_mask))
    return CycleEstimate(cycles(params, tokens, head_mask),
                         heads * params.useful_macs(tokens), params.mac_units)
