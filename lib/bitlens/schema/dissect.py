"""`dissect:` — Network Dissection of every IBC bit."""
from bitlens.schema.fields import Field

DISSECT = {
    "enabled": Field(bool, True, help="run dissection and the bit browser"),
    "experiments": Field(list, None, nullable=True, item_type=str,
                         help="IBC experiments to dissect (null: every trained experiment)"),
    "layer": Field(str, "conv_last", help="layer to dissect (conv_last = the bits)"),
    "quantile": Field(float, 0.005, above=0, max=1, help="top activation quantile that sets each unit's threshold"),
    "iou_threshold": Field(float, 0.04, min=0, max=1, help="interpretable if IoU ≥ this (NetDissect-Lite 0.04)"),
    "iou_threshold_ibc": Field(float, 0.01, min=0, max=1, help="the IBC fork's threshold, reported beside it"),
    "headline_threshold": Field(str, "ibc", choices=["upstream", "ibc"], help="which threshold the bit groups use"),
    "categories": Field(list, ["object", "part", "texture", "color", "material", "scene"], item_type=str),
    "reference": Field(bool, True, help="the IBC fork's rules: drop images without a dissected label, add an "
                       "image's |M| to a category only where the mask meets it (docs/dissection.md)"),
    "preprocess": Field(str, "caffe", choices=["caffe", "torchvision"],
                        help="caffe: the fork's mean and 255×0.224; torchvision: per-channel mean/std (use what "
                             "the model was trained with)"),
    "cache_dtype": Field(str, "float16", choices=["float16", "float32"], help="activation cache precision"),
    "threads": Field(int, 0, min=0, help="torch threads in the tally (0: half the cores, at least 1)"),
    "batch_size": Field(int, 64, min=1),
    "top_n": Field(int, 8, min=1, help="top images shown per bit"),
    "max_figure_bits": Field(int, 12, min=1, help="bits shown in the interpretation figure"),
}
