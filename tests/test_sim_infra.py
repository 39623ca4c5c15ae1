"""The cocotb harness: SkidBuffer's Verilog on the selected simulator, and toolchain errors."""

import os
import subprocess
import sys

import pytest

from celine.rtl.common.skid import SkidBuffer
from celine.sim.runner import run_cocotb
from celine.sim.tb.skid_tb import frame_layout
from celine.sim.toolchain import ToolchainError, selected_simulator, simulator_environment


def run_skid(request, *, lanes, width, seed, idle_prob, backpressure_prob, beats=300,
             registered_output=True):
    through = "" if registered_output else "_through"
    run_cocotb(SkidBuffer(frame_layout(lanes, width), registered_output=registered_output),
               toplevel=f"skid_{lanes}x{width}{through}",
               test_module="celine.sim.tb.skid_tb", case_id=request.node.nodeid,
               params={"lanes": lanes, "width": width, "registered_output": registered_output},
               seed=seed,
               data={"beats": beats, "idle_prob": idle_prob,
                     "backpressure_prob": backpressure_prob})


@pytest.mark.cocotb
def test_skid_buffer_verilog(request):
    run_skid(request, lanes=4, width=8, seed=1, idle_prob=0.3, backpressure_prob=0.5)


@pytest.mark.cocotb
@pytest.mark.parametrize("idle_prob,backpressure_prob", [(0.3, 0.5), (0.0, 0.9)])
def test_skid_buffer_with_output_passing_through_verilog(request, idle_prob,
                                                         backpressure_prob):
    """registered_output=False: every beat in order under random idle cycles and
    backpressure, and a beat a cycle when nothing stalls (the throughput case)."""
    run_skid(request, lanes=3, width=5, seed=4, idle_prob=idle_prob,
             backpressure_prob=backpressure_prob, registered_output=False)


@pytest.mark.cocotb
@pytest.mark.sweep
@pytest.mark.parametrize("seed", [2, 3])
@pytest.mark.parametrize("lanes,width", [(4, 8), (3, 5), (16, 8)])
@pytest.mark.parametrize("idle_prob,backpressure_prob", [(0.0, 0.0), (0.7, 0.2), (0.1, 0.8)])
def test_skid_buffer_verilog_sweep(request, lanes, width, seed, idle_prob, backpressure_prob):
    run_skid(request, lanes=lanes, width=width, seed=seed, idle_prob=idle_prob,
             backpressure_prob=backpressure_prob)


def test_verilator_opt_goes_to_the_compiler(monkeypatch):
    from celine.sim import runner
    monkeypatch.delenv("CELINE_VERILATOR_OPT", raising=False)
    assert runner._verilator_opt(optimize=True) == []            # Verilator's own -Os
    assert runner._verilator_opt(optimize=False) == ["-CFLAGS", "-O0"]
    monkeypatch.setenv("CELINE_VERILATOR_OPT", " -O2 ")
    assert runner._verilator_opt(optimize=True) == ["-CFLAGS", "-O2"]
    assert runner._verilator_opt(optimize=False) == ["-CFLAGS", "-O2"]


def test_unknown_simulator_is_one_line(monkeypatch):
    monkeypatch.setenv("CELINE_SIM", "modelsim")
    with pytest.raises(ToolchainError,
                       match=r"^CELINE_SIM must be one of 'verilator', 'icarus', not 'modelsim'$"):
        selected_simulator()


def test_missing_iverilog_is_one_line(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))   # nothing to find there
    with pytest.raises(ToolchainError,
                       match=r"^SIM=icarus needs the program 'iverilog', which is not installed "
                             r"\(Debian: apt-get install iverilog\)$"):
        simulator_environment("icarus", base=env)


def test_pytest_reports_missing_simulator_in_one_line(tmp_path):
    """Under pytest, a missing simulator is one short failure, not a traceback."""
    test_file = tmp_path / "test_needs_icarus.py"
    test_file.write_text(
        "from celine.rtl.common.skid import SkidBuffer\n"
        "from celine.sim.runner import run_cocotb\n"
        "def test_it():\n"
        "    run_cocotb(SkidBuffer(8), test_module='celine.sim.tb.skid_tb', case_id='x', sim='icarus')\n")
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                           if not os.path.exists(os.path.join(p, "iverilog")))
    env = dict(os.environ, PATH=path, CELINE_BUILD_DIR=str(tmp_path / "build"))
    env.pop("PYTEST_XDIST_WORKER", None)
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "-p", "no:xdist", str(test_file)],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert ("SIM=icarus needs the program 'iverilog', which is not installed "
            "(Debian: apt-get install iverilog)") in result.stdout
    assert "Traceback" not in result.stdout


def test_icarus_copy_wakes_combinational_blocks_at_start(tmp_path):
    from celine.sim.runner import icarus_verilog
    source = tmp_path / "top.v"
    source.write_text("module top;\n  reg \\$auto$verilog_backend.cc:2355:dump_module$3  = 0;\n"
                      "  always @* begin\n    if (\\$auto$verilog_backend.cc:2355:dump_module$3 )"
                      " begin end\n  end\nendmodule\n")
    patched = icarus_verilog(source).read_text()
    assert "  initial #1 \\$auto$verilog_backend.cc:2355:dump_module$3 = 1'h1;\n" in patched
    assert patched.replace("  initial #1 \\$auto$verilog_backend.cc:2355:dump_module$3 = 1'h1;\n",
                           "") == source.read_text()
