#!/usr/bin/env python
"""Regenerate every table and figure of a profile: `python run_all.py [--profile tiny]`.

Thin CLI over `bitlens.pipeline`; `python run_all.py --help` lists the options.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))  # works before `pip install -e .` too

from bitlens import config  # noqa: E402
from bitlens.pipeline import Pipeline, StageFailed, summary_table  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="tiny", help="params/<profile>.yaml (tiny, paper, released) or a YAML path")
    ap.add_argument("--only", action="append", metavar="STAGE", help="run only this stage (repeatable)")
    ap.add_argument("--from", dest="start", metavar="STAGE", help="run this stage and every later one")
    ap.add_argument("--force", action="store_true", help="re-run stages even if they are up to date")
    ap.add_argument("--list", action="store_true", help="list the profile's stages and whether each is up to date")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a params value, e.g. --set bebr.train.epochs=3 (repeatable)")
    ap.add_argument("--results", metavar="DIR", help="results folder (default: results/); the profile gets a subfolder")
    args = ap.parse_args(argv)
    try:
        overrides = config.parse_set(args.set)
        pipe = Pipeline(profile=args.profile, overrides=overrides, results=args.results)
        if args.list:
            for spec, _fp, fresh in pipe.plan():
                print(f"{spec.name:<20} {'up to date' if fresh else 'to run':<11} {spec.title}")
            return 0
        results = pipe.run(only=args.only, start=args.start, force=args.force)
    except (config.ParamsError, KeyError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    except StageFailed as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 1
    print("\n" + summary_table(results))
    headline = pipe.results_dir / "90_report" / "headline.md"
    if headline.exists():
        print("\n" + headline.read_text())
    report = pipe.results_dir / "report.html"
    if report.exists():
        print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
