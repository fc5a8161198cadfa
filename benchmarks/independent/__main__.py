"""Write an independent labelled history as JSONL (see SPEC.md).

    python -m benchmarks.independent --seed 1 --out events.jsonl --labels-out labels.jsonl
        [--days 21] [--burn-in-days 7] [--teams-file teams.yaml] [--start 2025-03-03T00:00:00Z]
        [--no-positives] [--no-negatives]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

import orjson

from .generator import generate
from .teams import TeamsFileError, load_teams


def _start(s: str) -> float:
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not RFC 3339: {s!r}") from None
    return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.independent", description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, required=True, help="the history's seed (same seed, same files)")
    ap.add_argument("--days", type=float, default=21.0, help="length of the history (default 21)")
    ap.add_argument("--burn-in-days", type=float, default=7.0,
                    help="no label starts before this many days (default 7)")
    ap.add_argument("--out", required=True, help="events JSONL ('-' for stdout)")
    ap.add_argument("--labels-out", required=True, help="labelled spans JSONL")
    ap.add_argument("--teams-file", help="YAML or JSON team definitions instead of the default eight")
    ap.add_argument("--start", type=_start, help="history start (RFC 3339; default: 2025-03-03 + 0-6 days by seed)")
    ap.add_argument("--no-positives", action="store_true", help="leave out the should-alert incidents")
    ap.add_argument("--no-negatives", action="store_true",
                    help="leave out holiday, growth, migration and blips (scheduled jobs stay)")
    args = ap.parse_args(argv)
    if args.seed < 0:
        ap.error("--seed must be >= 0")
    try:
        teams = load_teams(args.teams_file) if args.teams_file else None
    except (OSError, TeamsFileError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        events, labels, meta = generate(args.seed, days=args.days, burn_in_days=args.burn_in_days, teams=teams,
                                        start=args.start, positives=not args.no_positives,
                                        negatives=not args.no_negatives)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out == "-":
        n = events.write_jsonl(sys.stdout.buffer)
    else:
        with open(args.out, "wb") as f:
            n = events.write_jsonl(f)
    with open(args.labels_out, "wb") as f:
        for lab in labels:
            f.write(orjson.dumps(lab) + b"\n")
    for t in meta["teams"]:
        print(f"{t['team']:>20}: ${t['usd_per_day']:,.2f}/day (spec ${t['usd_per_day_spec']:,.2f}), "
              f"{t['events']:,} events, {t['positives']} incident(s), {t['negatives']} negative span(s)",
              file=sys.stderr)
    print(f"history {meta['start']} .. {meta['end']}, burn-in ends {meta['burn_in_end']}; "
          f"{n:,} events ({meta['duplicates']:,} duplicates), {len(labels)} labels "
          f"({meta['positives']} should alert); {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    if meta["skipped_positives"]:
        print(f"could not place: {', '.join(meta['skipped_positives'])}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
