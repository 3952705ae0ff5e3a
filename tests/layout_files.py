"""Small valid label files in the real on-disk layouts, written as the downloads users have hold them (Kaggle's
LOC_val_solution.csv, the ILSVRC2012 devkit, a `datasets` folder, LVIS JSON), for tests that break them: the
bad-input table (tests/test_bad_inputs.py) and the reader fuzz tests (tests/test_reader_fuzz.py). The images and
retrieval files come from tests/test_real_layouts.py's fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.test_real_layouts import _imagenet_images, _jpeg

# Devkit ids are not the sorted-wnid order (as in the real meta.mat); 1001 is a non-leaf synset.
DEVKIT_IDS = {"n01440764": 7, "n01443537": 3, "n15075141": 5}
DEVKIT_TRUTH = "ILSVRC2012_devkit_t12/data/ILSVRC2012_validation_ground_truth.txt"
DEVKIT_META = "ILSVRC2012_devkit_t12/data/meta.mat"


def flat_imagenet(folder: Path) -> list[tuple[str, str, int]]:
    """Six flat ImageNet val images under `folder/val/`; returns their (file stem, wnid, seed) rows."""
    rows = _imagenet_images()
    for stem, _, seed in rows:
        _jpeg(folder / "val" / f"{stem}.JPEG", seed)
    return rows


def loc_csv_text(rows: list[tuple[str, str, int]]) -> str:
    return "ImageId,PredictionString\n" + "".join(f"{s},{w} 1 2 30 40 {w} 3 4 20 20\n" for s, w, _ in rows)


def synsets(entries: list[tuple[object, object, object]]) -> np.ndarray:
    """A devkit synsets table (ILSVRC2012_ID, WNID, num_children) as scipy's savemat writes meta.mat's."""
    return np.array(entries, dtype=[("ILSVRC2012_ID", "O"), ("WNID", "O"), ("num_children", "O")])


def devkit(folder: Path, rows: list[tuple[str, str, int]], table: np.ndarray | None = None) -> Path:
    """`folder/ILSVRC2012_devkit_t12/` labelling `rows` (meta.mat's synsets: `table`, or the true one)."""
    from scipy.io import savemat

    table = synsets([(i, w, 0) for w, i in DEVKIT_IDS.items()] + [(1001, "n00001740", 5)]) if table is None \
        else table
    (folder / DEVKIT_META).parent.mkdir(parents=True, exist_ok=True)
    savemat(folder / DEVKIT_META, {"synsets": table})
    (folder / DEVKIT_TRUTH).write_text("".join(f"{DEVKIT_IDS[w]}\n" for _, w, _ in rows))
    return folder / "ILSVRC2012_devkit_t12"


def hf_folder(folder: Path, labels: list[int], names: list[str] | None = None) -> Path:
    """`folder/hf/`: a datasets.save_to_disk DatasetDict with a `validation` split of len(labels) images (label
    column a ClassLabel of `names` when given, else plain integers)."""
    import datasets

    images = []
    for i in range(len(labels)):
        _jpeg(folder / "hf-images" / f"{i}.jpg", i)
        images.append(str(folder / "hf-images" / f"{i}.jpg"))
    label = datasets.ClassLabel(names=names) if names else datasets.Value("int64")
    split = datasets.Dataset.from_dict({"image": images, "label": labels},
                                       features=datasets.Features({"image": datasets.Image(), "label": label}))
    datasets.DatasetDict({"validation": split}).save_to_disk(str(folder / "hf"))
    return folder / "hf"
