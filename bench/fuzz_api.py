"""A longer schemathesis run against our own /openapi.json than `make test` affords.

Starts one real server (tests/api_fuzzing.py: the embedded models, Stripe against the fake Stripe
API, an unthrottled key), runs the pinned `st` CLI's examples, coverage and fuzzing phases with
`--max-examples` per operation, and prints one JSON line: operations, cases, 5xx responses, error
responses outside the envelope, failed conformance checks, transport errors, seconds, and the count
of each status. Each problem found is printed to stderr (operation, status, request, body).

    python bench/fuzz_api.py --max-examples 200
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.api_fuzzing import CHECKS, EXCLUDED, fuzz, fuzz_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--max-examples", type=int, default=200, help="generated cases per operation and phase"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-time", type=float, default=None, help="seconds; fuzzing repeats until spent")
    parser.add_argument("--phases", default="examples,coverage,fuzzing")
    parser.add_argument(
        "--checks", default=",".join(CHECKS), help="schemathesis checks ('all' for every one)"
    )
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="batchin-fuzz-") as tmp,
        fuzz_server(Path(tmp) / "data") as server,
    ):
        report = fuzz(
            server,
            Path(tmp) / "report",
            max_examples=args.max_examples,
            phases=tuple(args.phases.split(",")),
            workers=args.workers,
            seed=args.seed,
            max_time=args.max_time,
            checks=tuple(args.checks.split(",")),
        )
    for problem in [*report.problems(), *report.fuzzer_errors]:
        print(json.dumps(problem.__dict__), file=sys.stderr)
    print(
        json.dumps(
            {
                "bench": "fuzz_api",
                "max_examples": args.max_examples,
                "checks": args.checks,
                "excluded": sorted(EXCLUDED),
                **report.figures(),
            }
        )
    )


if __name__ == "__main__":
    main()
