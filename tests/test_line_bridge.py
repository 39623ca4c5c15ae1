"""celine/sim/line_bridge.py in the Amaranth simulator: the windows of bytes Device.open("sim")
moves, around a UART echo (every byte sent comes back)."""

import random

import pytest

from celine.boards.echo import UartEcho
from celine.sim.amaranth_sim import run_sim
from celine.sim.line_bridge import LineBridge

DIVISOR = 4
BYTE_CYCLES = 10 * DIVISOR


def _bridge(window):
    return LineBridge(UartEcho(DIVISOR, 1), divisor=DIVISOR, window=window)


def _run(window, chunks, *, seed, take_every):
    """Load `chunks` (lists of at most `window` bytes) as windows as soon as the bridge
    takes them; take the out window at random times at most `take_every` cycles apart;
    the bytes that came back, and the overflow flag."""
    dut = _bridge(window)
    rng = random.Random(seed)
    got = []

    async def bench(ctx):
        pending = list(chunks)
        total = sum(len(c) for c in chunks)
        wait = rng.randint(1, take_every)
        for _ in range((total + 4) * BYTE_CYCLES * 3):
            load = bool(pending) and not ctx.get(dut.in_busy)
            if load:
                chunk = pending.pop(0)
                ctx.set(dut.in_bytes, int.from_bytes(bytes(chunk), "little"))
                ctx.set(dut.in_count, len(chunk))
            ctx.set(dut.in_load, load)
            count = ctx.get(dut.out_count)
            wait -= 1
            take = count > 0 and wait <= 0
            if take:
                wait = rng.randint(1, take_every)
            if take:
                got.extend(ctx.get(dut.out_bytes).to_bytes(window, "little")[:count])
            ctx.set(dut.out_take, take)
            await ctx.tick()
            if not pending and len(got) == total:
                break
        ctx.set(dut.in_load, 0)
        ctx.set(dut.out_take, 0)
        got.append(ctx.get(dut.out_overflow))

    run_sim(dut, bench)
    return bytes(got[:-1]), got[-1]


@pytest.mark.parametrize("window, sizes, seed", [(4, [4, 1, 3, 4, 2], 1), (16, [16, 16, 5], 2),
                                                  (1, [1] * 7, 3)])
def test_every_byte_goes_out_and_comes_back_in_order(window, sizes, seed):
    rng = random.Random(seed)
    chunks = [[rng.randrange(256) for _ in range(n)] for n in sizes]
    chunks[0][0] = 0x00
    chunks[-1][-1] = 0xFF
    got, overflow = _run(window, chunks, seed=seed, take_every=window * BYTE_CYCLES // 2)
    assert got == bytes(b for chunk in chunks for b in chunk) and not overflow


def test_a_full_out_window_flags_the_lost_byte():
    # Nothing is taken for far longer than a 2-byte window takes to fill.
    got, overflow = _run(2, [[1, 2], [3, 4]], seed=4, take_every=10 ** 9)
    assert overflow and got == b""


@pytest.mark.parametrize("kwargs, message", [
    ({"divisor": 3}, "divisor must be between 4 and 1048576, not 3"),
    ({"divisor": 4, "window": 0}, "window must be between 1 and 4096, not 0"),
])
def test_bad_parameters_are_named(kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$"):
        LineBridge(UartEcho(DIVISOR, 1), **kwargs)
