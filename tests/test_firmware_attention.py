"""Device.attention (firmware/taylor.py) over LoopbackTransport to a byte-level model of the
shell with the Taylor engine: layout, registers, calibration, and the host-side checks."""

import pytest
import torch

from celine.firmware.device import Device
from celine.firmware.errors import CelineError, EngineError, ProtocolError, SettingError
from celine.firmware.protocol import Command
from celine.firmware.transport import LoopbackTransport
from celine.golden.shell import shell_model
from celine.golden.taylor import TaylorRegisters, calibrate, taylor_head_int, taylor_int
from celine.engines.mac.spec import MacArrayParams
from celine.engines.taylor.spec import Errors, TaylorParams

PARAMS = TaylorParams(head_dim=16, max_tokens=12, mac_units=4, heads=3)
REGS = TaylorRegisters(ctx_shift=6, v_mult=900, v_shift=5, out_mult=20000, out_shift=22)


def open_device(params=PARAMS, **settings):
    model = shell_model("taylor", params, **settings)
    return Device.open("sim", transport=LoopbackTransport(model)), model


def operands(shape, seed, width=8):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randint(-(1 << (width - 1)), 1 << (width - 1), shape, generator=gen)
                 for _ in range(3))


def test_open_finds_the_taylor_engine():
    dev, model = open_device()
    assert dev.info["engine"] == "taylor" and dev.engine.params == PARAMS
    assert list(dev.buffers) == ["q", "k", "v", "out"] and not dev.buffers["out"].writable
    assert dev.taylor is dev.engine and dev.attention == dev.engine.attention
    with pytest.raises(AttributeError, match=r"^'Device' with engine 'taylor' has no "
                                             r"attribute 'matmul'$"):
        dev.matmul([[1]], [[1]])


def test_a_mac_device_has_no_attention():
    dev = Device.open("sim", transport=LoopbackTransport(shell_model("mac", MacArrayParams())))
    with pytest.raises(AttributeError, match=r"^'Device' with engine 'mac' has no attribute "
                                             r"'attention'$"):
        dev.attention(*operands((2, 16), 0))


def test_one_head_is_bit_exact():
    dev, _ = open_device()
    q, k, v = operands((12, 16), 1)
    out = dev.attention(q, k, v, registers=REGS)
    assert out.dtype == torch.int64 and out.shape == (12, 16)
    assert torch.equal(out, taylor_head_int(q, k, v, REGS, max_tokens=12).out)
    assert dev.engine.last_registers == REGS


def test_heads_with_a_mask_are_bit_exact_and_skip_the_masked_ones():
    dev, model = open_device()
    q, k, v = operands((3, 7, 16), 2)
    outs = dev.attention(q, k, v, registers=REGS, head_mask=0b010)
    expected = taylor_int(q, k, v, REGS, head_mask=0b010, max_tokens=12)
    assert len(outs) == 2 and all(torch.equal(a, b) for a, b in zip(outs, expected))
    # only the kept heads' rows travel: 2 heads x 3 tensors x 7 tokens x 2 words x 8 bytes
    assert model.buffers[0].words[12 * 2:12 * 2 + 14] == [0] * 14
    assert dev.transport.commands.count(Command.WRITE) == 6
    assert model.registers["head_mask"] == 0b010 and model.registers["tokens"] == 7


def test_fewer_heads_than_the_device_mask_the_rest():
    dev, model = open_device()
    q, k, v = operands((2, 5, 16), 3)
    outs = dev.attention(q, k, v, registers=REGS, head_mask=0b01)
    (expected,) = taylor_int(q, k, v, REGS, head_mask=0b01, max_tokens=12)
    assert len(outs) == 1 and torch.equal(outs[0], expected)
    assert model.registers["head_mask"] == 0b101


def test_every_head_masked_sends_nothing():
    dev, _ = open_device()
    assert dev.attention(*operands((2, 5, 16), 4), head_mask=0b11) == []
    assert dev.transport.commands == [Command.INFO]


def test_registers_are_calibrated_from_the_scales():
    dev, _ = open_device()
    q, k, v = operands((2, 12, 16), 5)
    outs = dev.attention(q, k, v, scales=(0.02, 0.03, 0.05), out_scale=0.04)
    regs = calibrate(q, k, v, scales=(0.02, 0.03, 0.05), out_scale=0.04)
    assert dev.engine.last_registers == regs
    assert all(torch.equal(a, b) for a, b in zip(outs, taylor_int(q, k, v, regs,
                                                                   max_tokens=12)))
    # default: fixed-point fractions (2^-7 at int8), the output in v's scale
    dev.attention(q, k, v)
    assert dev.engine.last_registers == calibrate(q, k, v, scales=(2 ** -7,) * 3,
                                                  out_scale=2 ** -7)


def test_engine_errors_and_short_results_are_reported():
    dev, model = open_device()
    q, k, v = operands((5, 16), 9)

    def failing():
        def complete():
            model.engine_errors, model.result_words = 1, 0
        return complete
    model._compute = failing
    with pytest.raises(EngineError, match=r"^run ended with engine error flags 0x01$"):
        dev.attention(q, k, v, registers=REGS)

    def short():
        def complete():
            model.engine_errors, model.result_words = 0, 3
        return complete
    model._compute = short
    with pytest.raises(ProtocolError, match=r"^run wrote 3 result words, not 10$"):
        dev.attention(q, k, v, registers=REGS)


Q, K, V = operands((2, 4, 16), 6)


@pytest.mark.parametrize("call,message", [
    (lambda d: d.attention(Q.float(), K, V),
     r"q must be a 2-D \(tokens x head_dim\) or 3-D \(heads x tokens x head_dim\) integer "
     r"tensor, not torch.float32 of shape \(2, 4, 16\)"),
    (lambda d: d.attention(Q[0, 0], K, V),
     r"q must be a 2-D \(tokens x head_dim\) or 3-D \(heads x tokens x head_dim\) integer "
     r"tensor, not torch.int64 of shape \(16,\)"),
    (lambda d: d.attention(Q, K[:, :3], V),
     r"k must have the shape of q \(2, 4, 16\), not \(2, 3, 16\)"),
    (lambda d: d.attention(Q, K, V[0]),
     r"v must have the shape of q \(2, 4, 16\), not \(4, 16\)"),
    (lambda d: d.attention(Q[..., :8], K[..., :8], V[..., :8]),
     r"head_dim must be 16 \(the device's\), not 8"),
    (lambda d: d.attention(*operands((13, 16), 7)), r"tokens must be between 1 and 12, not 13"),
    (lambda d: d.attention(Q[:, :0], K[:, :0], V[:, :0]),
     r"tokens must be between 1 and 12, not 0"),
    (lambda d: d.attention(*operands((4, 3, 16), 8)),
     r"heads must be between 1 and 3 \(the device's\), not 4"),
    (lambda d: d.attention(Q, torch.zeros_like(K).index_fill(2, torch.tensor([3]), 128), V),
     r"k must hold int8 values \(-128..127\), not values 0..128"),
    (lambda d: d.attention(Q, K, torch.full_like(V, -129)),
     r"v must hold int8 values \(-128..127\), not values -129..-129"),
    (lambda d: d.attention(Q, K, V, head_mask=0b100), r"head_mask must be between 0 and 3, "
     r"not 4"),
    (lambda d: d.attention(Q, K, V, head_mask=True), r"head_mask must be between 0 and 3, "
     r"not True"),
    (lambda d: d.attention(Q[0], K[0], V[0], head_mask=1),
     r"head_mask must be 0 for one head \(2-D q, k, v\), not 1"),
    (lambda d: d.attention(Q, K, V, registers=(1, 2, 3, 4, 5)),
     r"registers must be a golden.taylor.TaylorRegisters or None, not \(1, 2, 3, 4, 5\)"),
    (lambda d: d.attention(Q, K, V, registers=REGS, scales=(1, 1, 1)),
     r"scales and out_scale must be None when registers are given, not \(1, 1, 1\) and None"),
    (lambda d: d.attention(Q, K, V, scales=(1, -1, 1)), r"s_k must be a positive number, "
     r"not -1"),
])
def test_settings_are_checked_before_anything_is_sent(call, message):
    dev, _ = open_device()
    with pytest.raises(SettingError, match=f"^{message}$"):
        call(dev)
    assert dev.transport.commands == [Command.INFO]


def test_the_model_describes_the_device_as_the_rtl_does():
    from celine.rtl.shell.shell import build_shell
    shell = build_shell(accel="taylor", accel_params=PARAMS, clock_hz=48_000_000, baud=115_200,
                        max_payload=256)
    assert shell.info == shell_model("taylor", PARAMS).info_bytes()


def test_the_output_scale_registers_reset_to_the_parameters():
    params = TaylorParams(head_dim=8, max_tokens=4, mac_units=4, heads=1, out_mult=9,
                          out_shift=5)
    model = shell_model("taylor", params)
    assert (model.registers["out_mult"], model.registers["out_shift"]) == (9, 5)
