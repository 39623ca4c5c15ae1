"""The host runtime without Amaranth and torch: a board-only host needs neither.

A subprocess blocks both (sys.modules[name] = None makes `import name` fail), imports the
runtime and talks to a device through a transport that replays bytes recorded beforehand
from the golden shell model."""

import json
import subprocess
import sys

from celine.engines.mac.spec import MacArrayParams
from celine.firmware.device import Device
from celine.firmware.transport import LoopbackTransport
from celine.golden.shell import shell_model

BLOCKED = ("torch", "amaranth", "cocotb")

HOST = r'''
import json, sys
for name in %(blocked)r:
    sys.modules[name] = None
import celine.firmware.device, celine.firmware.protocol, celine.firmware.transport
import celine.firmware.errors, celine.firmware.words, celine.firmware.tensors
from celine.firmware.device import Device
from celine.firmware.transport import Transport

script = json.load(sys.stdin)

class Replay(Transport):
    """Checks each request against the recording and answers with the recorded reply."""
    def __init__(self):
        self.steps, self.out, self.time = list(script), bytearray(), 0.0
    def write(self, data):
        want, reply = self.steps.pop(0)
        assert bytes(data).hex() == want, (bytes(data).hex(), want)
        self.out += bytes.fromhex(reply)
    def read(self, n, timeout):
        data, self.out[:n] = bytes(self.out[:n]), b""
        return data
    def reset_input(self):
        self.out.clear()
    def now(self):
        return self.time
    def pause(self, seconds):
        self.time += seconds

dev = Device.open("sim", transport=Replay())
report = dev.status()
dev.write_buffer("act", 0, bytes(range(40)))
data = dev.read_buffer("act", 0, 40)
dev.configure(depth=1, tiles=1, precision=8)
done = dev.run()
dev.close()
loaded = sorted(m for m in sys.modules if m.split(".")[0] in %(blocked)r
                and sys.modules[m] is not None)
print(json.dumps({"engine": dev.accelerator.name, "busy": report.busy, "data": data.hex(),
                  "result_words": done.result_words, "loaded": loaded}))
'''


class Recorder(LoopbackTransport):
    """Records (request, reply) byte pairs; replies all come back at once (no run time)."""

    def __init__(self, model):
        super().__init__(model)
        self.script = []

    def write(self, data):
        before = len(self._received)
        super().write(data)
        self.script.append([bytes(data).hex(), bytes(self._received[before:]).hex()])


def record():
    transport = Recorder(shell_model("mac", MacArrayParams(rows=2, cols=2), max_payload=32))
    dev = Device.open("sim", transport=transport)
    dev.status()
    dev.write_buffer("act", 0, bytes(range(40)))
    assert dev.read_buffer("act", 0, 40) == bytes(range(40))
    dev.configure(depth=1, tiles=1, precision=8)
    dev.run()
    return transport.script


def test_runtime_works_without_amaranth_and_torch():
    script = record()
    done = subprocess.run([sys.executable, "-c", HOST % {"blocked": BLOCKED}],
                          input=json.dumps(script), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out == {"engine": "mac", "busy": False, "data": bytes(range(40)).hex(),
                   "result_words": MacArrayParams(rows=2, cols=2).tile_rows(8), "loaded": []}


def test_the_blocking_works():
    done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['torch'] = None\n"
                           "import celine.engines.mac.host"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "import of torch halted" in done.stderr
