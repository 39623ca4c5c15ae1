"""`python -m celine.formal [--out DIR] [--only TEXT]` (make formal): every proof of
celine.formal.all_proofs() (those whose name contains TEXT), one line each; the results in
DIR/formal.json; exit status 1 with the counterexample when one fails."""

import argparse
import json
import sys
from pathlib import Path

from . import ProofFailed, all_proofs, prove


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m celine.formal")
    parser.add_argument("--out", type=Path, default=Path("build/formal"))
    parser.add_argument("--only", default="", help="run the proofs whose name contains this")
    args = parser.parse_args(argv)
    chosen = [p for p in all_proofs() if args.only.lower() in f"{p.component} {p.prop}".lower()]
    if not chosen:
        print(f"celine formal: no proof matches {args.only!r}", file=sys.stderr)
        return 2
    results, failed = [], 0
    for proof in chosen:
        try:
            result = prove(proof, args.out)
        except ProofFailed as failure:
            failed += 1
            print(f"FAILED  {failure}", flush=True)
            results.append({"component": proof.component, "property": proof.prop,
                            "depth": None, "proven": False, "seconds": None})
            continue
        results.append(result)
        print(f"proven  {proof.component}: {proof.prop} (induction depth {result['depth']}, "
              f"{result['seconds']} s)", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "formal.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"{len(results) - failed} of {len(results)} proven; {args.out / 'formal.json'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
