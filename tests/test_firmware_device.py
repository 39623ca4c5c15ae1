"""firmware/device.py over LoopbackTransport to golden/shell.py: tensors, settings, retries."""

import pytest
import torch

from celine.firmware.device import Device
from celine.firmware.errors import (BadAddress, Busy, CelineError, LinkError, LinkTimeout,
                                    ReplyCRCError, RunTimeout, SettingError)
from celine.firmware.protocol import Command, Status, encode_reply, encode_request
from celine.firmware.transport import LoopbackTransport, SerialTransport
from celine.golden.mac import MacArrayModel, Requant, reference_matmul
from celine.golden.quant import requantize
from celine.golden.shell import shell_model
from celine.engines.mac.spec import MacArrayParams

PARAMS = MacArrayParams(rows=2, cols=2)


def open_device(params=PARAMS, **settings):
    settings = {"operand_depth": 64, "result_depth": 64, "max_payload": 64,
                **settings}
    model = shell_model("mac", params, **settings)
    return Device.open("sim", transport=LoopbackTransport(model)), model


def operands(shape, precision, seed):
    bits = 16 if precision == 16 else 8
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(-(1 << (bits - 1)), 1 << (bits - 1), shape, generator=gen)


def test_open_reads_info():
    dev, model = open_device()
    assert dev.info == model.info()
    assert dev.engine.params == PARAMS
    assert dev.buffers["result"].word_stride == 64 and not dev.buffers["result"].writable
    assert dev.transport.commands == [Command.INFO]


@pytest.mark.parametrize("precision", [2, 4, 8, 16])
def test_matmul_is_bit_exact(precision):
    dev, _ = open_device()
    a, w = operands((9, 20), precision, 1), operands((20, 11), precision, 2)
    assert torch.equal(dev.matmul(a, w, precision=precision), reference_matmul(a, w, precision))


def test_matmul_extreme_operands():
    dev, _ = open_device()
    a = torch.tensor([[-128, 127, -128], [127, -128, -1]])
    for precision in (2, 4, 8):
        assert torch.equal(dev.matmul(a, a.T.contiguous(), precision=precision),
                           reference_matmul(a, a.T, precision))


def test_matmul_requantized():
    dev, _ = open_device()
    a, w = operands((5, 30), 8, 3), operands((30, 6), 8, 4)
    y = dev.matmul(a, w, precision=8, requant=(77, 12))
    assert torch.equal(y, requantize(reference_matmul(a, w, 8), 77, 12))
    assert torch.equal(dev.matmul(a, w, precision=8, requant=Requant(True, 1, 0)),
                       requantize(reference_matmul(a, w, 8), 1, 0))
    assert torch.equal(dev.matmul(a, w, precision=8), reference_matmul(a, w, 8))   # off again


def test_large_matmul_takes_several_runs():
    # K = 30 beats: 2 of the 8 act blocks fit the 64-word act buffer, 2 of the 8 weight
    # blocks the weight buffer; so W goes in 4 parts, each against A in 4 runs of the
    # 2 x 2 grid: 16 runs of 4 tiles.
    dev, _ = open_device()
    a, w = operands((16, 30), 8, 5), operands((30, 16), 8, 6)
    assert torch.equal(dev.matmul(a, w, precision=8), reference_matmul(a, w, 8))
    assert dev.transport.commands.count(Command.RUN) == 16
    assert dev.mac.last_runs == [4] * 16                       # the tiles of each run
    # the result buffer limits too: 8 rows a tile at precision 2, 16 result words -> 2 tiles
    dev, _ = open_device(result_depth=16)
    a, w = operands((17, 4), 2, 7), operands((4, 9), 2, 8)
    assert torch.equal(dev.matmul(a, w, precision=2), reference_matmul(a, w, 2))
    assert dev.transport.commands.count(Command.RUN) == 3      # 3 x 2 tiles, 2 a run
    assert dev.mac.last_runs == [2, 2, 2]


def test_mac_run_cycles_add_up_to_the_matmul():
    from celine.engines.mac.cycles import cycles, pipeline_latency, run_cycles, tiles
    assert run_cycles(PARAMS, 1, 1, 8) == 1 + pipeline_latency(PARAMS) + PARAMS.tile_rows(8) - 1
    assert cycles(PARAMS, 16, 30, 16, 8) == run_cycles(PARAMS, tiles(PARAMS, 16, 16, 8), 30, 8)
    with pytest.raises(ValueError, match=r"^tile_count must be a positive integer, not 0$"):
        run_cycles(PARAMS, 0, 30)


def test_frames_stay_within_max_payload():
    dev, model = open_device(max_payload=16)
    a, w = operands((3, 7), 4, 9), operands((7, 5), 4, 10)
    assert torch.equal(dev.matmul(a, w, precision=4), reference_matmul(a, w, 4))
    data = bytes(range(200))
    dev.write_buffer("weight", 3, data)
    assert dev.read_buffer("weight", 3, 200) == bytes(b if (3 + i) % 16 < 16 else 0
                                                     for i, b in enumerate(data))


def test_rps_replays_the_device_lfsr_across_calls():
    params = MacArrayParams(rows=2, cols=2, rps_precisions=(2, 4, 8, 16), lfsr_seed=0x1234)
    dev, model = open_device(params)
    replay = MacArrayModel(params)
    for seed in (11, 12):
        a, w = operands((10, 6), 8, seed), operands((6, 13), 8, seed + 50)
        y = dev.matmul(a, w, rps=True)
        used = dev.engine.last_precisions
        assert set(used.unique().tolist()) > {8}            # several precisions were drawn
        for precision in params.rps_candidates:
            mask = used == precision
            assert torch.equal(y[mask], reference_matmul(a, w, precision)[mask])
    # the host's replay and the device's LFSR are still in step
    assert dev.engine.model.lfsr.state == model.engine.array.lfsr.state
    assert dev.engine.model.lfsr.state != replay.lfsr.state


def test_run_polls_until_done():
    dev, model = open_device(run_bit_times=1000)
    dev.configure(depth=1, tiles=1, precision=8)
    report = dev.run()
    assert not report.busy and report.result_words == 2
    assert dev.transport.commands.count(Command.STATUS) > 3
    model.run_bit_times = 10 ** 9
    with pytest.raises(RunTimeout, match=r"^run still busy after 0.5 s$"):
        dev.run(timeout=0.5)
    dev.run_timeout = 0.25         # BUSY: the request waits for the run (at most this)
    polls = dev.transport.commands.count(Command.STATUS)
    with pytest.raises(Busy, match=r"^device replied BUSY to CONFIGURE \(seq \d+\)$") as error:
        dev.configure(depth=2)
    assert error.value.command == Command.CONFIGURE
    assert dev.transport.commands.count(Command.STATUS) > polls + 3
    model.run_bit_times = 0
    model.idle(10 ** 9)            # the run ends: the same request goes through
    model.run_bit_times = 200_000
    dev.run_timeout = 10.0
    dev.configure(depth=1)
    dev.transport.write(encode_request(Command.RUN, 200))
    dev.transport.read(7, 0.1)      # a RUN the host does not wait for
    dev.configure(depth=2)          # BUSY, polled until the run ended, then done
    assert model.registers["depth"] == 2


def test_device_errors_are_raised_not_retried():
    dev, _ = open_device()
    with pytest.raises(BadAddress) as error:
        dev._request(Command.READ, bytes([7, 0, 0, 0, 0, 1, 0]))
    assert error.value.status == 4 and dev.transport.commands.count(Command.READ) == 1


# -- settings checked before anything is sent -------------------------------------------

@pytest.mark.parametrize("call,message", [
    (lambda d: d.matmul([[1]], [[1]], precision=3),
     r"^precision must be one of 2, 4, 8, 16, not 3$"),
    (lambda d: d.matmul([[1]], [[1]], precision=True),
     r"^precision must be one of 2, 4, 8, 16, not True$"),
    (lambda d: d.matmul([[128]], [[1]], precision=8),
     r"^a must hold int8 values \(-128\.\.127\), not values 128\.\.128$"),
    (lambda d: d.matmul([[1]], [[-40000]], precision=16),
     r"^w must hold int16 values \(-32768\.\.32767\), not values -40000\.\.-40000$"),
    (lambda d: d.matmul([[300]], [[1]], rps=True),
     r"^a must hold int8 values \(-128\.\.127\), not values 300\.\.300$"),
    (lambda d: d.matmul([[1.5]], [[1]]),
     r"^a must be a 2-D integer tensor, not torch\.float32 of shape \(1, 1\)$"),
    (lambda d: d.matmul([[1, 2]], [[1]]),
     r"^w must have 2 rows \(the columns of a\), not 1$"),
    (lambda d: d.matmul(torch.ones(1, 65, dtype=torch.int64), torch.ones(65, 1, dtype=torch.int64)),
     r"^K must be at most 64 \(the buffer depth\), not 65$"),
    (lambda d: d.matmul([[1]], [[1]], requant=(1 << 16, 0)),
     r"^requant multiplier must be between 0 and 65535, not 65536$"),
    (lambda d: d.matmul([[1]], [[1]], requant=(1, 64)),
     r"^requant shift must be between 0 and 63, not 64$"),
    (lambda d: d.configure(depth=1, colour=2),
     r"^register must be one of 'depth', 'tiles', 'precision', 'rps_enable', 'requant', "
     r"'grid_cols', 'weight_base', not 'colour'$"),
    (lambda d: d.configure(depth=-1),
     r"^depth must be an integer between 0 and 4294967295, not -1$"),
    (lambda d: d.write_buffer("result", 0, b"x"),
     r"^buffer must be one of 'act', 'weight', not 'result'$"),
    (lambda d: d.read_buffer("acts", 0, 1),
     r"^buffer must be one of 'act', 'weight', 'result', not 'acts'$"),
    (lambda d: d.write_buffer("act", 1020, b"12345"),
     r"^offset \+ size must be at most 1024 \(buffer 'act'\), not 1025$"),
    (lambda d: d.read_buffer("act", -1, 1),
     r"^offset must be a non-negative integer, not -1$"),
    # defects of issue 8 section 4: raw Python errors, or nothing, before the fix
    (lambda d: d.matmul([[1]], [[1]], requant=(1,)),
     r"^requant must be None, a golden\.mac\.Requant or a \(multiplier, shift\) pair of "
     r"integers, not \(1,\)$"),
    (lambda d: d.matmul([[1]], [[1]], requant=(1, 2, 3)),
     r"^requant must be None, a golden\.mac\.Requant or a \(multiplier, shift\) pair of "
     r"integers, not \(1, 2, 3\)$"),
    (lambda d: d.matmul([[1]], [[1]], requant=5),
     r"^requant must be None, a golden\.mac\.Requant or a \(multiplier, shift\) pair of "
     r"integers, not 5$"),
    (lambda d: d.matmul([[1]], [[1]], requant=(1.5, 2)),
     r"^requant multiplier must be an integer, not 1\.5$"),
    (lambda d: d.matmul([[1]], [[1]], requant=(1, "2")),
     r"^requant shift must be an integer, not '2'$"),
    (lambda d: d.matmul([[1]], [[1]], requant=Requant(1, 3, 2)),
     r"^requant enable must be True or False, not 1$"),
    (lambda d: d.matmul([[1]], [[1]], rps="no"),
     r"^rps must be True or False, not 'no'$"),
    (lambda d: d.matmul([[1]], [[1]], rps=1),
     r"^rps must be True or False, not 1$"),
    (lambda d: d.matmul([[1, 2], [3]], [[1], [1]]),
     r"^a must be a 2-D integer tensor, not a ragged list \[\[1, 2\], \[3\]\]$"),
    (lambda d: d.matmul("12", [[1], [1]]),
     r"^a must be a 2-D integer tensor, not '12'$"),
    (lambda d: d.matmul([[1]], [["1"]]),
     r"^w must be a 2-D integer tensor, not \[\['1'\]\]$"),
    (lambda d: d.matmul([[1]], [[1 << 70]]),
     r"^w must be a 2-D integer tensor, not \[\[1180591620717411303424\]\]$"),
    (lambda d: d.matmul(torch.zeros(2, 0, dtype=torch.int64), torch.zeros(0, 3, dtype=torch.int64)),
     r"^K must be at least 1 \(the columns of a, the rows of w\), not 0$"),
    (lambda d: d.matmul([[]], [[]]),
     r"^K must be at least 1 \(the columns of a, the rows of w\), not 0$"),
    (lambda d: d.write_buffer("act", 0, "abc"),
     r"^data must be bytes or integers between 0 and 255, not 'abc'$"),
    (lambda d: d.write_buffer("act", 0, [1, 300]),
     r"^data must be bytes or integers between 0 and 255, not \[1, 300\]$"),
    (lambda d: d.write_buffer("act", 0, 5),
     r"^data must be bytes or integers between 0 and 255, not 5$"),
    (lambda d: d.read_buffer("act", 0, 2.5),
     r"^count must be a non-negative integer, not 2\.5$"),
    (lambda d: d.read_buffer("act", 0, -1),
     r"^count must be a non-negative integer, not -1$"),
    (lambda d: d.read_buffer("act", True, 1),
     r"^offset must be a non-negative integer, not True$"),
    (lambda d: d.run(timeout="1"),
     r"^timeout must be a positive number of seconds, not '1'$"),
])
def test_settings_are_checked_before_sending(call, message):
    dev, model = open_device()
    with pytest.raises(SettingError, match=message):
        call(dev)
    assert dev.transport.commands == [Command.INFO]
    assert model.engine.array.lfsr.state == dev.engine.model.lfsr.state


@pytest.mark.parametrize("settings,message", [
    ({"retries": -1}, r"^retries must be a non-negative integer, not -1$"),
    ({"retries": 1.0}, r"^retries must be a non-negative integer, not 1\.0$"),
    ({"timeout": "1"}, r"^timeout must be a positive number of seconds, not '1'$"),
    ({"timeout": 0}, r"^timeout must be a positive number of seconds, not 0$"),
    ({"timeout": float("inf")}, r"^timeout must be a positive number of seconds, not inf$"),
    ({"timeout": float("nan")}, r"^timeout must be a positive number of seconds, not nan$"),
    ({"poll_bits": 0}, r"^poll_bits must be a positive number, not 0$"),
    ({"run_timeout": -1}, r"^run_timeout must be a positive number of seconds, not -1$"),
])
def test_device_settings_are_checked_before_sending(settings, message):
    model = shell_model("mac", PARAMS)
    transport = LoopbackTransport(model)
    with pytest.raises(SettingError, match=message):
        Device(transport, **settings)
    with pytest.raises(SettingError, match=message):
        Device.open("model", **settings)
    assert transport.commands == []


def test_unknown_transport_is_a_setting_error():
    class Link:                                    # has no Transport methods at all
        pass
    with pytest.raises(SettingError, match=r"^transport must be a celine\.firmware\.transport"
                                           r"\.Transport, not <.*Link object at .*>$"):
        Device(Link())
    with pytest.raises(SettingError, match=r"^transport must be a celine\.firmware\.transport"
                                           r"\.Transport, not 'loop'$"):
        Device.open("sim", transport="loop")


@pytest.mark.parametrize("target", [None, 3, ""])
def test_unknown_target_is_a_setting_error(target):
    with pytest.raises(SettingError, match=r"^target must be 'model', 'sim' or a serial port "
                                           r"\(e\.g\. '/dev/ttyUSB0'\), not "):
        Device.open(target)
    with pytest.raises(SettingError, match=r"^target must be 'model' or 'sim' for accel, params "
                                           r"and shell options, not 'models'$"):
        Device.open("models", accel="mac", operand_depth=16)


def test_closed_device_raises():
    dev, model = open_device()
    dev.close()
    dev.close()                                    # closing twice is harmless
    for call in (lambda: dev.status(), lambda: dev.read_buffer("act", 0, 1),
                 lambda: dev.write_buffer("act", 0, b"x"), lambda: dev.configure(depth=1),
                 lambda: dev.run(), lambda: dev.matmul([[1]], [[1]])):
        with pytest.raises(CelineError, match=r"^the device is closed$"):
            call()
    assert dev.transport.commands == [Command.INFO]
    with Device.open("model", accel="mac") as dev:
        assert not dev.status().busy
    with pytest.raises(CelineError, match=r"^the device is closed$"):
        dev.status()


def test_closed_serial_port_raises_a_celine_error():
    port = SerialTransport("loop://", 115_200)
    port.write(b"ab")
    assert port.read(2, 0.5) == b"ab"
    port.send_break(0.001)
    port.close()
    for call in (lambda: port.write(b"x"), lambda: port.read(1, 0.01), port.reset_input,
                 lambda: port.send_break(0.001)):
        with pytest.raises(CelineError, match=r"^serial port 'loop://' is closed$"):
            call()
    port.close()


def test_matmul_defaults_to_full_precision():
    dev, _ = open_device()
    assert dev.matmul([[100, -50]], [[20], [30]]).tolist() == [[500]]
    assert dev.engine.last_precisions.tolist() == [[16]]
    assert dev.matmul([[1000, -32768]], [[20], [1]]).tolist() == [[20000 - 32768]]
    # without 16 the widest is 8: int8 operands, exact sums
    dev, _ = open_device(MacArrayParams(rows=2, cols=2, precisions=(4, 8)))
    assert dev.matmul([[100, -50]], [[20], [30]]).tolist() == [[500]]
    with pytest.raises(SettingError, match=r"^a must hold int8 values \(-128\.\.127\), "
                                           r"not values 1000\.\.1000$"):
        dev.matmul([[1000]], [[1]])
    # the int8 range still holds at explicit precisions below 16
    dev, _ = open_device()
    with pytest.raises(SettingError, match=r"^a must hold int8 values"):
        dev.matmul([[1000]], [[1]], precision=8)


def test_matmul_takes_numpy_and_nested_lists():
    np = pytest.importorskip("numpy")
    dev, _ = open_device()
    a, w = operands((3, 5), 8, 21), operands((5, 4), 8, 22)
    want = reference_matmul(a, w, 8)
    assert torch.equal(dev.matmul(a.numpy().astype(np.int8), w.tolist(), precision=8), want)
    assert torch.equal(dev.matmul(tuple(map(tuple, a.tolist())), w.numpy(), precision=8), want)
    with pytest.raises(SettingError, match=r"^a must be a 2-D integer tensor, not float64 of "
                                           r"shape \(1, 1\)$"):
        dev.matmul(np.ones((1, 1)), [[1]])


def test_write_buffer_takes_bytes_likes_and_int_sequences():
    dev, _ = open_device()
    dev.write_buffer("act", 0, bytearray(b"\x01\x02"))
    dev.write_buffer("act", 2, memoryview(b"\x03"))
    dev.write_buffer("act", 3, [4, 255])
    assert dev.read_buffer("act", 0, 5) == b"\x01\x02\x03\x04\xff"
    assert dev.read_buffer("act", 0, 0) == b""


class BabblingTransport(LoopbackTransport):
    """A line that never goes quiet (a wrong bitstream, noise): every read returns bytes."""

    def read(self, n, timeout):
        self.pause(min(timeout, 1e-4))
        return bytes([0x13]) * max(1, n // 2)


def test_drain_has_a_deadline():
    model = shell_model("mac", PARAMS)
    transport = LoopbackTransport(model)
    dev = Device(transport, timeout=0.2, retries=2)
    transport.__class__ = BabblingTransport
    with pytest.raises(LinkError, match=r"^the line did not go quiet within 0\.2 s "):
        dev.status()
    assert issubclass(LinkTimeout, LinkError) and issubclass(ReplyCRCError, LinkError)


def test_open_model_is_a_one_liner():
    with Device.open("model") as dev:                  # the default engine, default params
        assert dev.accelerator.name == "mac"
        a, w = operands((3, 4), 8, 31), operands((4, 2), 8, 32)
        assert torch.equal(dev.matmul(a, w, precision=8), reference_matmul(a, w, 8))
    dev = Device.open("model", accel="mac", params=PARAMS, operand_depth=16, max_payload=32,
                      timeout=0.5, retries=1)
    assert dev.info["params"] == PARAMS.to_dict() and dev.buffers["act"].depth == 16
    assert dev.max_payload == 32 and dev.timeout == 0.5 and dev.retries == 1
    dev = Device.open("model", params=PARAMS.to_dict())
    assert dev.engine.params == PARAMS
    with pytest.raises(SettingError, match=r"^accel must be one of mac, taylor"):
        Device.open("model", accel="nosuch")
    with pytest.raises(SettingError, match=r"^params must be a MacArrayParams, a dict of its "
                                           r"fields or None, not 3$"):
        Device.open("model", params=3)
    with pytest.raises(SettingError, match=r"colour"):
        Device.open("model", colour=2)


# -- a lossy link ------------------------------------------------------------------------

class LossyTransport(LoopbackTransport):
    """Drops or corrupts the replies to chosen requests (counted from 0 after open)."""

    def __init__(self, model, *, drop=(), corrupt=(), truncate=()):
        super().__init__(model)
        self.drop, self.corrupt, self.truncate = set(drop), set(corrupt), set(truncate)
        self.requests = -1            # the INFO of open is request -1

    def write(self, data):
        before = len(self._received)
        super().write(data)
        index, self.requests = self.requests, self.requests + 1
        if index in self.drop:
            del self._received[before:]
        elif index in self.corrupt:
            self._received[-3] ^= 0x01
        elif index in self.truncate:
            del self._received[-2:]


def lossy_device(retries=2, **faults):
    model = shell_model("mac", PARAMS, operand_depth=64, result_depth=64, max_payload=64)
    transport = LossyTransport(model, **faults)
    return Device(transport, timeout=0.1, retries=retries), transport


def test_idempotent_requests_are_retried():
    dev, transport = lossy_device(retries=3, drop={0}, corrupt={1}, truncate={2})
    dev.write_buffer("act", 0, b"\x05\x06")             # dropped, then corrupted, then cut
    assert transport.commands[1:] == [Command.WRITE] * 4
    assert dev.read_buffer("act", 0, 3) == b"\x05\x06\x00"
    assert not dev.status().busy


def test_retries_run_out():
    dev, transport = lossy_device(drop={0, 1, 2})
    with pytest.raises(LinkTimeout, match=r"^no reply within 0\.1 s$"):
        dev.status()
    assert transport.commands[1:] == [Command.STATUS] * 3
    assert dev.status().result_words == 0              # resynchronised afterwards
    dev, _ = lossy_device(corrupt={0, 1, 2})
    with pytest.raises(ReplyCRCError):
        dev.read_buffer("weight", 0, 4)


def test_partial_reply_is_a_link_timeout():
    dev, _ = lossy_device(truncate={0, 1, 2})
    with pytest.raises(LinkTimeout, match=r"^no reply within 0\.1 s \(a partial reply\)$"):
        dev.status()


def test_run_with_a_lost_reply_is_replayed_not_run_again():
    # RUN's reply lost (request 3, after three CONFIGUREs): repeated with its own
    # sequence number, which the device answers OK without a second run
    # (docs/protocol.md, "Repeated RUN").
    dev, transport = lossy_device(drop={3})
    dev.configure(depth=1, tiles=1, precision=4)
    assert dev.run().result_words == PARAMS.tile_rows(4)
    assert transport.commands.count(Command.RUN) == 2 and transport.model.runs == 1
    # Lost, then damaged on the way back (the device checks nothing), then replayed.
    dev, transport = lossy_device(retries=3, drop={1}, corrupt={2})
    dev.configure(depth=1)
    assert not dev.run().busy
    assert transport.commands.count(Command.RUN) == 3 and transport.model.runs == 1
    # Every attempt lost: a LinkTimeout, and still one run.
    dev, transport = lossy_device(drop={1, 2, 3})
    dev.configure(depth=1)
    with pytest.raises(LinkTimeout):
        dev.run()
    assert transport.commands.count(Command.RUN) == 3 and transport.model.runs == 1


def test_replayed_run_is_ok_while_busy_and_only_right_after_the_run():
    model = shell_model("mac", PARAMS, run_bit_times=10_000)
    seq = 7
    run = encode_request(Command.RUN, seq)
    assert model.feed(run) == encode_reply(Status.OK, seq)
    assert model.feed(run) == encode_reply(Status.OK, seq)           # a replay: not BUSY
    assert model.runs == 1 and model.busy
    assert model.feed(run[:-1] + bytes([run[-1] ^ 1])) == encode_reply(Status.BAD_CRC, seq)
    assert model.feed(run) == encode_reply(Status.OK, seq)           # bad CRC: remembered
    status = encode_request(Command.STATUS, 8)
    assert model.feed(status)[1] == Status.OK                        # forgets the RUN
    assert model.feed(run) == encode_reply(Status.BUSY, seq)
    model.idle(10_000)
    assert model.feed(encode_request(Command.RUN, 9)) == encode_reply(Status.OK, 9)
    assert model.feed(encode_request(Command.RUN, 10)) == encode_reply(Status.BUSY, 10)
    assert model.feed(encode_request(Command.RUN, 9)) == encode_reply(Status.BUSY, 9)
    assert model.runs == 2


def test_damaged_request_is_repeated_even_for_run():
    class DamagingTransport(LoopbackTransport):
        damaged = 0

        def write(self, data):
            if data[1] == Command.RUN and not self.damaged:
                self.damaged = 1
                data = data[:-1] + bytes([data[-1] ^ 0xFF])      # device replies BAD_CRC
            super().write(data)

    model = shell_model("mac", PARAMS)
    dev = Device(DamagingTransport(model))
    dev.configure(depth=1, tiles=1, precision=4)
    assert dev.run().result_words == PARAMS.tile_rows(4)


def test_loopback_counts_the_bytes_each_way():
    from celine.spec.protocol import ADDRESS_BYTES, FRAME_OVERHEAD
    dev, model = open_device()
    transport = dev.transport
    assert transport.bytes_written == FRAME_OVERHEAD                  # INFO, no payload
    assert transport.bytes_read == FRAME_OVERHEAD + len(model.info_bytes())
    transport.bytes_written = transport.bytes_read = 0               # start a count
    dev.write_buffer("act", 0, bytes(100))         # 2 frames: 59 + 41 bytes (max_payload 64)
    assert transport.bytes_written == 2 * (FRAME_OVERHEAD + ADDRESS_BYTES) + 100
    assert transport.bytes_read == 2 * FRAME_OVERHEAD                # two empty OK replies
    transport.bytes_written = transport.bytes_read = 0
    assert dev.read_buffer("act", 0, 10) == bytes(10)
    assert (transport.bytes_written, transport.bytes_read) == (
        FRAME_OVERHEAD + ADDRESS_BYTES + 2, FRAME_OVERHEAD + 10)     # buffer, offset, count


def test_stored_weights_stay_on_the_device():
    dev, _ = open_device(operand_depth=256, result_depth=64)
    w = operands((20, 7), 8, 9)
    stored = dev.mac.store(w, precision=8)
    assert (stored.k, stored.n, stored.blocks, stored.base) == (20, 7, 4, 0)
    for seed in range(3):
        a = operands((9, 20), 8, 10 + seed)
        sent = dev.stats["bytes_sent"]
        assert torch.equal(dev.mac.matmul(a, stored), reference_matmul(a, w, 8))
        stored_bytes = dev.stats["bytes_sent"] - sent
        sent = dev.stats["bytes_sent"]
        assert torch.equal(dev.mac.matmul(a, w, precision=8), reference_matmul(a, w, 8))
        assert stored_bytes < dev.stats["bytes_sent"] - sent    # W crossed the link again
    other = dev.mac.store(operands((20, 3), 8, 20), precision=8)
    assert other.base == 80                                     # after the first
    a = operands((3, 20), 8, 21)
    assert torch.equal(dev.mac.matmul(a, stored), reference_matmul(a, w, 8))   # still there
    with pytest.raises(SettingError, match=r"^a must have 20 columns \(the stored weights' "
                                           r"rows\), not 19$"):
        dev.mac.matmul(operands((3, 19), 8, 1), stored)
    with pytest.raises(SettingError, match=r"^precision must be 8 \(the stored weights'\), "
                                           r"not 4$"):
        dev.mac.matmul(a, stored, precision=4)
    with pytest.raises(SettingError, match=r"^rps must be False for stored weights"):
        dev.mac.matmul(a, stored, rps=True)
    with pytest.raises(SettingError, match=r"^w needs 320 words of the weight buffer, but 136 "
                                           r"of 256 are free \(forget\(\) frees the stored "
                                           r"weights\)$"):
        dev.mac.store(operands((20, 32), 8, 2), precision=8)
    dev.mac.forget()
    with pytest.raises(SettingError, match=r"^w is a StoredWeights this device no longer "
                                           r"holds"):
        dev.mac.matmul(a, stored)
    assert dev.mac.store(w, precision=8).base == 0


def test_weight_bookkeeping_checks_its_arguments():
    dev, _ = open_device()
    assert dev.mac.weight_words((30, 5), 8) == 90                 # 3 blocks of 2 columns
    with pytest.raises(SettingError, match=r"^shape must be a \(K, N\) pair of positive "
                                           r"integers, not \(\)$"):
        dev.mac.weight_words((), 8)
    with pytest.raises(SettingError, match=r"^precision must be one of 2, 4, 8, 16, not 3$"):
        dev.mac.weight_words((3, 3), 3)
    with pytest.raises(SettingError, match=r"^stored must be a StoredWeights, not NoneType$"):
        dev.mac.holds(None)
