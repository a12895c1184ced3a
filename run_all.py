#!/usr/bin/env python
"""Regenerate every table and figure of a profile: `python run_all.py [--profile tiny]`.

A stage runs when what it depends on changed since it last finished (the params
keys it reads, its notebook's code cells, the library, its upstream stages'
outputs) or its own outputs changed; otherwise it is skipped. Ctrl-C stops the
running stage, leaves it unfinished and exits with status 130; SIGTERM does the
same and exits with 143. Thin CLI over `bitlens.pipeline`.
"""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "lib"))  # works before `pip install -e .` too

from bitlens import cli, config, preflight  # noqa: E402
from bitlens.pipeline import (Pipeline, StageFailed, StageInterrupted, Terminated,  # noqa: E402
                              describe_os_error, summary_table)


def parser() -> argparse.ArgumentParser:
    ap = cli.parser("python run_all.py", __doc__)
    ap.add_argument("--profile", default="tiny",
                    help="params/<profile>.yaml (tiny, paper, released) or the path of a profile YAML")
    ap.add_argument("--only", action="append", metavar="STAGE", default=None,
                    help="run only this stage (repeatable); cannot be combined with --from")
    ap.add_argument("--from", dest="start", metavar="STAGE", default=None,
                    help="run this stage and every later one; cannot be combined with --only")
    ap.add_argument("--force", action="store_true", default=False,
                    help="re-run the selected stages from scratch even if up to date (training starts afresh)")
    ap.add_argument("--list", action="store_true", default=False,
                    help="list the profile's stages and whether each is up to date, then exit")
    ap.add_argument("--check", action="store_true", default=False,
                    help="check every input the profile needs (present, readable, downloadable, disk space) and "
                         "list each problem, then exit: 0 all present, 2 otherwise; writes nothing")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a params value, e.g. --set bebr.train.epochs=3 (repeatable)")
    ap.add_argument("--results", metavar="DIR", default="results",
                    help="results folder; the profile gets a subfolder")
    return ap


def main(argv=None) -> int:
    ap = parser()
    args = ap.parse_args(argv)
    if args.only and args.start:
        ap.error(f"--only and --from contradict each other (--only {' --only '.join(args.only)} --from {args.start}); "
                 "give one of them")
    pipe = None

    # SIGTERM (a scheduler's time limit, `kill`) ends the run as Ctrl-C does: one line naming the stage, nothing
    # marked complete that did not finish, exit 143 (128 + 15)
    def on_sigterm(signum, frame):
        if pipe is not None:
            pipe.terminate()
        raise Terminated()

    try:
        before = signal.signal(signal.SIGTERM, on_sigterm)
    except ValueError:  # not the main thread (an embedding program): its own handling stays
        before = None
    try:
        overrides = config.parse_set(args.set)
        pipe = Pipeline(profile=args.profile, overrides=overrides, results=args.results)
        if args.check:
            specs = pipe.select(args.only, args.start)
            problems = pipe.check_inputs(specs)
            if problems:
                print(preflight.report(problems, pipe.profile), file=sys.stderr)
                return 2
            print(f"profile '{pipe.profile}': every input of {len(specs)} stage(s) is present and readable; about "
                  f"{preflight.estimated_gib(pipe.params, pipe.root, specs):.1f} GiB will be written under "
                  f"{pipe.results_dir}")
            return 0
        if args.list:
            for spec, _fp, fresh in pipe.plan():
                state = "up to date" if fresh else "outputs changed" if pipe.outputs_changed(spec.name) else "to run"
                print(f"{spec.name:<20} {state:<15} {spec.title}")
            return 0
        results = pipe.run(only=args.only, start=args.start, force=args.force)
    except preflight.InputProblems as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except (config.ParamsError, KeyError) as e:
        print(f"error: {e.args[0] if e.args else e}", file=sys.stderr)
        return 2
    except StageInterrupted as e:
        print(f"\n{e}", file=sys.stderr)
        return 143 if e.terminated else 130
    except KeyboardInterrupt as e:
        how = "terminated (SIGTERM)" if isinstance(e, Terminated) else "interrupted"
        print(f"\n{how} outside a stage; every stage marked complete had finished. Run the same command "
              "again to continue.", file=sys.stderr)
        return 143 if isinstance(e, Terminated) else 130
    except StageFailed as e:
        print(f"\nerror: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # a full disk, a folder that became read-only during the run
        print(f"\nerror: {describe_os_error(e)}", file=sys.stderr)
        return 1
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)
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
