"""Device.open("sim"): the shell's RTL under a cocotb simulator, in a subprocess.

The host listens on a local TCP port (127.0.0.1, a free one) and starts
``python -m celine.firmware.simulate SPEC``. That process builds the shell around the
engine (celine.rtl.shell.shell.build_shell) and runs the cocotb testbench
celine.sim.tb.serve_tb on it through celine.sim.runner.run_cocotb (Verilator unless
$CELINE_SIM says otherwise; builds are cached in build/sim/_builds, so only the first
open of a design compiles it). The testbench drives the clock and reset, connects to the
host's port and relays bytes until the host closes the connection: from the socket onto
the design's rx pin, from its tx pin to the socket (8N1 at the design's rate), through a
celine.sim.line_bridge.LineBridge, a UART of the simulation's own that takes and gives
whole windows of bytes (the bench wakes once per window, not once per bit). The host
talks through a SocketTransport; closing it ends the testbench, the simulation and the
process (which is terminated if it does not end within the transport's close_timeout).

Simulated time runs while the relay waits for the host, so the device sees the host's
pauses as idle line; the host writes each frame at once, so the inter-byte timeout holds
within frames. A simulated second takes far longer than a real one: the host's timeouts
(wall time) must be generous, and Device.open("sim") makes them so by default.

The simulated design runs at `clock_hz` (default SIM_CLOCK_HZ) and `baud` (default
clock_hz / SIM_CYCLES_PER_BIT, the fastest rate the UART takes, to keep the simulation
short); both appear in INFO like any other shell setting.
"""

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from .errors import CelineError, LinkTimeout, SettingError

__all__ = ["start_simulation", "stop", "SIM_CLOCK_HZ", "SIM_CYCLES_PER_BIT"]

SIM_CLOCK_HZ = 100_000_000
SIM_CYCLES_PER_BIT = 4
START_TIMEOUT = 600.0          # seconds for the build and the start of the simulation


def _tail(log, lines=30):
    log.flush()
    log.seek(0)
    return "\n".join(log.read().splitlines()[-lines:])


def stop(process, timeout):
    """Wait up to `timeout` seconds for `process` (started by start_simulation, in its own
    session) to end; then terminate its process group (the simulator included)."""
    try:
        process.wait(timeout)
        return
    except subprocess.TimeoutExpired:
        pass
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def shell_settings(options):
    """The shell's settings for the simulated design: `options` over the defaults."""
    shell = {"clock_hz": SIM_CLOCK_HZ, **options}
    if "baud" not in shell and isinstance(shell["clock_hz"], int):
        shell["baud"] = shell["clock_hz"] // SIM_CYCLES_PER_BIT
    return shell


def start_simulation(record, params, *, start_timeout=START_TIMEOUT, **options):
    """A SocketTransport to a simulation of the shell around `record`'s engine (with
    generator parameters `params` and shell options `options`), started in a subprocess.
    SettingError for options the shell does not take (checked here, before starting)."""
    from ..rtl.shell.shell import build_shell       # Amaranth: the simulation needs it
    from .transport import SocketTransport

    if isinstance(start_timeout, bool) or not isinstance(start_timeout, (int, float)) or \
            not 0 < start_timeout < float("inf"):
        raise SettingError(f"start_timeout must be a positive number of seconds, "
                           f"not {start_timeout!r}")
    shell = shell_settings(options)
    try:
        build_shell(accel=record.name, accel_params=params, **shell)
    except (TypeError, ValueError) as error:
        raise SettingError(str(error)) from None

    listener = socket.create_server(("127.0.0.1", 0))
    spec = {"accel": record.name, "params": params.to_dict(), "shell": shell,
            "port": listener.getsockname()[1]}
    log = tempfile.TemporaryFile(mode="w+")
    process = subprocess.Popen([sys.executable, "-m", "celine.firmware.simulate",
                                json.dumps(spec)], stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + start_timeout
    listener.settimeout(0.2)
    try:
        while True:
            try:
                connection, _ = listener.accept()
                break
            except socket.timeout:
                pass
            if process.poll() is not None:
                raise CelineError(f"the simulation ended before it connected (exit status "
                                  f"{process.returncode}); its output ends:\n{_tail(log)}")
            if time.monotonic() > deadline:
                raise LinkTimeout(f"the simulation did not connect within {start_timeout} s "
                                  f"(start_timeout); its output ends:\n{_tail(log)}")
    except BaseException:
        stop(process, 0)
        log.close()
        raise
    finally:
        listener.close()
    connection.settimeout(None)
    return SocketTransport(connection, process=process, latency=0.05, log=log)


def main(argv):
    """The subprocess: build the design and serve it until the host disconnects."""
    spec = json.loads(argv[1])
    from .. import registry
    from ..rtl.shell.shell import build_shell
    from ..sim.runner import run_cocotb

    record = registry.get(spec["accel"])
    params = record.params.from_dict(spec["params"])
    from ..sim.line_bridge import WINDOW, LineBridge
    shell = build_shell(accel=record.name, accel_params=params, **spec["shell"])
    design = LineBridge(shell, divisor=shell.divisor, window=WINDOW)
    key = hashlib.sha256(json.dumps([spec["accel"], spec["params"], spec["shell"]],
                                    sort_keys=True).encode()).hexdigest()[:12]
    run_cocotb(design, test_module="celine.sim.tb.serve_tb",
               case_id=f"serve_{record.name}_{key}_{os.getpid()}",
               toplevel=f"serve_{record.name}",
               params={"shell": {"clock_hz": spec["shell"]["clock_hz"],
                                 "baud": spec["shell"]["baud"]}, "window": WINDOW},
               data={"port": spec["port"]}, optimize=True)


if __name__ == "__main__":
    main(sys.argv)
