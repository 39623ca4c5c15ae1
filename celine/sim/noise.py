"""A noisy line: a Transport that damages the bytes another one carries, both ways.

`NoisyTransport(inner, ber=1e-4, drop=0.0, seed=0)` wraps any firmware Transport (the
golden model's LoopbackTransport, a simulation's). Every byte crosses the line as 10 bits
(8N1: a start bit, 8 data bits, a stop bit), each of which flips with probability `ber`,
independently: a flipped data bit flips that bit of the byte; a flipped start or stop bit
loses the byte (the receiver sees no byte, or a framing error, and drops it; a real UART
may also resynchronise on a later 0 bit and see garbage, which the other faults cover).
Each byte is also lost with probability `drop` (an overflowing buffer, a USB hiccup).
Requests are damaged before they reach the device, replies before the host sees them.
Time, pauses and closing are the inner transport's. `stats` counts what happened.
"""

import math
import random

from ..firmware.transport import Transport

__all__ = ["NoisyTransport", "LINE_BITS"]

LINE_BITS = 10          # an 8N1 byte on the line


class NoisyTransport(Transport):
    def __init__(self, inner, *, ber=1e-4, drop=0.0, seed=0):
        if not isinstance(inner, Transport):
            raise TypeError(f"inner must be a celine.firmware.transport.Transport, "
                            f"not {inner!r}")
        self.inner = inner
        self.rng = random.Random(seed)
        self.latency = inner.latency
        self.stats = {"bytes": 0, "flipped_bits": 0, "lost_bytes": 0, "damaged_bytes": 0}
        self.set_noise(ber=ber, drop=drop)

    def set_noise(self, *, ber, drop=0.0):
        """Change the bit-error rate and the byte-loss rate from now on."""
        for name, value in [("ber", ber), ("drop", drop)]:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not 0 <= value < 1:
                raise ValueError(f"{name} must be a probability from 0 up to 1, not {value!r}")
        self.ber, self.drop = ber, drop
        self._until_flip = self._next_flip()

    def _next_flip(self):
        """Line bits before the next flipped one (geometric: each bit flips with `ber`)."""
        if self.ber == 0:
            return float("inf")
        # the number of failures before the first success, by inversion
        return int(math.log(1.0 - self.rng.random()) / math.log(1.0 - self.ber))

    def damage(self, data):
        """`data` as it arrives at the other end."""
        out = bytearray()
        for byte in bytes(data):
            self.stats["bytes"] += 1
            lost = self.drop and self.rng.random() < self.drop
            flips = 0
            # the flipped bits among this byte's 10 line bits
            while self._until_flip < LINE_BITS:
                bit = self._until_flip            # 0: start, 1..8: data, 9: stop
                flips += 1
                if bit in (0, LINE_BITS - 1):
                    lost = True
                else:
                    byte ^= 1 << (bit - 1)
                self._until_flip = bit + 1 + self._next_flip()
            self._until_flip -= LINE_BITS
            self.stats["flipped_bits"] += flips
            if lost:
                self.stats["lost_bytes"] += 1
                continue
            self.stats["damaged_bytes"] += flips > 0
            out.append(byte)
        return bytes(out)

    def write(self, data):
        self.inner.write(self.damage(data))

    def read(self, n, timeout):
        return self.damage(self.inner.read(n, timeout))

    def reset_input(self):
        self.inner.reset_input()

    def send_break(self, seconds):
        self.inner.send_break(seconds)

    def now(self):
        return self.inner.now()

    def pause(self, seconds):
        self.inner.pause(seconds)

    def close(self):
        self.inner.close()

    @property
    def baud(self):
        return getattr(self.inner, "baud", None)
