"""golden/shell.py: every error reply of docs/protocol.md, each followed by a good command
with the buffers intact."""

import json

import pytest
import torch

from celine.firmware.protocol import (Command, ReplyDecoder, Status, configure_payload,
                               encode_request, parse_status, read_payload, write_payload)
from celine.golden.mac import MacArrayModel, Requant
from celine.golden.shell import shell_model
from celine.spec.lanes import pack_lanes, unpack_lanes
from celine.engines.mac.spec import MacArrayParams

PARAMS = MacArrayParams(rows=2, cols=2)


class Host:
    """Talks to a ShellModel frame by frame."""

    def __init__(self, **settings):
        self.model = shell_model("mac", PARAMS, operand_depth=8, result_depth=16,
                                max_payload=32, **settings)
        self.decoder = ReplyDecoder()

    def send(self, raw):
        return self.decoder.feed(self.model.feed(raw))

    def request(self, command, payload=b"", seq=1):
        (reply,) = self.send(encode_request(command, seq, payload))
        assert reply.crc_ok and reply.seq == seq
        return reply

    def fill_act(self):
        data = bytes(range(1, 33))
        assert self.request(Command.WRITE, write_payload(0, 16, data[:27])).status == Status.OK
        return data[:27]

    def act_intact(self, data):
        reply = self.request(Command.READ, read_payload(0, 16, len(data)), seq=99)
        assert (reply.status, reply.payload) == (Status.OK, data)


def test_info_describes_buffers_and_registers():
    host = Host()
    info = json.loads(host.request(Command.INFO).payload)
    assert info["engine"] == "mac" and MacArrayParams.from_dict(info["params"]) == PARAMS
    # act/weight: 8 lanes x 16 bits; result: 8 lanes x 42 bits (the 16-bit accumulator)
    assert PARAMS.result_width == 42
    assert [(b["name"], b["word_bytes"], b["word_stride"], b["depth"], b["writable"])
            for b in info["buffers"]] == [("act", 16, 16, 8, True), ("weight", 16, 16, 8, True),
                                          ("result", 42, 64, 16, False)]
    assert info["registers"] == {"depth": 0, "tiles": 1, "precision": 2, "rps_enable": 3,
                                 "requant": 4, "grid_cols": 5, "weight_base": 6}
    assert (info["max_payload"], info["baud"]) == (32, 115_200)


def test_padding_bytes_read_zero_and_ignore_writes():
    # 3 lanes x 8 bits: 3 bytes a word, 4 apart
    model = shell_model("mac", MacArrayParams(rows=3, cols=1, precisions=(8,)), operand_depth=2)
    replies = ReplyDecoder().feed(
        model.feed(encode_request(Command.WRITE, 1, write_payload(0, 0, b"\x01\x02\x03\x04\x05")))
        + model.feed(encode_request(Command.READ, 2, read_payload(0, 0, 8)))
        + model.feed(encode_request(Command.WRITE, 3, write_payload(0, 8, b"\x07"))))
    assert [r.status for r in replies] == [Status.OK, Status.OK, Status.BAD_ADDRESS]
    assert replies[1].payload == b"\x01\x02\x03\x00\x05\x00\x00\x00"
    assert model.buffers[0].words == [0x030201, 0x000005]


def test_bad_crc_changes_nothing():
    host = Host()
    data = host.fill_act()
    frame = bytearray(encode_request(Command.WRITE, 5, write_payload(0, 16, b"\xee" * 4)))
    frame[-1] ^= 1
    (reply,) = host.send(frame)
    assert (reply.status, reply.seq) == (Status.BAD_CRC, 5)
    host.act_intact(data)


def test_unknown_command():
    host = Host()
    data = host.fill_act()
    assert host.request(0x33, b"\x00", seq=6).status == Status.UNKNOWN_COMMAND
    host.act_intact(data)


@pytest.mark.parametrize("command,payload", [
    (Command.WRITE, write_payload(0, 0, b"")),         # no data byte
    (Command.READ, read_payload(0, 0, 0)),             # count 0
    (Command.READ, read_payload(0, 0, 33)),            # count > max_payload
    (Command.READ, b"\x00" * 6),
    (Command.CONFIGURE, b"\x00" * 4),
    (Command.RUN, b"\x00"),
    (Command.STATUS, b"\x00"),
    (Command.INFO, b"\x00"),
])
def test_wrong_length_for_the_command(command, payload):
    host = Host()
    data = host.fill_act()
    assert host.request(command, payload).status == Status.BAD_LENGTH
    host.act_intact(data)


def test_oversized_length_replies_at_once_then_discards_until_a_start_byte():
    host = Host()
    data = host.fill_act()
    header = bytes([0xA5, Command.WRITE, 8, 33, 0])   # L = 33 > max_payload
    (reply,) = host.send(header)                        # no payload needed for the reply
    assert (reply.status, reply.seq) == (Status.BAD_LENGTH, 8)
    # The announced payload (no start byte in it) is garbage now, then a good frame.
    assert host.send(bytes(range(0x10, 0x31))) == []
    host.act_intact(data)


def test_truncated_frame_times_out():
    host = Host()
    data = host.fill_act()
    frame = encode_request(Command.WRITE, 9, write_payload(0, 16, b"\xee" * 8))
    assert host.send(frame[:10]) == []
    assert host.decoder.feed(host.model.idle(64)) == []          # not longer than 64
    (reply,) = host.decoder.feed(host.model.idle(1))
    assert (reply.status, reply.seq) == (Status.TIMEOUT, 9)
    assert host.decoder.feed(host.model.idle(1000)) == []        # once only
    host.act_intact(data)


def test_quiet_gaps_of_timeout_bits_between_every_byte_never_time_out():
    """The timeout counts quiet line time since the last byte, not the bytes themselves,
    and does not add up over a frame (docs/protocol.md)."""
    host = Host()
    frame = encode_request(Command.WRITE, 4, write_payload(0, 16, b"\x5c"))
    out = b""
    for byte in frame:
        out += host.model.feed(bytes([byte])) + host.model.idle(host.model.timeout_bits)
    (reply,) = host.decoder.feed(out)
    assert (reply.status, reply.seq) == (Status.OK, 4)
    host.act_intact(b"\x5c")


def test_timeout_right_after_the_start_byte_has_seq_0():
    host = Host()
    assert host.send(b"\xa5") == []
    (reply,) = host.decoder.feed(host.model.idle(65))
    assert (reply.status, reply.seq) == (Status.TIMEOUT, 0)


def test_idle_line_between_frames_is_no_timeout():
    host = Host()
    assert host.model.idle(10_000) == b""
    assert host.request(Command.STATUS).status == Status.OK


def test_garbage_between_frames_is_ignored():
    host = Host()
    data = host.fill_act()
    replies = host.send(b"\x00\x5a\xff" + encode_request(Command.STATUS, 3) + b"\x12\x34"
                        + encode_request(Command.READ, 4, read_payload(0, 16, len(data))))
    assert [(r.status, r.seq) for r in replies] == [(Status.OK, 3), (Status.OK, 4)]
    assert replies[1].payload == data


def test_bad_address():
    host = Host()
    data = host.fill_act()
    for payload in [write_payload(3, 0, b"\x01"),             # no buffer 3
                    write_payload(2, 0, b"\x01"),             # result is read-only
                    write_payload(0, 127, b"\x01\x02"),       # past the end (8 x 16 bytes)
                    read_payload(1, 120, 9)]:
        command = Command.READ if payload == read_payload(1, 120, 9) else Command.WRITE
        assert host.request(command, payload).status == Status.BAD_ADDRESS
    host.act_intact(data)


def test_bad_register():
    host = Host()
    assert host.request(Command.CONFIGURE, configure_payload(7, 1)).status == Status.BAD_REGISTER
    assert host.request(Command.CONFIGURE, configure_payload(0, 3)).status == Status.OK
    assert host.model.registers["depth"] == 3


def test_busy_during_a_run():
    host = Host(run_bit_times=500)
    data = host.fill_act()
    for name, value in [(0, 1), (1, 1), (2, 8)]:
        host.request(Command.CONFIGURE, configure_payload(name, value))
    assert host.request(Command.RUN).status == Status.OK
    assert parse_status(host.request(Command.STATUS).payload).busy
    for command, payload in [(Command.WRITE, write_payload(0, 16, b"\xee")),
                             (Command.WRITE, write_payload(1, 0, b"\xee")),
                             (Command.CONFIGURE, configure_payload(0, 2)),
                             (Command.READ, read_payload(2, 0, 4)),
                             (Command.RUN, b"")]:
        assert host.request(command, payload).status == Status.BUSY
    assert host.request(Command.READ, read_payload(3, 0, 4)).status == Status.BAD_ADDRESS
    assert host.model.idle(500) == b""
    host.act_intact(data)
    report = parse_status(host.request(Command.STATUS).payload)
    assert not report.busy and report.result_words == 2
    assert host.model.registers["depth"] == 1


def test_run_computes_tiles_with_the_mac_model():
    host = Host()
    params, rng = PARAMS, torch.Generator().manual_seed(1)
    depth, tiles = 3, 2
    act = torch.randint(-128, 128, (tiles * depth, params.act_lanes), generator=rng)
    weight = torch.randint(-128, 128, (tiles * depth, params.weight_lanes), generator=rng)
    for index, beats in ((0, act), (1, weight)):
        data = b"".join(pack_lanes(row.tolist(), 16).to_bytes(16, "little") for row in beats)
        for start in range(0, len(data), 27):
            payload = write_payload(index, start, data[start:start + 27])
            assert host.request(Command.WRITE, payload).status == Status.OK
    requant = Requant(True, 300, 9)
    for register, value in [(0, depth), (1, tiles), (2, 4), (3, 0),
                            (4, 1 | requant.multiplier << 1 | requant.shift << 17)]:
        assert host.request(Command.CONFIGURE, configure_payload(register, value)).status == Status.OK
    assert host.request(Command.RUN).status == Status.OK
    report = parse_status(host.request(Command.STATUS).payload)
    rows = params.tile_rows(4)
    assert (report.busy, report.engine_errors, report.result_words) == (False, 0, tiles * rows)
    model = MacArrayModel(params)
    expected = torch.cat([model.tile(act[t * depth:(t + 1) * depth],
                                     weight[t * depth:(t + 1) * depth], 4, requant)
                          for t in range(tiles)])
    data = b"".join(host.request(Command.READ, read_payload(2, start, 32)).payload
                    for start in range(0, tiles * rows * 64, 32))
    got = [unpack_lanes(int.from_bytes(data[i * 64:(i + 1) * 64], "little"),
                        params.weight_lanes, params.result_width) for i in range(tiles * rows)]
    assert torch.equal(torch.tensor(got), expected)


def test_engine_errors_belong_to_the_last_run():
    host = Host()
    for register, value in [(0, 1), (1, 1), (2, 3)]:
        host.request(Command.CONFIGURE, configure_payload(register, value))
    host.request(Command.RUN)                                   # unsupported precision 3
    assert parse_status(host.request(Command.STATUS).payload).engine_errors == 2
    host.request(Command.CONFIGURE, configure_payload(2, 2))
    host.request(Command.CONFIGURE, configure_payload(1, 3))   # 3 tiles x 8 rows > 16 words
    host.request(Command.RUN)
    report = parse_status(host.request(Command.STATUS).payload)
    assert (report.engine_errors, report.result_words) == (4, 16)
    host.request(Command.CONFIGURE, configure_payload(1, 1))
    host.request(Command.RUN)
    assert parse_status(host.request(Command.STATUS).payload).engine_errors == 0


def test_depths_must_be_positive():
    with pytest.raises(ValueError, match=r"^operand_depth must be between 1 and 65536, not 0$"):
        shell_model("mac", PARAMS, operand_depth=0)
    with pytest.raises(ValueError, match=r"^option must be one of operand_depth, result_depth "
                                         r"for the mac engine, not 'act_depth'$"):
        shell_model("mac", PARAMS, act_depth=8)
