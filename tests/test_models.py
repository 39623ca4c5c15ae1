"""Whole models on the engines (celine.models, docs/models.md): the digits ViT variants, the
integer model, and offload() onto devices, bit-exact with the integer golden model."""

import json

import pytest
import torch

from celine.firmware.device import Device
from celine.firmware.errors import SettingError
from celine.golden.digits_vit import DigitsViTConfig, digits_dataset, one_thread
from celine.models import offload, open_devices, quantize_model
from celine.models.integer import FloatOps, forward
from celine.models.ops import (MATMUL, OPS, SD_LINEAR, SPARSE_ATTENTION, TAYLOR_ATTENTION,
                               DeviceExecutor, GoldenExecutor, engine_for)
from celine.models.variants import VARIANTS, get

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def data():
    return digits_dataset()


def _quantized(name, data):
    with one_thread():
        return get(name).quantize(data.train_images[:256], progress=False)


# make test trains and runs the Taylor variant (its attention on the Taylor engine, its
# other layers on the MAC array); make sim all of them. Training a variant and a model's
# RTL run are minutes each on two cores, so make test samples one.
SAMPLED = ("taylor",)


@pytest.fixture(scope="module", params=[
    name if name in SAMPLED else pytest.param(name, marks=pytest.mark.sweep)
    for name in VARIANTS])
def quantized(request, data):
    return _quantized(request.param, data)


# The RTL runs the softmax and the Taylor variants (the others differ from softmax only in
# the precision of the MAC array's products, which its own tests cover at every precision),
# in make sim: one image through the Taylor variant's two Verilator builds was make test's
# longest case (257 s of a fresh clone's 1,406). make test holds each engine's RTL to its
# golden device in the engine's own shell tests, and the golden devices to the integer
# model here (test_the_model_device_equals_the_integer_model).
@pytest.fixture(scope="module", params=[pytest.param(name, marks=pytest.mark.sweep)
                                        for name in ("softmax", "taylor")])
def quantized_rtl(request, data):
    return _quantized(request.param, data)


def test_variants_have_at_least_64_tokens():
    for variant in VARIANTS.values():
        assert variant.config.tokens >= 64


def test_the_forward_pass_is_the_float_model(quantized, data):
    images = data.test_images[:32]
    with one_thread(), torch.no_grad():
        assert torch.equal(forward(quantized.model, images, FloatOps()),
                           quantized.model(images))


def test_the_integer_model_agrees_with_the_float_model(quantized, data):
    images = data.test_images[:40]
    with one_thread(), torch.no_grad():
        floats = quantized.model(images).argmax(-1)
        ints = quantized.golden(images).argmax(-1)
    assert int((floats == ints).sum()) >= 38          # int8 rounding may flip a close call


def test_the_model_device_equals_the_integer_model(quantized, data):
    images = data.test_images[:6]
    devices = open_devices(quantized, "model")
    try:
        hw = offload(quantized, devices)
        with one_thread():
            got = hw(images)
            want = quantized.golden(images)
        assert torch.equal(got, want)
        stats = hw.stats()
        assert set(stats) == set(quantized.engine_params())
        assert all(s["runs"] > 0 and s["bytes_sent"] > 0 and s["cycles"] > 0
                   for s in stats.values())
    finally:
        for dev in devices:
            dev.close()


def _equal_on(quantized, target, images):
    """The devices' logits for `images` equal the integer golden model's, bit for bit."""
    devices = open_devices(quantized, target)
    try:
        with one_thread():
            return torch.equal(offload(quantized, devices)(images), quantized.golden(images))
    finally:
        for dev in devices:
            dev.close()


@pytest.mark.sweep
def test_two_hundred_images_on_the_model_devices_equal_the_integer_model(quantized, data):
    assert _equal_on(quantized, "model", data.test_images[:200])


@pytest.mark.cocotb
@pytest.mark.sweep
def test_every_variant_through_the_rtl(quantized, data):
    """Every variant (the SmartDeal and ViTCoD engines' RTL too), two images."""
    assert _equal_on(quantized, "sim", data.test_images[10:12])


@pytest.mark.cocotb
def test_the_rtl_equals_the_integer_model(quantized_rtl, data):
    """One image through the RTL of each engine the variant needs (Verilator)."""
    assert _equal_on(quantized_rtl, "sim", data.test_images[:1])


# -- settings ---------------------------------------------------------------------------

def test_engines_declare_the_operations():
    assert engine_for(MATMUL)[0].name and engine_for(TAYLOR_ATTENTION)[0].name
    assert set(OPS) == {MATMUL, SD_LINEAR, SPARSE_ATTENTION, TAYLOR_ATTENTION}
    assert engine_for(SD_LINEAR)[0].name and engine_for(SPARSE_ATTENTION)[0].name
    with pytest.raises(SettingError, match="op must be one of matmul, sd_linear, "
                                           "sparse_attention, taylor_attention, not 'conv'"):
        engine_for("conv")


def test_a_device_that_runs_no_operation_of_the_model_is_named(data):
    model, _ = get("taylor").trained(progress=False)
    with one_thread():
        quantized = quantize_model(model, data.train_images[:16])
    params = quantized.engine_params()
    matmul_engine = engine_for(MATMUL)[0].name
    with Device.open("model", accel=matmul_engine, params=params[matmul_engine]) as dev:
        with pytest.raises(SettingError, match=f"none of the devices \\({matmul_engine}\\) "
                                               f"runs 'taylor_attention'"):
            offload(quantized, dev)


def test_offload_names_what_it_cannot_take(quantized):
    with pytest.raises(SettingError, match="model must be a golden.digits_vit.DigitsViT or a "
                                           "celine.models.QuantizedViT, not str"):
        offload("vit", [])
    with pytest.raises(SettingError, match="calibration must be None for a model already "
                                           "quantized"):
        offload(quantized, [], calibration=torch.zeros(1, 8, 8))
    with pytest.raises(SettingError, match="devices must hold at least one open Device"):
        offload(quantized, [])
    with pytest.raises(SettingError, match="target must be 'model' or 'sim'"):
        open_devices(quantized, "board")


def test_a_golden_executor_needs_every_engines_parameters():
    with pytest.raises(SettingError, match="no parameters for the .* engine that runs "
                                           "'matmul'"):
        GoldenExecutor({})(MATMUL, torch.zeros(1, 1), torch.zeros(1, 1), 8)
    with pytest.raises(SettingError, match="devices must hold at least one open Device"):
        DeviceExecutor([])


def test_an_engine_checks_operands_in_the_golden_path_too(data):
    params = _quantized("taylor", data).engine_params()
    run = GoldenExecutor(params)
    with pytest.raises(SettingError, match="w must have 3 rows \\(the columns of a\\), not 2"):
        run(MATMUL, torch.zeros(2, 3, dtype=torch.int64), torch.zeros(2, 2, dtype=torch.int64), 8)
    with pytest.raises(SettingError, match="precision must be one of 8, not 4"):
        run(MATMUL, torch.zeros(2, 3, dtype=torch.int64), torch.zeros(3, 2, dtype=torch.int64), 4)


def test_model_names_and_configurations_are_checked():
    with pytest.raises(ValueError, match="model must be one of softmax, taylor, int4, "
                                         "switchable-8, switchable-4, smartdeal, "
                                         "vitcod, not 'resnet'"):
        get("resnet")
    with pytest.raises(ValueError, match="attention must be 'softmax' or 'taylor', "
                                         "not 'linear'"):
        DigitsViTConfig(attention="linear")
    with pytest.raises(ValueError, match="kernel must exceed patch \\(1\\) by an even number, "
                                         "not 2"):
        DigitsViTConfig(patch=1, kernel=2)
    with pytest.raises(ValueError, match="kernel must be"):
        DigitsViTConfig(patch=2, kernel=1)


# -- celine run -----------------------------------------------------------------------------

def test_celine_run_reports_accuracy_equality_and_time(capsys):
    from celine.gen.cli import main
    assert main(["run", "taylor", "--images", "2", "--first", "5", "--quiet", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 2 and result["first"] == 5 and result["hw_equals_int"]
    model = get("taylor").trained(progress=False)[0]
    engines = quantize_model(model, digits_dataset().train_images[:4]).engine_params()
    assert result["images_equal"] == 2 and result["engines"] == sorted(engines)
    assert result["cycles_per_image"] > 0 and result["link_bytes_per_image"] > 0
    assert result["est_ms_per_image_ulx3s"] == pytest.approx(
        result["est_link_ms_per_image_ulx3s"] + result["est_compute_ms_per_image_ulx3s"],
        abs=2e-3)


@pytest.mark.parametrize("argv, message", [
    (["run", "vgg"], "model must be one of softmax, taylor, int4, switchable-8, "
                     "switchable-4, smartdeal, vitcod, not 'vgg'"),
    (["run", "softmax", "--images", "0"], "images must be between 1 and 360, not 0"),
    (["run", "softmax", "--images", "10", "--first", "355"],
     "first must be between 0 and 350 for 10 images, not 355"),
    (["run", "softmax", "--device", ","], "device must be 'model', 'sim' or serial ports"),
])
def test_celine_run_rejects_bad_input_in_one_line(capsys, argv, message):
    from celine.gen.cli import main
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("celine: error: ") and message in err and err.count("\n") == 1


@pytest.mark.sweep
def test_the_switchable_variants_share_one_set_of_weights():
    eight, _ = get("switchable-8").trained(progress=False)
    four, _ = get("switchable-4").trained(progress=False)
    assert all(torch.equal(a, b) for a, b in zip(eight.state_dict().values(),
                                                 four.state_dict().values()))
    assert get("switchable-8").precision == 8 and get("switchable-4").precision == 4


def test_qat_rounds_operands_as_the_engine_does():
    from celine.golden.quant import quantize, reduce_precision
    from celine.models.qat import fake_operand
    x = torch.linspace(-3, 3, 601, dtype=torch.float64)
    step = 3 / 127
    for precision in (8, 4, 2):
        want = reduce_precision(quantize(x, step), precision).double() \
            * 2 ** (8 - precision) * step if precision < 8 else quantize(x, step).double() * step
        assert torch.equal(fake_operand(x, step, precision), want)


@pytest.mark.sweep
def test_the_smartdeal_variant_runs_its_layers_as_smartdeal_weights(data):
    quantized = _quantized("smartdeal", data)
    assert SD_LINEAR in quantized.ops and set(quantized.weights) == {"embed"}
    assert len(quantized.sd_layers) == 9        # 4 layers a block, and the head


def test_celine_bitstream_model_builds_each_engine_at_the_models_needs(tmp_path, monkeypatch,
                                                                       capsys, data):
    import celine.gen.bitstream as bitstream
    import celine.gen.report as report
    built = []

    def build(board, accel, params, *, options, out, **settings):
        built.append((board, accel, params, options, out))

    monkeypatch.setattr(bitstream, "build_bitstream", build)
    monkeypatch.setattr(report, "load_report", lambda path: {})
    monkeypatch.setattr(report, "format_report", lambda rep: "a report")
    from celine.gen.cli import main
    assert main(["bitstream", "--model", "taylor", "--out", str(tmp_path)]) == 0
    quantized = _quantized("taylor", data)
    assert [(accel, params, options) for _, accel, params, options, _ in built] == [
        (name, params, quantized.engine_options()[name])
        for name, params in quantized.engine_params().items()]
    assert [out for *_, out in built] == [tmp_path / name for name in
                                          quantized.engine_params()]
    assert capsys.readouterr().out.count("a report") == len(built)


@pytest.mark.sweep
def test_the_vitcod_variant_prunes_nine_tenths_of_attention(data):
    from celine.golden.vitcod.mask import sparsity
    quantized = _quantized("vitcod", data)
    assert SPARSE_ATTENTION in quantized.ops
    for block in quantized.model.blocks:
        assert sparsity(block.attn.mask) >= 0.9
    assert set(quantized.autoencoders) == {f"blocks.{i}.attn"
                                           for i in range(len(quantized.model.blocks))}


def test_celine_offload_is_the_models_offload():
    import celine
    assert celine.offload is offload


@pytest.mark.parametrize("kwargs, error, message", [
    ({"precisions": (3,)}, ValueError, r"^precisions must be distinct values from \{2, 4, 8\}, "
                                       r"not \(3,\)$"),
    ({"precisions": ()}, TypeError, r"^precisions must be a non-empty tuple of integers"),
    ({"epochs": 0}, ValueError, r"^epochs must be at least 1, not 0$"),
    ({"lr": -1}, ValueError, r"^lr must be a finite number above 0, not -1"),
    ({"batch_size": 0}, ValueError, r"^batch_size must be at least 1, not 0$"),
    ({"seed": -1}, ValueError, r"^seed must be at least 0, not -1$"),
])
def test_qat_settings_are_checked(kwargs, error, message):
    from celine.models.qat import QATConfig
    with pytest.raises(error, match=message):
        QATConfig(**kwargs)


def test_sparse_settings_are_checked():
    from celine.models.sparse import SparseConfig
    with pytest.raises(ValueError, match=r"^sparsity must be a number in \[0, 1\), not 1\.0$"):
        SparseConfig(sparsity=1.0)
    with pytest.raises(TypeError, match=r"^finetune must be a golden.vitcod.autoencoder."
                                        r"FinetuneConfig, not 3$"):
        SparseConfig(finetune=3)
