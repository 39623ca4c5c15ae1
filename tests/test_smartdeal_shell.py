"""The SmartDeal shell's Verilog end to end: host runtime (dev.linear) -> UART -> shell ->
SmartDealShellAdapter on a real trained layer, bit-exact against the golden model; the
weights cross the link once; the cycles of each run within 2% of the cycle model."""

import json

import pytest

from celine.engines.smartdeal.cycles import Layer, cycles as model_cycles
from celine.engines.smartdeal.spec import SmartDealParams
from celine.golden.smartdeal.integer import linear_int
from celine.rtl.shell.shell import build_shell
from celine.sim.runner import run_cocotb

CLOCK_HZ = 100_000_000
SHELL = dict(clock_hz=CLOCK_HZ, baud=CLOCK_HZ // 4, max_payload=1024, timeout_bits=64)
PARAMS = SmartDealParams(max_tokens=16, max_inputs=48, max_outputs=48, weight_words=512)


@pytest.mark.cocotb
def test_linear_end_to_end_trained_layer(request):
    """The digits ViT's attention projection (48 x 48, fine-tuned with the decomposition)
    on 16 real activation rows, twice (the second run reuses the weights on chip and skips
    the check), then requantized."""
    from celine.engines.smartdeal.bench import _digits, activations
    made, layers, images = _digits()
    name = "blocks.0.attn.proj"
    sd = layers[name]
    x = activations(made, name, images, 16)
    words = list(sd.pack())
    jobs = [{"words": words, "x": x.tolist(), "requant": requant,
             "expected": linear_int(x, sd, **({} if requant is None else
                                             {"mult": requant[0], "shift": requant[1]}))
             .tolist()}
            for requant in (None, None, [300, 15])]
    shell = build_shell(accel="smartdeal", accel_params=PARAMS, **SHELL)
    directory = run_cocotb(shell, toplevel="smartdeal_shell", test_module="celine.sim.tb.smartdeal_shell_tb",
                           case_id=request.node.nodeid, testcase="linear_end_to_end",
                           params={"smartdeal": PARAMS.to_dict(), "shell": SHELL},
                           data={"linear": jobs, "info": json.loads(shell.info)})
    record = json.loads((directory / "linear.json").read_text())
    layer = Layer.of(sd)
    predicted = [model_cycles(PARAMS, layer, 16), model_cycles(PARAMS, layer, 16, checked=True),
                 model_cycles(PARAMS, layer, 16, checked=True)]
    for measured, model in zip(record["cycles"], predicted):
        assert abs(measured - model) <= 0.02 * measured, (measured, model)
    links = record["link_bytes"]
    assert links[0]["weights"] == 4 * len(words) and links[1]["weights"] == links[2]["weights"] == 0
    assert 2 * links[0]["weights"] < links[0]["weights_int8"] + 1
