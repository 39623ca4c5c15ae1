"""Run a trained digits ViT on Celine devices: `offload(model, devices)`.

    from celine.models import offload, open_devices, quantize_model
    quantized = quantize_model(model, calibration_images)
    devices = open_devices(quantized, "sim")        # or "model", or serial ports
    hw = offload(quantized, devices)
    logits = hw(images)                            # bit-exact with quantized.golden(images)

Each device runs one engine ("one build per engine, the runtime choosing":
celine.models.ops.DeviceExecutor); a model whose operations need two engines (Taylor
attention and the MAC array's products) needs two devices. The same call works on
`Device.open("model")`, `Device.open("sim")` and serial boards.
"""

import torch

from ..firmware.errors import SettingError
from .integer import CALIBRATION_IMAGES, QuantizedViT, quantize_model
from .ops import DeviceExecutor

__all__ = ["offload", "open_devices", "OffloadedViT"]


def open_devices(quantized, target, **options):
    """One open Device per engine the model needs, at the parameters and shell options
    each engine suggests (QuantizedViT.engine_params, engine_options): `target` "model"
    or "sim" (celine.firmware.Device.open), `options` passed to every open."""
    from ..firmware.device import Device
    if target not in ("model", "sim"):
        raise SettingError(f"target must be 'model' or 'sim' (serial boards are opened with "
                           f"Device.open(port)), not {target!r}")
    devices = []
    try:
        suggested = quantized.engine_options()
        for name, params in quantized.engine_params().items():
            devices.append(Device.open(target, accel=name, params=params,
                                       **{**suggested[name], **options}))
    except BaseException:
        for dev in devices:
            dev.close()
        raise
    return devices


class OffloadedViT:
    """A quantized digits ViT whose engine operations run on `devices`; call it on
    (B, 8, 8) images for (B, 10) logits."""

    def __init__(self, quantized, devices):
        self.quantized = quantized
        self.executor = DeviceExecutor(devices)
        self.devices = self.executor.devices
        for op in quantized.ops:
            self.executor.device_for(op)        # SettingError now if no device runs it

    def __call__(self, images):
        return self.quantized.run(images, self.executor)

    def stats(self):
        """{engine name: the device's stats} (bytes each way, runs, engine cycles...)."""
        return {dev.accelerator.name: dict(dev.stats) for dev in self.devices}

    def golden(self, images):
        """The integer golden model's logits at the devices' own parameters."""
        return self.quantized.golden(images, self.executor.params)


def offload(model, devices, *, calibration=None, precision=8):
    """The model `model` (a DigitsViT, or a QuantizedViT already calibrated) on `devices`
    (a Device or a list of them). A float model is quantized first, its scales calibrated
    on `calibration` (B x 8 x 8 images; default: the first CALIBRATION_IMAGES training
    images of the digits split) at `precision` bits for its linear layers."""
    if not isinstance(model, QuantizedViT):
        from ..golden.digits_vit import DigitsViT, digits_dataset
        if not isinstance(model, DigitsViT):
            raise SettingError(f"model must be a golden.digits_vit.DigitsViT or a "
                               f"celine.models.QuantizedViT, not {type(model).__name__}")
        if calibration is None:
            calibration = digits_dataset().train_images[:CALIBRATION_IMAGES]
        model = quantize_model(model, torch.as_tensor(calibration, dtype=torch.float32),
                               precision=precision)
    elif calibration is not None:
        raise SettingError("calibration must be None for a model already quantized")
    if not isinstance(devices, (list, tuple)):
        devices = [devices]
    return OffloadedViT(model, devices)
