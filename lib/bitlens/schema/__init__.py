"""The params schema, one module per section. `bitlens.config` validates profiles against `SCHEMA`."""
from bitlens.schema.fields import Field
from bitlens.schema.bebr import BEBR
from bitlens.schema.data import DATA
from bitlens.schema.dissect import DISSECT
from bitlens.schema.ibc import IBC
from bitlens.schema.report import REPORT

PIPELINE = {
    "stages": Field(list, None, nullable=True, item_type=str,
                    help="stages this profile runs, in order; null = every stage"),
    "cell_timeout": Field(int, 7200, min=1, help="seconds one notebook cell may run before the stage fails"),
    "kernel": Field(str, "bitlens", help="Jupyter kernel the notebooks execute in"),
    "keep_previous": Field(int, 3, min=0, help="earlier runs kept per stage in results/<profile>/.previous/<stage>/ "
                                                "(a trainer moves a run there when settings change or on --force)"),
}

SCHEMA = {
    "profile": Field(str, choices=["tiny", "paper", "released"], help="profile name"),
    "seed": Field(int, 0, min=0, help="global seed (each stage derives its own from it)"),
    "device": Field(str, "auto", choices=["auto", "cpu", "cuda"], help="auto = CUDA when available"),
    "pipeline": PIPELINE,
    "data": DATA,
    "bebr": BEBR,
    "ibc": IBC,
    "dissect": DISSECT,
    "report": REPORT,
}
