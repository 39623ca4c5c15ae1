"""The host runtime on a noisy line, a dead, babbling or unplugged device, and long runs
(celine/sim/noise.py, celine/sim/reliability.py; docs/reliability.md). make test runs
samples on the golden model; `celine bench --only reliability` the full counts."""

import random

import pytest
import torch

from celine import registry
from celine.firmware.device import Device
from celine.firmware.errors import CelineError, LinkError, LinkTimeout
from celine.firmware.transport import LoopbackTransport
from celine.sim.calls import same
from celine.sim.noise import NoisyTransport
from celine.sim.reliability import CallRun, model_device, noisy_line, soak

ENGINES = [record.name for record in registry.ENGINES]


# -- the noisy transport -----------------------------------------------------------------

class Sink(LoopbackTransport):
    """A loopback whose other end only records what arrives."""

    def __init__(self):
        self.got = bytearray()

    def write(self, data):
        self.got += data


def test_noise_flips_bits_at_the_rate_asked():
    line = NoisyTransport(Sink(), ber=1e-2, seed=5)
    sent = bytes(random.Random(1).randrange(256) for _ in range(100_000))
    line.write(sent)
    stats = line.stats
    # 1,000,000 line bits at 1e-2: about 10,000 flips (4 sigma: +-400)
    assert abs(stats["flipped_bits"] - 10_000) < 400
    # a flipped start or stop bit loses the byte: 2 of every 10 bits
    assert abs(stats["lost_bytes"] - 0.2 * stats["flipped_bits"]) < 200
    assert len(line.inner.got) == len(sent) - stats["lost_bytes"]
    clean = NoisyTransport(Sink(), ber=0.0, seed=5)
    clean.write(sent)
    assert bytes(clean.inner.got) == sent and clean.stats["flipped_bits"] == 0
    dropping = NoisyTransport(Sink(), ber=0.0, drop=0.5, seed=5)
    dropping.write(sent)
    assert abs(dropping.stats["lost_bytes"] - 50_000) < 700


def test_noise_is_reproducible_from_its_seed():
    outs = []
    for seed in (3, 3, 4):
        line = NoisyTransport(Sink(), ber=1e-2, drop=0.01, seed=seed)
        line.write(bytes(5000))
        outs.append(bytes(line.inner.got))
    assert outs[0] == outs[1] != outs[2]


def test_noise_checks():
    with pytest.raises(TypeError, match=r"^inner must be a celine\.firmware\.transport\."
                                        r"Transport, not 3$"):
        NoisyTransport(3)
    with pytest.raises(ValueError, match=r"^ber must be a probability from 0 up to 1, "
                                         r"not 1\.5$"):
        NoisyTransport(Sink(), ber=1.5)
    with pytest.raises(ValueError, match=r"^drop must be a probability from 0 up to 1, "
                                         r"not -0\.1$"):
        NoisyTransport(Sink(), drop=-0.1)


# -- every engine's random calls, clean and noisy ----------------------------------------

@pytest.mark.parametrize("name", ENGINES)
def test_random_calls_are_bit_exact_and_reproducible(name):
    record = registry.get(name)
    params, options = record.small_point()
    device, model, _ = model_device(name)
    run = CallRun(record, params, options, device, model, seed=11)
    for _ in range(40):
        assert run.step(), run.first_wrong
    assert run.counts["errors_raised"] == run.counts["double_runs"] == 0
    assert run.counts["corrupted_buffers"] == 0
    make = record.random_call.load()
    first = [make(params, options, random.Random(9))[0] for _ in range(1)]
    assert first == [make(params, options, random.Random(9))[0]]


def test_noisy_line_sample():
    """make test's sample: 60 calls an engine at BER 1e-4 (bench: 1,000 an engine).
    Errors may be raised; a wrong result, a double run or a corrupted buffer may not."""
    result = noisy_line(60, ber=1e-4, seed=4)
    assert result["calls"] == 60 * len(ENGINES)
    assert result["wrong_results"] == result["double_runs"] == 0
    assert result["corrupted_buffers"] == 0
    assert result["retries"] > 0                        # the line did damage frames
    assert result["errors_raised"] <= result["calls"] // 10


def test_a_very_noisy_line_raises_errors_but_never_returns_a_wrong_result():
    record = registry.get(ENGINES[0])
    params, options = record.small_point()
    device, model, line = model_device(record.name, ber=3e-3, drop=1e-3, seed=2)
    run = CallRun(record, params, options, device, model, seed=2)
    for _ in range(150):
        run.step()
    assert run.counts["errors_raised"] > 0 and line.stats["flipped_bits"] > 1000
    assert run.counts["wrong_results"] == run.counts["double_runs"] == 0
    assert run.counts["corrupted_buffers"] == 0


def test_soak_sample_keeps_memory_flat():
    """make test's sample: 150 calls an engine (bench: 2,000 an engine and 500 in RTL)."""
    result = soak(150, seed=6)
    assert result["calls"] == 150 * len(ENGINES)
    assert result["mismatches"] == result["errors_raised"] == result["double_runs"] == 0
    assert result["host_rss_growth_mb"] < 50


# -- a device that stops answering, babbles, or goes away ---------------------------------

class FailingTransport(LoopbackTransport):
    """The golden device, until request `after` (counted from open's INFO): then `mode`:
    "dead" (nothing arrives), "garbage" (bytes forever, whatever is sent) or "unplugged"
    (every use raises, as a serial port whose USB cable was pulled)."""

    def __init__(self, model, mode, after):
        super().__init__(model)
        self.mode, self.after, self.writes = mode, after, 0

    @property
    def failed(self):
        return self.writes > self.after

    def write(self, data):
        self.writes += 1
        if self.failed and self.mode == "unplugged":
            raise LinkError("serial port '/dev/ttyUSB0': [Errno 5] Input/output error")
        if not self.failed:
            super().write(data)

    def read(self, n, timeout):
        if not self.failed:
            return super().read(n, timeout)
        if self.mode == "garbage":
            self.pause(min(timeout, 1e-4))
            return bytes([0x5A, 0x00]) * max(1, n // 2)
        if self.mode == "unplugged":
            raise LinkError("serial port '/dev/ttyUSB0': [Errno 5] Input/output error")
        self.pause(timeout)
        return b""

    def heal(self):
        self.after = 1 << 60


@pytest.mark.parametrize("mode,error,message", [
    ("dead", LinkTimeout, r"^no reply within 0\.05 s"),
    ("garbage", LinkError, r"^the line did not go quiet within 0\.05 s"),
    ("unplugged", LinkError, r"^serial port '/dev/ttyUSB0': \[Errno 5\]"),
])
@pytest.mark.parametrize("after", [3, 6])
def test_a_failing_device_ends_every_call_in_time_then_recovers(mode, error, message, after):
    """Mid-call (request 3 or 6 of a call: a WRITE, or STATUS polls of the run), the device
    fails: the call ends with a LinkError naming what happened, within the time its
    attempts may take; once it answers again, the next call is bit-exact."""
    from celine.golden.shell import shell_model
    record = registry.get(ENGINES[0])
    params, options = record.small_point()
    model = shell_model(record.name, params, run_bit_times=500, **options)
    transport = FailingTransport(model, mode, after=1 << 60)
    device = Device(transport, timeout=0.05, retries=2)
    run = CallRun(record, params, options, device, model, seed=1)
    assert run.step()
    transport.after = transport.writes + after
    start = transport.now()
    with pytest.raises(error, match=message):
        next(run.calls)[1](device)
    # each of 1 + retries attempts: a reply timeout and a drain (the timeout again, plus
    # the quiet time); a run's polls add at most run_timeout
    assert transport.now() - start <= 3 * (2 * 0.05 + 0.01) + device.run_timeout
    transport.heal()
    for _ in range(5):
        assert run.step(), run.first_wrong
    assert run.counts["double_runs"] == 0


def test_a_closed_device_says_so():
    device, _, _ = model_device(ENGINES[0])
    device.close()
    with pytest.raises(CelineError, match=r"^the device is closed$"):
        device.status()


def test_same_compares_exactly():
    a = torch.tensor([[1, -128]])
    assert same(a, a.clone()) and same((a, {"x": 3}), [a, {"x": 3}])
    assert not same(a, torch.tensor([[1, -127]])) and not same(a, a.reshape(2, 1))
    assert not same({"x": a}, {"y": a}) and not same(3, 3.0)


def test_reset_brings_back_a_device_whose_run_never_ends():
    """A run that never ends (an engine that hangs): calls end in RunTimeout and Busy; a
    break (Device.reset) resets the device, buffers kept, and calls are bit-exact again."""
    from celine.firmware.errors import Busy, RunTimeout
    record = registry.get(ENGINES[0])
    params, options = record.small_point()
    device, model, line = model_device(record.name)
    run = CallRun(record, params, options, device, model, seed=3)
    assert run.step()
    name = next(b.name for b in device.buffers.values() if b.writable)
    before = device.read_buffer(name, 0, 8)
    model.run_bit_times = 10 ** 12                     # hangs
    device.run_timeout = 0.01
    with pytest.raises(RunTimeout):
        device.run()
    with pytest.raises(Busy):
        device.write_buffer(name, 0, b"\x01")
    model.run_bit_times = 500
    device.reset()
    assert not device.status().busy and model.registers == model.engine.register_map.reset_values()
    assert device.read_buffer(name, 0, 8) == before
    device.run_timeout = 10.0
    for _ in range(5):
        assert run.step(), run.first_wrong


def test_a_socket_simulation_cannot_send_a_break():
    from celine.firmware.transport import Transport

    class Bare(Transport):
        def write(self, data):
            pass

        def read(self, n, timeout):
            return b""

        def reset_input(self):
            pass

    with pytest.raises(CelineError, match=r"^a Bare cannot send a break$"):
        Bare().send_break(0.1)
