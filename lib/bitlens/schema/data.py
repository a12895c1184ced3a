"""`data:` — where every dataset lives, and the generated Shapes world."""
from bitlens.schema.fields import Field, MapOf

COCO_HINT = ("COCO 2017 from the official COCO site: train2017.zip, val2017.zip, annotations_trainval2017.zip; "
             "see data/README.md for the layout")
BRODEN_HINT = "Broden broden1_224 (NetDissect-Lite's script/dlbroden.sh); see data/README.md"

SHAPES = {
    "generate": Field(bool, False, help="build the Shapes world in stage 00_data (tiny profile)"),
    "root": Field(str, "data/shapes", help="where the Shapes world and its exports are written"),
    "seed": Field(int, 0, min=0),
    "image_size": Field(int, 64, min=8, help="image side in pixels"),
    "n_train": Field(int, 2000, min=1, help="training images"),
    "n_val": Field(int, 500, min=1, help="validation / query images"),
    "n_broden": Field(int, 300, min=1, help="images in the Broden-format dissection set"),
    "broden_mask_size": Field(int, 32, min=1, help="mask side of the Broden export (Broden: images 224, masks 112)"),
    "max_objects": Field(int, 3, min=1),
}

IMAGELIST = {
    "root": Field(str, data_path=True, help="image folder the list paths are relative to"),
    "format": Field(str, "imagenet", choices=["imagenet", "sun"], help="'path label' or 'path class a1..aK'"),
    "train": Field(str, data_path=True, help="training list file"),
    "test": Field(str, data_path=True, help="query list file"),
    "database": Field(str, "", data_path=True,
                      help="database list file; empty = the test list (IBC's protocol: query set = database)"),
    "num_classes": Field(int, min=1, help="number of classes C"),
    "num_attributes": Field(int, 0, min=0, help="attribute columns (SUN-style lists)"),
    "attribute_names": Field((list, str), None, nullable=True, item_type=str,
                             help="names of the attribute columns: a list, or 'sun' for the SUN Attribute Database's "
                                  "102 (bitlens.data.attributes)"),
    "hint": Field(str, "", help="where to obtain this dataset (printed when it is missing)"),
}

DATA = {
    "shapes": SHAPES,
    "coco": {
        "root": Field(str, "data/coco", data_path=True, hint=COCO_HINT,
                      help="folder holding annotations/ and the image folders"),
        "train_split": Field(str, "train2017"),
        "val_split": Field(str, "val2017"),
        "karpathy_split": Field(str, "", data_path=True,
                                hint="Karpathy's dataset_coco.json (caption_datasets.zip of his NeuralTalk release)",
                                help="Karpathy's split file: the CLIP-protocol table (12_bebr_eval) then uses its 5k "
                                     "test images with all their captions; empty = val2017 with all captions"),
    },
    "imagelists": MapOf(IMAGELIST, help="named image-list datasets (ImageNet-100C, ImageNet-150K, SUN-120K, shapes)"),
    "broden": {
        "root": Field(str, "data/broden1_224", data_path=True, hint=BRODEN_HINT,
                      help="Broden folder with index.csv, category.csv, label.csv, c_*.csv, images/"),
    },
}
