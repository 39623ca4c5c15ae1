"""The `celine` command: output files, and one-line errors with exit status 2."""

import json
import subprocess
import sys

import pytest

from celine.gen.cli import main


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "celine.gen.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_verilog_writes_verilog_and_resolved_params(tmp_path, capsys):
    assert main(["verilog", "mac", "rows=2", "cols=3", "precisions=4,8", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "celine_mac.v").read_text()
    assert "module celine_mac" in text
    resolved = json.loads((tmp_path / "celine_mac.json").read_text())
    assert resolved["params"]["rows"] == 2 and resolved["params"]["precisions"] == [4, 8]
    assert resolved["params"]["act_lanes"] == 4
    mtime = (tmp_path / "celine_mac.v").stat().st_mtime_ns
    assert main(["verilog", "mac", "rows=2", "cols=3", "precisions=4,8", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "celine_mac.v").stat().st_mtime_ns == mtime     # unchanged, not rewritten
    assert "unchanged" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["verilog", "mac", "rows=0"], "celine: error: rows must be between 1 and 64, not 0"),
    (["verilog", "mac", "impl=lut"], "celine: error: impl must be 'bricks' or 'dsp', not 'lut'"),
    (["verilog", "mac", "rows"], "celine: error: parameters must be written key=value, not 'rows'"),
    (["params", "mac", "depth=3"], "celine: error: unknown parameter 'depth' (known: rows, cols, "
     "brick_width, precisions, impl, max_reduction, acc_width, rps_precisions, lfsr_seed)"),
    (["params", "vitcod"], "celine: error: accelerator must be one of mac, taylor, not 'vitcod'"),
    (["frobnicate"], "celine: error: argument command: invalid choice: 'frobnicate' "
     "(choose from 'list', 'verilog', 'params', 'bench', 'bitstream', 'report')"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [message]
