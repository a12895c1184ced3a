"""`python -m bitlens.replica OUT_DIR [--seed N] [--print-overrides paper|released]`."""
from __future__ import annotations

import argparse
import sys

from bitlens import replica


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bitlens.replica", description=replica.__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", metavar="OUT_DIR", help="folder to write the replica into (e.g. data/replica)")
    ap.add_argument("--seed", type=int, default=0, help="seed of every random value (same seed → same files)")
    ap.add_argument("--print-overrides", choices=["paper", "released"], default=None,
                    help="after writing, print the rehearsal's --set items for this profile, one a line")
    args = ap.parse_args(argv)
    try:
        replica.write_replica(args.out, args.seed, log=lambda s: print(s, file=sys.stderr))
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.print_overrides:
        sets = (replica.paper_overrides if args.print_overrides == "paper" else replica.released_overrides)(args.out)
        print("\n".join(f"--set={s}" for s in sets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
