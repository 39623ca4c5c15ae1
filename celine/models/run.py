"""`celine run MODEL`: a variant's test images through devices, against its integer model.

evaluate() classifies test images three ways: the float model, the integer golden model
(at the devices' own engine parameters) and the devices (celine.models.offload), and
reports accuracy, how many images' logits the devices computed bit for bit like the
integer model, and the time per image: engine cycles and bytes on the link as the devices
counted them, and the estimate on a ULX3S-85F at each engine's board clock (the link at
the board's baud rate, 8N1, plus compute; line time only, USB latency not counted).
"""

import time

import torch

from ..firmware.errors import SettingError
from ..golden.digits_vit import digits_dataset, one_thread
from .integer import CALIBRATION_IMAGES, FloatOps, forward
from .offload import offload, open_devices
from .variants import get

__all__ = ["evaluate", "estimate_ulx3s", "BATCH", "BOARD"]

BATCH = 10                 # images a device call carries at once (progress every batch)
BOARD = "ulx3s-85f"        # the board the time per image is estimated for


def estimate_ulx3s(devices, stats, images):
    """Seconds per image on BOARD: each engine's link bytes at the board's baud at the
    engine's board clock, plus its cycles at that clock, summed over the engines (the host
    calls them one after the other)."""
    from ..boards.baud import default_baud
    from ..boards.designs import get_design
    from ..boards.platforms import get_board
    board = get_board(BOARD)
    link = compute = 0.0
    for dev in devices:
        name = dev.accelerator.name
        clock_hz = get_design(name).clock_hz
        baud = default_baud(clock_hz, board.max_baud)
        s = stats[name]
        link += (s["bytes_sent"] + s["bytes_received"]) * 10 / baud / images
        compute += s["cycles"] / clock_hz / images
    return link, compute


def _ports(target):
    """The serial ports of a `target` that is not "model" or "sim" ("/dev/ttyUSB0,
    /dev/ttyUSB1"); SettingError if it names none."""
    ports = [port for port in target.split(",") if port]
    if not ports:
        raise SettingError(f"device must be 'model', 'sim' or serial ports, not {target!r}")
    return ports


def _open(target):
    """Devices for `target`: "model" and "sim" are opened per engine later; a serial port
    list ("/dev/ttyUSB0,/dev/ttyUSB1") now."""
    from ..firmware.device import Device
    ports = _ports(target)
    devices = []
    try:
        for port in ports:
            devices.append(Device.open(port))
    except BaseException:
        for dev in devices:
            dev.close()
        raise
    return devices


def _delta(after, before):
    return {name: {key: value - before[name][key] for key, value in stats.items()}
            for name, stats in after.items()}


def evaluate(name, target="model", *, images=20, first=0, progress=True):
    """The figures of variant `name` on `target` ("model", "sim" or serial ports) for test
    images first..first+images-1 (a dict; see the module docstring)."""
    variant = get(name)
    data = digits_dataset()
    tests = len(data.test_labels)
    if isinstance(images, bool) or not isinstance(images, int) or not 1 <= images <= tests:
        raise SettingError(f"images must be between 1 and {tests}, not {images!r}")
    if isinstance(first, bool) or not isinstance(first, int) or \
            not 0 <= first <= tests - images:
        raise SettingError(f"first must be between 0 and {tests - images} for {images} "
                           f"images, not {first!r}")
    if target not in ("model", "sim"):
        _ports(target)                 # a bad target says so before minutes of training
    model, record = variant.trained(progress=progress)
    pick = slice(first, first + images)
    x, labels = data.test_images[pick], data.test_labels[pick]
    with one_thread():
        quantized = variant.quantize(data.train_images[:CALIBRATION_IMAGES],
                                     progress=progress)
        devices = open_devices(quantized, target) if target in ("model", "sim") \
            else _open(target)
        try:
            hw = offload(quantized, devices)
            before = hw.stats()
            start = time.perf_counter()
            got, want = [], []
            for at in range(0, images, BATCH):
                batch = x[at:at + BATCH]
                got.append(hw(batch))
                want.append(hw.golden(batch))
                if progress:
                    done = at + len(batch)
                    equal = sum(torch.equal(g, w) for g, w in zip(torch.cat(got), torch.cat(want)))
                    print(f"{name}: {done}/{images} images, {equal} bit-equal to the integer "
                          f"model ({time.perf_counter() - start:.0f} s)", flush=True)
            stats = _delta(hw.stats(), before)
            link_s, compute_s = estimate_ulx3s(devices, stats, images)
        finally:
            for dev in devices:
                dev.close()
        got, want = torch.cat(got), torch.cat(want)
        with torch.no_grad():      # the float model, its Q/K auto-encoders included
            floats = forward(quantized.model, x, FloatOps(quantized.float_autoencoders))

    def acc(logits):
        return round(float((logits.argmax(-1) == labels).float().mean()), 4)

    equal = [bool(torch.equal(g, w)) for g, w in zip(got, want)]
    return {**variant.describe(), "device": target, "engines": sorted(stats),
            "images": images, "first": first,
            "acc_float": acc(floats), "acc_int": acc(want), "acc_hw": acc(got),
            "acc_float_all": round(record["test_accuracy"], 4),
            "hw_equals_int": all(equal), "images_equal": sum(equal),
            "cycles_per_image": round(sum(s["cycles"] for s in stats.values()) / images),
            "link_bytes_per_image": round(sum(s["bytes_sent"] + s["bytes_received"]
                                              for s in stats.values()) / images),
            "est_ms_per_image_ulx3s": round((link_s + compute_s) * 1e3, 3),
            "est_link_ms_per_image_ulx3s": round(link_s * 1e3, 3),
            "est_compute_ms_per_image_ulx3s": round(compute_s * 1e3, 4),
            "seconds": round(time.perf_counter() - start, 1)}


def format_result(result):
    """The lines `celine run` prints."""
    return [
        f"model {result['name']} ({result['attention']} attention, {result['weights']} "
        f"weights at {result['precision']} bits) on {result['device']} "
        f"({', '.join(result['engines'])}): {result['images']} test images from "
        f"#{result['first']}",
        f"accuracy: float {result['acc_float']:.2%}, integer {result['acc_int']:.2%}, "
        f"device {result['acc_hw']:.2%}",
        f"logits bit-equal to the integer model: {result['images_equal']} of "
        f"{result['images']} images",
        f"per image: {result['cycles_per_image']} engine cycles, "
        f"{result['link_bytes_per_image']} bytes on the link; on a {BOARD.upper()} about "
        f"{result['est_ms_per_image_ulx3s']:.1f} ms ({result['est_link_ms_per_image_ulx3s']:.1f}"
        f" ms link, {result['est_compute_ms_per_image_ulx3s']:.3f} ms compute)",
    ]
