"""ILSVRC2012 validation images in one flat folder (`val/ILSVRC2012_val_00000001.JPEG` ...) with labels from
either file users have:

- `LOC_val_solution.csv` (the Kaggle ImageNet Object Localization download):
  `ImageId,PredictionString` where the string starts with the image's wnid.
- the devkit (`ILSVRC2012_devkit_t12/`): `data/ILSVRC2012_validation_ground_truth.txt` holds one ILSVRC2012_ID
  per image (1-based, in file-name order) and `data/meta.mat` maps those ids to wnids. The ids are *not* the
  sorted-wnid label order, which is why the mapping goes through wnids.
"""

from __future__ import annotations

import csv
from pathlib import Path

from reclip_eval.data.imagefolder import ClassList, FolderScan, finish_scan
from reclip_eval.data.images import is_image_file
from reclip_eval.errors import DataError

DEVKIT_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = "data/meta.mat"


def read_loc_val_solution(path: Path) -> dict[str, str]:
    """image id (file stem) -> wnid."""
    if not path.is_file():
        raise DataError(f"{path}: label file not found")
    labels = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
            raise DataError(f"{path}: expected the columns ImageId,PredictionString (Kaggle LOC_val_solution.csv)")
        for row in reader:
            prediction = row["PredictionString"].split()
            if not prediction:
                raise DataError(f"{path}: image {row['ImageId']} has an empty PredictionString")
            labels[row["ImageId"]] = prediction[0]
    return labels


def read_devkit(devkit: Path, image_stems: list[str]) -> dict[str, str]:
    """image stem -> wnid, from the devkit's ground truth (ids in sorted file-name order) and meta.mat."""
    truth, meta = devkit / DEVKIT_TRUTH, devkit / DEVKIT_META
    for required in (truth, meta):
        if not required.is_file():
            raise DataError(f"{required}: devkit file not found")
    from scipy.io import loadmat

    synsets = loadmat(str(meta), squeeze_me=True)["synsets"]
    id_to_wnid = {int(s["ILSVRC2012_ID"]): str(s["WNID"]) for s in synsets if int(s["num_children"]) == 0}
    ids = [int(x) for x in truth.read_text().split()]
    stems = sorted(image_stems)
    if len(ids) != len(stems):
        raise DataError(f"{truth}: {len(ids)} labels for {len(stems)} images; the folder and devkit do not match")
    try:
        return {stem: id_to_wnid[i] for stem, i in zip(stems, ids, strict=True)}
    except KeyError as e:
        raise DataError(f"{meta}: ILSVRC2012_ID {e} is not a leaf synset") from None


def scan_flat_folder(split_dir: Path, labels: dict[str, str], classes: ClassList, source: Path) -> FolderScan:
    """Pair every image in `split_dir` with its label through `labels` (stem -> wnid)."""
    files = sorted(p for p in split_dir.iterdir() if p.is_file() and is_image_file(p))
    label_of = classes.index()
    unlabeled = [p.name for p in files if p.stem not in labels]
    if unlabeled:
        raise DataError(f"{source}: no label for {len(unlabeled)} image(s) in {split_dir}, e.g. {unlabeled[0]}")
    unknown = sorted({labels[p.stem] for p in files} - set(label_of))
    if unknown:
        raise DataError(f"{source}: labels {', '.join(unknown[:5])} are not classes of this task")
    return finish_scan([(p, label_of[labels[p.stem]]) for p in files], classes, split_dir)
