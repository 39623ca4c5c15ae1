"""The link fuzzer (celine/sim/fuzz.py) against the golden shell model of every engine:
reproducible from its seed, every kind of fault made, each answered as docs/protocol.md
says, and no faulty frame changes the device's state."""

import copy
import struct

import pytest

from celine import registry
from celine.golden.shell import shell_model
from celine.sim.fuzz import FAULTY_KINDS, LinkFuzzer, Step, expected
from celine.firmware.protocol import ReplyDecoder
from celine.spec.protocol import Status

MAX_PAYLOAD, TIMEOUT_BITS = 64, 32


def replies(data):
    """(status, seq, payload) of each reply frame in `data`, which must be whole frames."""
    decoder = ReplyDecoder()
    frames = decoder.feed(data)
    assert not decoder.pending and all(frame.crc_ok for frame in frames)
    return [(frame.status, frame.seq, frame.payload) for frame in frames]


def model_for(name):
    return shell_model(name, max_payload=MAX_PAYLOAD, timeout_bits=TIMEOUT_BITS)


def state(model):
    return [list(b.words) for b in model.buffers], dict(model.registers)


def fuzzer(model, seed):
    return LinkFuzzer(model.info(), seed, max_payload=MAX_PAYLOAD, timeout_bits=TIMEOUT_BITS)


def test_same_seed_same_steps():
    model = model_for(registry.ENGINES[0].name)
    first = [repr(s) for s in fuzzer(model, 7).burst(300)]
    assert first == [repr(s) for s in fuzzer(model, 7).burst(300)]
    assert first != [repr(s) for s in fuzzer(model, 8).burst(300)]


def test_every_kind_is_made():
    steps = fuzzer(model_for(registry.ENGINES[0].name), 1).burst(1000)
    made = {s.kind for s in steps}
    assert made >= set(FAULTY_KINDS) | {"valid", "round_trip", "read_back"}


# The status every reply of a step of this kind has; none of them changes the state.
REJECTED = {"bad_command": Status.UNKNOWN_COMMAND, "bad_buffer": Status.BAD_ADDRESS,
            "bad_register": Status.BAD_REGISTER, "bad_read_count": Status.BAD_LENGTH,
            "offset_past_end": Status.BAD_ADDRESS, "offset_wraps": Status.BAD_ADDRESS,
            "undersized_length": Status.BAD_LENGTH, "oversized_length": Status.BAD_LENGTH,
            "truncated": Status.TIMEOUT}


@pytest.mark.parametrize("name", [record.name for record in registry.ENGINES])
def test_faults_are_answered_and_change_nothing(name):
    model = model_for(name)
    fuzz = fuzzer(model, 3)
    counts = dict.fromkeys(FAULTY_KINDS, 0)
    for _ in range(600):
        step = fuzz.faulty()
        before = copy.deepcopy(state(model))
        got, ran = expected(model, step)
        assert not ran, step
        frames = replies(got)
        counts[step.kind] += 1
        if step.kind in REJECTED:
            assert [f[0] for f in frames] == [REJECTED[step.kind]], step
            assert state(model) == before, step
        elif step.kind == "bit_flips":
            # a flipped length makes a frame longer (it times out) or shorter (the rest is
            # garbage); whatever it is, it fails a check
            assert frames and all(f[0] != Status.OK for f in frames), step
            assert state(model) == before, step
        elif step.kind == "gap_over_timeout":
            assert frames[0][0] == Status.TIMEOUT, step
        elif step.kind in ("gap_under_timeout", "garbage_then_frame", "back_to_back"):
            assert frames and all(f[0] == Status.OK for f in frames), step
    assert min(counts.values()) >= 10, counts


@pytest.mark.parametrize("name", [record.name for record in registry.ENGINES])
def test_round_trip_reads_what_was_written(name):
    """After a burst, the read-back returns every buffer as the valid writes left it."""
    model = model_for(name)
    fuzz = fuzzer(model, 11)
    for step in fuzz.burst(100):
        expected(model, step)
    shadow = copy.deepcopy(model.buffers)       # the words as the writes leave them
    for step in fuzz.round_trip():
        got, _ = expected(model, step)
        [(status, _, payload)] = replies(got)
        assert status == Status.OK
        if step.kind == "round_trip":
            buffer, offset = struct.unpack_from("<BI", step.sent, 5)
            shadow[buffer].write(offset, step.sent[10:-2])
        else:
            buffer, offset, count = struct.unpack_from("<BIH", step.sent, 5)
            assert payload == shadow[buffer].read(offset, count)


def test_checks():
    info = model_for(registry.ENGINES[0].name).info()
    with pytest.raises(TypeError, match=r"^seed must be an integer, not 'x'$"):
        LinkFuzzer(info, "x", max_payload=64, timeout_bits=32)
    with pytest.raises(ValueError, match=r"^timeout_bits must be an integer of at least 8, "
                                         r"not 4$"):
        LinkFuzzer(info, 1, max_payload=64, timeout_bits=4)
    with pytest.raises(ValueError, match=r"^kind must be one of random_bytes, .*, not 'x'$"):
        LinkFuzzer(info, 1, max_payload=64, timeout_bits=32).faulty("x")
    assert "<30 bits>" in repr(Step([b"\xa5", 30], "gap_under_timeout"))


# -- the RTL ---------------------------------------------------------------------------------

# The engines' own shell tests build these designs (the same small configuration, shell
# settings and top name), so make test compiles each once: {engine: (top, max_payload)}.
# An engine not listed is fuzzed in a build of its own.
SHARED_BUILDS = {"mac": ("serve_mac", 48), "taylor": ("taylor_shell_small", 1024),
                 "vitcod": ("vitcod_shell_small", 1024), "smartdeal": ("serve_smartdeal", 1024),
                 "activation": ("activation_shell", 256)}


def run_fuzz(request, name, seeds, bursts, faulty):
    """celine.sim.reliability.fuzz_rtl in the build the engine's shell tests share."""
    from celine.sim.reliability import fuzz_rtl
    top, max_payload = SHARED_BUILDS.get(name, (None, MAX_PAYLOAD))
    return fuzz_rtl(name, seeds=seeds, bursts=bursts, faulty=faulty,
                    case_id=request.node.nodeid, top=top, max_payload=max_payload)


# The link the fuzzer attacks is the shell's, the same for every engine: make test fuzzes
# the two engines whose whole-buffer read-backs are shortest (under 20 and 50 s), make sim
# every engine. Each engine's own shell tests and its fault cases above run in make test.
FUZZED_IN_MAKE_TEST = ("activation", "mac")


@pytest.mark.cocotb
@pytest.mark.parametrize("name", [
    name if name in FUZZED_IN_MAKE_TEST else pytest.param(name, marks=pytest.mark.sweep)
    for name in (record.name for record in registry.ENGINES)])
def test_rtl_replies_like_the_golden_model_under_fuzz(request, name):
    """One burst of 25 faulty steps (and the valid ones between them, then the round trip)
    on an engine's shell."""
    [result] = run_fuzz(request, name, seeds=[1], bursts=1, faulty=25)
    assert result["faulty_frames"] == 25 and result["valid_frames"] > 0
    assert result["mismatches"] == result["hangs"] == result["corrupted_buffers"] == 0


@pytest.mark.cocotb
@pytest.mark.sweep          # make sim: minutes an engine (the read-backs dominate)
@pytest.mark.parametrize("name", [record.name for record in registry.ENGINES])
def test_rtl_under_fuzz_1000_faulty_frames_a_seed(request, name):
    """Three seeds, each 10 bursts of 100 faulty steps, on each engine's shell."""
    results = run_fuzz(request, name, seeds=[2, 3, 4], bursts=10, faulty=100)
    for result in results:
        assert result["faulty_frames"] == 1000, result
        assert result["mismatches"] == result["hangs"] == result["corrupted_buffers"] == 0
