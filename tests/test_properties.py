"""Property-based tests (hypothesis) of the host side: the packers and unpackers round-trip,
and the golden shell model changes no buffer and no register on a frame that fails a check."""

import copy
import struct

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from celine import registry
from celine.firmware.words import pack_words, unpack_words
from celine.golden.shell import shell_model
from celine.spec.lanes import pack_lanes, unpack_lanes
from celine.firmware.protocol import ReplyDecoder
from celine.spec.protocol import (Command, Status, StatusReport,
                                  configure_payload, encode_request, parse_configure,
                                  parse_read, parse_status, read_payload, status_payload)

MAX_PAYLOAD = 64

# No time limits: CI and `make test` share two cores with Verilator builds, and a slow
# example is not a failure here.
settings.register_profile("celine", deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("celine")


@st.composite
def lanes(draw):
    width = draw(st.integers(1, 32))
    values = draw(st.lists(st.integers(-(1 << (width - 1)), (1 << (width - 1)) - 1),
                           min_size=1, max_size=16))
    return width, values


@given(lanes())
def test_lanes_round_trip(case):
    width, values = case
    word = pack_lanes(values, width)
    assert 0 <= word < 1 << (width * len(values))
    assert unpack_lanes(word, len(values), width) == values


@given(lanes(), st.integers(1, 4), st.integers(0, 3))
def test_words_round_trip(case, rows, spare):
    width, values = case
    word_bytes = (width * len(values) + 7) // 8 + spare
    stride = 1 << (word_bytes - 1).bit_length()
    data = pack_words([values] * rows, width, word_bytes, stride)
    assert len(data) == rows * stride
    assert unpack_words(data, rows, len(values), width, stride).tolist() == [values] * rows


@given(st.integers(0, 255), st.integers(0, (1 << 32) - 1), st.integers(0, 0xFFFF))
def test_payloads_round_trip(buffer, offset, count):
    assert parse_read(read_payload(buffer, offset, count)) == (buffer, offset, count)
    assert parse_configure(configure_payload(buffer, offset)) == (buffer, offset)


@given(st.booleans(), st.booleans(), st.integers(0, 255), st.integers(0, (1 << 32) - 1),
       st.integers(0, 0xFFFF))
def test_status_round_trips(busy, overrun, errors, cycles, words):
    report = StatusReport(busy, errors, cycles, words, overrun)
    assert parse_status(status_payload(report)) == report


def replies(data):
    """The status of each reply frame in `data`, which must be whole frames."""
    decoder = ReplyDecoder()
    frames = decoder.feed(data)
    assert not decoder.pending and all(frame.crc_ok for frame in frames)
    return [frame.status for frame in frames]


def state(model):
    return copy.deepcopy(([b.words for b in model.buffers], model.registers,
                          model.engine_errors, model.cycles, model.result_words, model.runs))


@st.composite
def frames(draw):
    """A request frame with any command, any payload up to a little over max_payload, and
    either its CRC or a corrupted one; sometimes a READ/WRITE/CONFIGURE-shaped payload with
    random fields, so that the address and register checks are reached."""
    command = draw(st.one_of(st.sampled_from(list(Command)), st.integers(0, 255)))
    shaped = draw(st.sampled_from(["any", "address", "configure"]))
    if shaped == "address":
        payload = struct.pack("<BI", draw(st.integers(0, 255)),
                              draw(st.integers(0, (1 << 32) - 1))) + \
            draw(st.binary(max_size=MAX_PAYLOAD - 4))
    elif shaped == "configure":
        payload = configure_payload(draw(st.integers(0, 255)), draw(st.integers(0, 2**32 - 1)))
    else:
        payload = draw(st.binary(max_size=MAX_PAYLOAD + 4))
    frame = bytearray(encode_request(command, draw(st.integers(0, 255)), payload))
    if draw(st.booleans()):
        frame[-1 - draw(st.integers(0, 1))] ^= 1 << draw(st.integers(0, 7))
    return bytes(frame)


@pytest.mark.parametrize("name", [record.name for record in registry.ENGINES])
@settings(max_examples=150)
@given(frame=frames())
def test_golden_model_changes_nothing_on_a_frame_that_fails_a_check(name, frame):
    """Any frame: either it passes every check (OK) or the device's state is unchanged."""
    model = shell_model(name, max_payload=MAX_PAYLOAD, timeout_bits=32)
    before = state(model)
    got = model.feed(frame) + model.idle(40)
    [status] = replies(got)
    if status != Status.OK:
        assert state(model) == before


# -- every engine's host API: it runs, or it raises SettingError --------------------------

def _host_calls(name):
    """(method name, required parameters) of engine `name`'s public host calls: the
    positional ones, then the keyword-only ones (named "*name")."""
    import inspect
    host = registry.get(name).host.load()
    out = []
    for attr, member in inspect.getmembers(host, inspect.isfunction):
        if attr.startswith("_"):
            continue
        required = [p.name if p.kind != p.KEYWORD_ONLY else f"*{p.name}"
                    for p in inspect.signature(member).parameters.values()
                    if p.name != "self" and p.default is p.empty
                    and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                   p.KEYWORD_ONLY)]
        out.append((attr, required))
    return out


def _tensors():
    """Tensors of random shape (0 to 3 dimensions, 0 to 5 long), integer, float or bool,
    with values from tiny to far out of any engine's range."""
    import torch
    shapes = st.lists(st.integers(0, 5), min_size=0, max_size=3)
    values = st.one_of(st.integers(-(1 << 40), 1 << 40), st.integers(-130, 130))

    @st.composite
    def tensor(draw):
        shape = draw(shapes)
        count = 1
        for size in shape:
            count *= size
        data = draw(st.lists(values, min_size=count, max_size=count))
        kind = draw(st.sampled_from(["int64", "int8", "float", "bool"]))
        t = torch.tensor(data, dtype=torch.int64).reshape(shape)
        if kind == "int8":
            t = t.clamp(-128, 127).to(torch.int8)
        elif kind == "float":
            t = t.to(torch.float32) / 3
        elif kind == "bool":
            t = t > 0
        return t
    return tensor()


ARGUMENTS = st.one_of(_tensors(), st.none(), st.integers(-1000, 1000),
                      st.floats(allow_nan=True), st.text(max_size=3),
                      st.lists(st.integers(-200, 200), max_size=4))


@pytest.mark.parametrize("name", [record.name for record in registry.ENGINES])
@settings(max_examples=60)
@given(data=st.data())
def test_every_host_call_runs_or_raises_setting_error(name, data):
    """Any required arguments (tensors of any shape, dtype and values, None, numbers,
    strings, lists) given to any public call of the engine's host API: the call returns
    or raises SettingError, never another exception (and never hangs)."""
    from celine.firmware.device import Device
    from celine.firmware.errors import SettingError
    device = _devices(name)
    method, required = data.draw(st.sampled_from(_host_calls(name)))
    args = [data.draw(ARGUMENTS, label=p) for p in required if not p.startswith("*")]
    keywords = {p[1:]: data.draw(ARGUMENTS, label=p) for p in required if p.startswith("*")}
    try:
        getattr(device.engine, method)(*args, **keywords)
    except SettingError:
        pass
    assert isinstance(device, Device)


_DEVICES = {}


def _devices(name):
    """One golden-model device an engine, at its small configuration, shared by examples."""
    if name not in _DEVICES:
        from celine.firmware.device import Device
        params, options = registry.get(name).small_point()
        _DEVICES[name] = Device.open("model", accel=name, params=params, **options)
    return _DEVICES[name]
