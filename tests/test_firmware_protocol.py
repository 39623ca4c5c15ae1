"""firmware/protocol.py: CRC, frames, the incremental reply decoder, payloads."""

import pytest

from celine.firmware.protocol import (Command, Reply, ReplyDecoder, Status, StatusReport,
                               configure_payload, crc16, encode_reply, encode_request,
                               parse_address, parse_configure, parse_read, parse_status,
                               read_payload, status_payload, write_payload)


def test_crc_check_value():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF


def test_request_layout():
    frame = encode_request(Command.READ, 7, read_payload(2, 0x01020304, 300))
    assert frame[:5] == bytes([0xA5, 0x02, 7, 7, 0])
    assert frame[5:12] == bytes([2, 4, 3, 2, 1, 0x2C, 0x01])
    crc = crc16(frame[1:12])
    assert frame[12:] == bytes([crc & 0xFF, crc >> 8])       # low byte first


def test_payload_round_trips():
    assert parse_address(write_payload(1, 70000, b"xyz")) == (1, 70000, b"xyz")
    assert parse_read(read_payload(0, 5, 64)) == (0, 5, 64)
    assert configure_payload(4, 0x12345678) == bytes([4, 0x78, 0x56, 0x34, 0x12])
    assert parse_configure(configure_payload(4, 0x12345678)) == (4, 0x12345678)
    report = StatusReport(busy=True, engine_errors=2, cycles=123456, result_words=17)
    assert parse_status(status_payload(report)) == report
    report = StatusReport(busy=False, engine_errors=0, cycles=1, result_words=2, overrun=True)
    assert status_payload(report)[0] == 0x02
    assert len(status_payload(report)) == 8
    assert parse_status(status_payload(report)) == report


def test_decoder_reassembles_split_replies_and_skips_garbage():
    stream = (b"\x00\xff\x13" + encode_reply(Status.OK, 3, b"hello")
              + b"\xa5garbage" + encode_reply(Status.BUSY, 4))
    decoder = ReplyDecoder()
    replies = []
    for byte in stream:
        replies += decoder.feed(bytes([byte]))
    assert replies == [Reply(Status.OK, 3, b"hello"), Reply(Status.BUSY, 4, b"")]
    assert not decoder.pending


def test_decoder_flags_bad_crc_and_reports_needed_bytes():
    frame = bytearray(encode_reply(Status.OK, 9, b"abc"))
    decoder = ReplyDecoder()
    assert decoder.needed == 5
    assert decoder.feed(frame[:3]) == []
    assert decoder.needed == 2
    assert decoder.feed(frame[3:5]) == []
    assert decoder.needed == 5                   # 3 payload + 2 CRC
    frame[6] ^= 0x40
    (reply,) = decoder.feed(frame[5:])
    assert reply.seq == 9 and not reply.crc_ok


def test_unknown_status_stays_an_int():
    (reply,) = ReplyDecoder().feed(encode_reply(0x42, 1))
    assert reply.status == 0x42 and not isinstance(reply.status, Status)


def test_sequence_number_range():
    with pytest.raises(ValueError, match=r"^seq must be between 0 and 255, not 256$"):
        encode_request(Command.RUN, 256)
