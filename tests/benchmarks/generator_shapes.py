"""How often generated traffic has the shapes that make state resolution work, per version.

    .venv/bin/python tests/benchmarks/generator_shapes.py [--events 100000] [--rooms 10]
        [--room-version mixed] [--seed 1]

Runs the generator (`processor.generate.iter_generate`, what `roomserver generate` writes)
and prints, per room version and in total: merges (2–3 prev events), conflicted merges (the
states after the prev events disagree on at least one key) per 1,000 events, what they
conflict on (power levels, join rules, memberships, bans, keys some states lack, other
state), three-way merges, and merges whose conflicted power events' auth chains cross (see
`processor.generate.shapes`). Also the generation time.
"""

from __future__ import annotations

import argparse
import time

from processor.generate import iter_generate
from processor.generate.shapes import ShapeCounter, Shapes

_KINDS = ("power_levels", "join_rules", "member", "ban", "partial", "other")


def _row(name: str, s: Shapes) -> str:
    kinds = " ".join(f"{s.by_kind[k]:>6}" for k in _KINDS)
    return (
        f"{name:<7} {s.events:>8} {s.outcomes['rejected']:>6} {s.outcomes['soft_failed']:>6} "
        f"{s.merges:>6} {s.merges3:>6} {s.conflicted:>6} {s.per_thousand():>7.1f} "
        f"{kinds} {s.crossing:>6}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--rooms", type=int, default=10)
    parser.add_argument("--room-version", default="mixed")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()

    counter = ShapeCounter()
    started = time.perf_counter()
    for generated in iter_generate(args.rooms, args.events, args.room_version, args.seed):
        counter.add(generated)
    seconds = time.perf_counter() - started

    print(
        f"{'version':<7} {'events':>8} {'rej':>6} {'soft':>6} {'merges':>6} {'3-way':>6} "
        f"{'confl':>6} {'/1000':>7} "
        + " ".join(f"{k:>6}" for k in ("PL", "JR", "member", "ban", "absent", "other", "cross"))
    )
    for version in sorted(counter.by_version, key=int):
        print(_row(f"v{version}", counter.by_version[version]))
    total = counter.total()
    print(_row("all", total))
    print(
        f"\n{total.conflicted} conflicted merges in {total.events} events: "
        f"{total.per_thousand():.1f} per 1,000 events "
        f"(power levels {total.per_thousand(total.by_kind['power_levels']):.1f}, "
        f"join rules {total.per_thousand(total.by_kind['join_rules']):.1f}, "
        f"memberships {total.per_thousand(total.by_kind['member']):.1f}, "
        f"bans {total.per_thousand(total.by_kind['ban']):.1f}, "
        f"crossing auth chains {total.per_thousand(total.crossing):.1f}); "
        f"generated in {seconds:.1f} s ({total.events / seconds:,.0f} events/s)"
    )


if __name__ == "__main__":
    main()
