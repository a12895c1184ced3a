"""Stage 23_bit_browser: the interactive bit browser over the first dissected experiment (its labels, top images,
GRM, the packed codes 22_ibc_eval wrote), and static snapshots of its most interpretable bits."""
from __future__ import annotations

import json

from bitlens import codes
from bitlens.data.attributes import resolve_names
from bitlens.data.broden import Broden
from bitlens.data.imagelist import read_list
from bitlens.dissect.activations import open_activations
from bitlens.ibc.model import load_ibc_checkpoint
from bitlens.stage import Section
from bitlens.stages import ibc_params
from bitlens.widgets import BitBrowser

TOP_N = 6  # top images per bit in the browser
SNAPSHOTS = 4  # the most interpretable bits saved as static panels


def experiment(stage) -> str:
    """The experiment the browser shows: the first one 21_ibc_dissect dissected."""
    return next(iter(stage.read_metrics("21_ibc_dissect")["experiments"]))


def build(stage) -> BitBrowser:
    """The browser of `experiment(stage)`: dissection labels and activations, the trained GRM, the packed test
    codes of 22_ibc_eval with their labels and attributes, and the test images."""
    P = stage.params
    dis, ev, tr = stage.input("21_ibc_dissect"), stage.input("22_ibc_eval"), stage.input("20_ibc_train")
    name = experiment(stage)
    exp = P["ibc"]["experiments"][name]
    ds = P["data"]["imagelists"][exp["dataset"]]
    units = json.loads((dis / name / "units.json").read_text())
    model = load_ibc_checkpoint(tr / stage.read_metrics("20_ibc_train")["experiments"][name]["checkpoint"],
                                exp["crop"])
    packed = codes.load_packed(ev / f"{name}_codes.packed.npz")
    lab = codes.load_codes(ev / f"{name}_codes.npz")["lab"]
    test = read_list(stage.path(ds["test"]), ds["format"], ds["num_attributes"])
    world = ibc_params.generated_world(P, stage.root) or {}  # only a generated world names the classes
    return BitBrowser(units, Broden(stage.path(P["data"]["broden"]["root"])), open_activations(dis / name / "cache"),
                      model.GRM.detach().numpy(), world.get("class_names"), codes.unpack(packed.planes[0], packed.m),
                      lab[:, 0], lab[:, 1:], resolve_names(ds["attribute_names"]) or world.get("attribute_names"),
                      [stage.path(ds["root"]) / p for p in test.paths], top_n=TOP_N)


def run(stage, browser: BitBrowser) -> Section:
    """Static snapshots of the `SNAPSHOTS` most interpretable bits (figures: name → PNG path) and the metrics."""
    out = Section()
    for u in sorted(browser.units, key=lambda u: -u["score"])[:SNAPSHOTS]:
        path = browser.snapshot(u["unit"], stage.dir / f"bit_{u['unit']:03d}.png")
        out.figures[path.name] = path
    out.metrics = {"experiment": experiment(stage), "bits": len(browser.units), "static": list(out.figures),
                   "concepts": len(browser.concepts())}
    stage.write_metrics(out.metrics)
    return out
