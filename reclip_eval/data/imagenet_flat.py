"""ILSVRC2012 validation images in one flat folder (`val/ILSVRC2012_val_00000001.JPEG` ...) with labels from
either file users have:

- `LOC_val_solution.csv` (the Kaggle ImageNet Object Localization download):
  `ImageId,PredictionString` where the string starts with the image's wnid.
- the devkit (`ILSVRC2012_devkit_t12/`): `data/ILSVRC2012_validation_ground_truth.txt` holds one ILSVRC2012_ID
  per image (1-based, in file-name order) and `data/meta.mat` maps those ids to wnids. The ids are *not* the
  sorted-wnid label order, which is why the mapping goes through wnids.

An image or id listed twice is refused (errors.unique_mapping).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from reclip_eval.data.imagefolder import ClassList, FolderScan, finish_scan
from reclip_eval.data.images import is_image_file
from reclip_eval.data.mat_table import read_mat_table
from reclip_eval.errors import DataError, unique_mapping

DEVKIT_TRUTH = "data/ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = "data/meta.mat"
SYNSET_FIELDS = ("ILSVRC2012_ID", "WNID", "num_children")


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: {what} is not UTF-8 text ({e.reason} at byte {e.start})") from None


def read_loc_val_solution(path: Path) -> dict[str, str]:
    """image id (file stem) -> wnid."""
    if not path.is_file():
        raise DataError(f"{path}: label file not found")
    text = _read_text(path, "the label file")
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        if reader.fieldnames is None or not {"ImageId", "PredictionString"} <= set(reader.fieldnames):
            raise DataError(f"{path}: expected the columns ImageId,PredictionString (Kaggle LOC_val_solution.csv)")
        rows = []
        for row in reader:
            where = f"line {reader.line_num}"
            image, prediction = row.get("ImageId"), row.get("PredictionString")
            if not image or prediction is None:
                missing = "ImageId" if not image else f"PredictionString for image {image!r}"
                raise DataError(f"{path}: {where}: no {missing}; expected 'ImageId,PredictionString' rows")
            if not prediction.split():
                raise DataError(f"{path}: {where}: image {image} has an empty PredictionString")
            rows.append((image, prediction.split()[0], where))
    except csv.Error as e:
        raise DataError(f"{path}: not a CSV file ({e})") from None
    return unique_mapping(rows, path, "image", "wnid")


def _read_synsets(meta: Path) -> dict[int, str]:
    """ILSVRC2012_ID -> wnid of the leaf synsets (the 1000 classes) in the devkit's meta.mat."""
    leaves = []
    for index, synset in enumerate(read_mat_table(meta, "synsets", SYNSET_FIELDS, "the devkit's meta.mat")):
        synset_id, wnid, children = (synset[name] for name in SYNSET_FIELDS)
        if not all(isinstance(v, (int, float)) and float(v).is_integer() for v in (synset_id, children)):
            raise DataError(f"{meta}: synsets[{index}] has ILSVRC2012_ID {synset_id!r} and num_children "
                            f"{children!r}; expected integers")
        if not isinstance(wnid, str):
            raise DataError(f"{meta}: synsets[{index}] has WNID {wnid!r}; expected a wnid such as 'n01440764'")
        if children == 0:
            leaves.append((int(synset_id), wnid, f"synsets[{index}]"))
    id_to_wnid = unique_mapping(leaves, meta, "ILSVRC2012_ID", "wnid")
    unique_mapping([(wnid, synset_id, where) for synset_id, wnid, where in leaves], meta, "wnid", "ILSVRC2012_ID")
    return id_to_wnid


def _read_truth(truth: Path) -> list[int]:
    ids = []
    for number, line in enumerate(_read_text(truth, "the ground truth").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            ids.append(int(line))
        except ValueError:
            raise DataError(f"{truth}: line {number} is {line[:40]!r}; expected one integer ILSVRC2012_ID per "
                            "line") from None
    return ids


def read_devkit(devkit: Path, image_stems: list[str]) -> dict[str, str]:
    """image stem -> wnid, from the devkit's ground truth (ids in sorted file-name order) and meta.mat."""
    truth, meta = devkit / DEVKIT_TRUTH, devkit / DEVKIT_META
    for required in (truth, meta):
        if not required.is_file():
            raise DataError(f"{required}: devkit file not found")
    id_to_wnid = _read_synsets(meta)
    ids = _read_truth(truth)
    stems = sorted(image_stems)
    if len(ids) != len(stems):
        raise DataError(f"{truth}: {len(ids)} labels for {len(stems)} images; the folder and devkit do not match")
    try:
        return {stem: id_to_wnid[i] for stem, i in zip(stems, ids, strict=True)}
    except KeyError as e:
        raise DataError(f"{meta}: ILSVRC2012_ID {e} (in {truth.name}) is not a leaf synset") from None


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
