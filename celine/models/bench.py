"""`celine bench --only model`: every model variant on the engines, into build/bench/model.json.

For each variant (celine.models.variants): the whole test split (360 images; 40 with
--quick) through the golden devices (`Device.open("model")`: the shell's golden model
around each engine, bit-exact with the RTL and fast) against the float and the integer
models, and RTL_IMAGES test images (1 with --quick) through the RTL under Verilator
(`Device.open("sim")`; --no-synth does not skip it: it is simulation, not synthesis).
The entry of a variant:
{"name", "attention", "weights", "precision", "params", "acc_float", "acc_int",
"acc_hw", "hw_equals_int", "images", "cycles_per_image", "link_bytes_per_image",
"est_ms_per_image_ulx3s", ..., "rtl": {"images", "hw_equals_int", "seconds"}}; the figures
are run.evaluate's (docs/models.md).
"""

import json
import sys
import time

from ..sim.emit import write_if_changed
from .run import evaluate
from .variants import VARIANTS

__all__ = ["run", "RTL_IMAGES"]

RTL_IMAGES = 2


def log(message):
    print(f"[bench model] {message}", file=sys.stderr, flush=True)


def run(out, *, quick=False, fpga=True):
    images = 40 if quick else 360
    rtl_images = 1 if quick else RTL_IMAGES
    variants = []
    for name in VARIANTS:
        start = time.monotonic()
        entry = evaluate(name, "model", images=images, progress=False)
        log(f"{name}: float {entry['acc_float']:.2%}, integer {entry['acc_int']:.2%}, device "
            f"{entry['acc_hw']:.2%} on {images} images; {entry['images_equal']} bit-equal; "
            f"{entry['link_bytes_per_image']} link bytes, {entry['cycles_per_image']} cycles "
            f"an image ({time.monotonic() - start:.0f} s)")
        rtl = evaluate(name, "sim", images=rtl_images, progress=False)
        entry["rtl"] = {"images": rtl["images"], "hw_equals_int": rtl["hw_equals_int"],
                        "cycles_per_image": rtl["cycles_per_image"],
                        "link_bytes_per_image": rtl["link_bytes_per_image"],
                        "seconds": rtl["seconds"]}
        entry["hw_equals_int"] = entry["hw_equals_int"] and rtl["hw_equals_int"]
        log(f"{name}: {rtl_images} images through the RTL, bit-equal: {rtl['hw_equals_int']} "
            f"({rtl['seconds']:.0f} s)")
        variants.append(entry)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "model.json"
    write_if_changed(path, json.dumps({"variants": variants}, indent=2) + "\n")
    log(f"wrote {path}")
    return variants
