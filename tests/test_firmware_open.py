"""Device.open on a serial port: the UART rate is probed (or given), over a fake pyserial
port in front of the golden shell model that answers at one rate only."""

import time

import pytest

serial = pytest.importorskip("serial")

from celine.engines.mac.spec import MacArrayParams  # noqa: E402
from celine.firmware.device import Device  # noqa: E402
from celine.firmware.errors import LinkError, LinkTimeout, SettingError  # noqa: E402
from celine.firmware.protocol import Command  # noqa: E402
from celine.golden.shell import shell_model  # noqa: E402
from celine.spec.uart import PROBE_BAUDS, STANDARD_BAUDS  # noqa: E402

PARAMS = MacArrayParams(rows=2, cols=2)


def garble(data):
    """What bytes sent at one rate look like when received at another (never a start byte)."""
    return bytes(0xFF if (b >> 1) | 0x80 in (0xA5, 0x5A) else (b >> 1) | 0x80 for b in data)


class FakePort:
    """Stands in for pyserial's Serial: bytes at `rate` reach the model intact, bytes at
    any other rate arrive garbled both ways. Reads return at once (no real waiting). Time
    passes for the model in real time (its inter-byte timeout, runs)."""

    def __init__(self, model, rate, *, baudrate, timeout=None, write_timeout=None, **_):
        self.model, self.rate = model, rate
        self.baudrate, self.timeout, self.write_timeout = baudrate, timeout, write_timeout
        self.is_open = True
        self.sent = []                               # (baud, command byte) of each write
        self._out = bytearray()
        self._last = time.monotonic()

    def _deliver(self, reply):
        self._out += reply if self.baudrate == self.rate else garble(reply)

    def _idle(self):
        now = time.monotonic()
        self._deliver(self.model.idle(max(1, round((now - self._last) * self.model.baud))))
        self._last = now

    def write(self, data):
        self._idle()
        self.sent.append((self.baudrate, data[1]))
        self._deliver(self.model.feed(data if self.baudrate == self.rate else garble(data)))

    def read(self, n):
        self._idle()
        out = bytes(self._out[:n])
        del self._out[:n]
        return out

    def flush(self):
        pass

    def reset_input_buffer(self):
        self._out.clear()

    def close(self):
        self.is_open = False


@pytest.fixture
def board(monkeypatch):
    """board(rate, info_baud=rate): the fake port of a device answering at `rate` whose
    INFO says `info_baud`; a list collecting the ports opened."""
    ports = []

    def make(rate, info_baud=None):
        model = shell_model("mac", PARAMS, baud=info_baud or rate, max_payload=64)

        def serial_for_url(url, **settings):
            assert url == "/dev/ttyFAKE"
            ports.append(FakePort(model, rate, **settings))
            return ports[-1]
        monkeypatch.setattr(serial, "serial_for_url", serial_for_url)
        return ports
    return make


def test_default_design_rate_is_found_first(board):
    # before: Device.open defaulted to 115200 baud, and a 3 Mbaud board never answered
    ports = board(3_000_000)
    dev = Device.open("/dev/ttyFAKE")
    assert dev.info["baud"] == 3_000_000 and dev.transport.baud == 3_000_000
    assert ports[0].sent == [(3_000_000, Command.INFO)]
    dev.write_buffer("act", 0, b"\x01\x02")
    assert dev.read_buffer("act", 0, 2) == b"\x01\x02"
    dev.close()
    assert not ports[0].is_open


def test_probe_walks_the_standard_rates(board):
    ports = board(115_200)
    dev = Device.open("/dev/ttyFAKE", timeout=0.7, retries=2)
    assert dev.info["baud"] == 115_200 and (dev.timeout, dev.retries) == (0.7, 2)
    rates = [baud for baud, _ in ports[0].sent]
    assert rates[0] == 3_000_000 and rates[-1] == 115_200
    assert sorted(set(rates), key=rates.index) == list(PROBE_BAUDS[:PROBE_BAUDS.index(115_200) + 1])
    assert not dev.status().busy


def test_probe_order():
    assert PROBE_BAUDS[0] == 3_000_000 and sorted(PROBE_BAUDS) == sorted(STANDARD_BAUDS)
    below = [b for b in PROBE_BAUDS if b < 3_000_000]
    assert below == sorted(below, reverse=True) and PROBE_BAUDS[1:len(below) + 1] == tuple(below)


def test_info_must_name_the_rate_it_came_at(board):
    ports = board(3_000_000, info_baud=115_200)
    with pytest.raises(LinkError, match=r"^no Celine device answered INFO on '/dev/ttyFAKE' at "
                                        r"any standard rate \(3000000, 2000000, .*115200, "
                                        r"4000000, 6000000, 12000000 baud\); give baud= if"):
        Device.open("/dev/ttyFAKE")
    assert not ports[0].is_open                        # closed again


def test_explicit_baud_is_used_as_given(board):
    ports = board(115_200)
    dev = Device.open("/dev/ttyFAKE", baud=115_200)
    assert ports[0].sent == [(115_200, Command.INFO)]
    assert dev.info["baud"] == 115_200
    ports = board(115_200)
    with pytest.raises(LinkTimeout):
        Device.open("/dev/ttyFAKE", baud=3_000_000, retries=1)
    assert {baud for baud, _ in ports[-1].sent} == {3_000_000} and not ports[-1].is_open
    for baud in (0, 1.5, "3M", True):
        with pytest.raises(SettingError, match=r"^baud must be a positive integer or None "
                                               r"\(probe the standard rates\), not "):
            Device.open("/dev/ttyFAKE", baud=baud)
