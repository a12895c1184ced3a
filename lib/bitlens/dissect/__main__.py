"""`python -m bitlens.dissect`: dissect one IBC checkpoint (or any model file the IBC loader reads) on a Broden
folder; the rules are those of `bitlens.dissect`."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import bitlens.dissect as rules
from bitlens.data.broden import Broden
from bitlens.dissect.activations import CACHE_DTYPES, PREPROCESS
from bitlens.dissect.run import dissect


def build_parser() -> argparse.ArgumentParser:
    from bitlens import cli

    ap = cli.parser("python -m bitlens.dissect", rules.__doc__)
    ap.add_argument("--checkpoint", required=True, help="IBC checkpoint {'state_dict': ...} (ours or the authors')")
    ap.add_argument("--broden", required=True, help="Broden folder (index.csv, label.csv, category.csv, images/)")
    ap.add_argument("--out", required=True, help="output folder for tally.csv, units.json, summary.json, cache/")
    ap.add_argument("--layer", default="conv_last", help="module name; conv_last = the IBC bits")
    from bitlens.schema.dissect import DISSECT

    def ranged(key, flag):  # the params schema's ranges
        return cli.ranged(DISSECT[key], flag, f"dissect.{key}")

    ap.add_argument("--threshold", type=ranged("iou_threshold", "--threshold"), default=0.04,
                    help="IoU for an interpretable unit (as NetDissect-Lite; IBC fork: 0.01)")
    ap.add_argument("--quantile", type=ranged("quantile", "--quantile"), default=0.005,
                    help="top activation quantile that sets each unit's threshold")
    ap.add_argument("--input-size", type=int, default=0,
                    help="model input size (0 = from the checkpoint: 227 for AlexNet, 64 for the small backbone)")
    ap.add_argument("--batch-size", type=ranged("batch_size", "--batch-size"), default=64, help="images per batch")
    ap.add_argument("--preprocess", choices=PREPROCESS, default="caffe",
                    help="caffe: the fork's mean/255×0.224; torchvision: per-channel mean/std")
    ap.add_argument("--no-reference", action="store_true",
                    help="keep images without labels and use the simple per-category area instead of the fork's rules")
    ap.add_argument("--cache-dtype", choices=tuple(CACHE_DTYPES), default="float16",
                    help="activation cache precision (the fork keeps float64)")
    ap.add_argument("--threads", type=ranged("threads", "--threads"), default=0,
                    help="torch threads in the tally (0 = half the cores, at least 1)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="torch device")
    return ap


def main(argv=None) -> int:
    from bitlens.ibc.model import infer_architecture, load_ibc_checkpoint

    args = build_parser().parse_args(argv)
    try:
        arch = infer_architecture(args.checkpoint)
        size = args.input_size or arch.get("input_size") or (227 if arch["backbone"] == "alexnet" else 64)
        model = load_ibc_checkpoint(args.checkpoint, size)
        res = dissect(model, Broden(args.broden), args.out, args.layer, size, args.quantile, args.threshold,
                      batch_size=args.batch_size, device=args.device, reference=not args.no_reference,
                      preprocess=args.preprocess, cache_dtype=args.cache_dtype, threads=args.threads)
    except (FileNotFoundError, ValueError) as e:
        print(f"python -m bitlens.dissect: error: {e}", file=sys.stderr)
        return 2
    print(res["summary"]["headline"])
    print(f"tally: {Path(args.out) / 'tally.csv'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
