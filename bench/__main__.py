"""``python -m bench [name ...]``: run the named benchmarks (all by default), print one table."""

from __future__ import annotations

import sys

from bench import Row, available, format_table, load


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = sorted(set(names) - set(available()))
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; have: {', '.join(available())}")
        return 2
    rows: list[Row] = []
    for name in names:
        print(f"== bench {name}", flush=True)
        rows.extend(load(name)())
    print()
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
