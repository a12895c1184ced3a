"""Stage 00_data as a library function: what it reads back from a generated world, and how it stops on a profile
that lacks its data."""
import pytest

from bitlens import config, io
from bitlens.labels import MISSING_LABEL
from bitlens.stages import data
from conftest import ROOT

WORLD = {"seed": 3, "image_size": 32, "n_train": 14, "n_val": 6, "n_broden": 10, "broden_mask_size": 16,
         "max_objects": 3}


class _Stage:
    """The part of bitlens.stage.Stage that stage modules use, writing into a temporary folder."""

    def __init__(self, params, folder):
        self.params, self.root, self.dir = params, ROOT, folder
        self.tables, self.figures, self.metrics, self.seconds = {}, {}, None, {}

    def path(self, value):
        return config.resolve_path(value, self.root)

    def record_seconds(self, what, seconds):
        self.seconds[what] = seconds

    def save_table(self, df, name, caption=None, floatfmt=".4f", report=False):
        self.tables[name] = (df.copy(), caption)

    def save_figure(self, fig, name, dpi=110, caption=None):
        self.figures[name] = caption

    def write_metrics(self, metrics):
        self.metrics = metrics


def _params(world, **more):
    w = str(world)
    return config.load_params("tiny", {
        **{f"data.shapes.{k}": v for k, v in WORLD.items()}, "data.shapes.root": w, "data.coco.root": f"{w}/coco",
        "data.broden.root": f"{w}/broden", "ibc.experiments.shapes.backbone_weights": f"{w}/pretrained/w.pt",
        **{f"data.imagelists.{n}.{k}": f"{w}/{v}" for n, pre in (("shapes", ""), ("shapes_imagenet", "imagenet_"))
           for k, v in (("root", "images"), ("train", f"lists/{pre}train.txt"), ("test", f"lists/{pre}test.txt"),
                        ("database", f"lists/{pre}database.txt"))}, **more}, root=ROOT)


def test_the_data_stage_builds_the_world_and_reads_every_dataset_back(tmp_path):
    stage = _Stage(_params(tmp_path / "world"), tmp_path)
    out = data.run(stage)
    table, caption = stage.tables["data_sizes"]
    assert caption == data.SIZES_CAPTION and out.tables["data_sizes"] is not None
    rows = {(r["dataset"], r["part"]): r for r in table.to_dict("records")}
    assert rows[("coco", "train2017")]["images"] == 14 and rows[("shapes", "test")]["images"] == 6
    assert rows[("shapes", "train")]["attributes"] == 18 and rows[("shapes_imagenet", "train")]["attributes"] == 0
    assert rows[("broden", "all")]["images"] == 10
    assert rows[("coco", "train2017")]["classes"] == ""  # a count a dataset does not have is blank, not NaN
    assert set(stage.figures) == {"gallery", "broden_sample"} and "generate_world" in stage.seconds
    assert stage.metrics["world"]["arguments"] == WORLD and stage.metrics["sizes"]["shapes_train"] == 14


def test_missing_labels_are_counted_with_the_release_marker(tmp_path):
    stage = _Stage(_params(tmp_path / "world"), tmp_path)
    data.run(stage)
    lst = tmp_path / "world" / "lists" / "imagenet_train.txt"
    lines = lst.read_text().splitlines()
    io.write_text(lst, "\n".join([lines[0].rsplit(" ", 1)[0] + f" {MISSING_LABEL}", *lines[1:]]) + "\n")
    _, table, *_ = data.read_datasets(stage)
    row = table[(table["dataset"] == "shapes_imagenet") & (table["part"] == "train")].iloc[0]
    assert row["missing labels"] == 1


def test_a_profile_without_its_data_stops_with_every_missing_path_and_how_to_get_it(tmp_path):
    params = _params(tmp_path / "absent", **{"data.shapes.generate": False})
    want = r"(?s)lacks 11 data path\(s\).*data.coco.root: .*absent/coco\n      get it: COCO 2017"
    with pytest.raises(FileNotFoundError, match=want):
        data.check_paths(params, ROOT)
