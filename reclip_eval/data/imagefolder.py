"""Classification sets in the ImageNet on-disk layout: `<root>/<split>/<class id>/*.JPEG`.

Labels come from the task's class list (`id<TAB>name` per line, in label order), matched to folders *by id*:
a missing or empty class folder never shifts the labels of the others. A folder whose name is not in the class
list is an error (it usually means the wrong class list, e.g. ImageNet-A's 200 classes vs the full 1000).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from reclip_eval.data.images import IMAGE_SUFFIXES, is_image_file
from reclip_eval.errors import DataError, unique_mapping


@dataclass(frozen=True)
class ClassList:
    ids: tuple[str, ...]
    names: tuple[str, ...]

    def index(self) -> dict[str, int]:
        return {cid: i for i, cid in enumerate(self.ids)}


def read_class_list(path: str | Path) -> ClassList:
    """Read `id<TAB>name` lines; blank lines and `#` comments are ignored."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: class list not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: class list is not UTF-8 text ({e.reason} at byte {e.start})") from None
    ids, names, lines, problems = [], [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            problems.append(f"line {number}: expected 'class_id<TAB>class name', got {line!r}")
            continue
        ids.append(parts[0].strip())
        names.append(parts[1].strip())
        lines.append(f"line {number}")
    if problems:
        raise DataError(f"{path}: invalid class list:\n" + "\n".join(f"  - {p}" for p in problems))
    if not ids:
        raise DataError(f"{path}: class list is empty")
    # A repeated id would shift every label after it.
    unique_mapping(zip(ids, names, lines, strict=True), path, "class id", "name")
    return ClassList(tuple(ids), tuple(names))


@dataclass(frozen=True)
class FolderScan:
    items: list[tuple[Path, int]]  # (file path, label): every file, so a non-image one is skipped with its reason
    empty_classes: list[str]  # class ids with no folder or no images: reported in the results


def scan_image_folder(split_dir: Path, classes: ClassList, folder_names: str = "id") -> FolderScan:
    """`folder_names="id"`: folders are class ids (ImageNet wnids); `"index"`: folders are label indices
    0..N-1 in class-list order (ImageNet-V2's layout)."""
    if not split_dir.is_dir():
        raise DataError(f"{split_dir}: folder not found")
    if folder_names == "index":
        label_of = {str(i): i for i in range(len(classes.ids))}
    else:
        label_of = classes.index()
    folders = sorted(p for p in split_dir.iterdir() if p.is_dir())
    unknown = [p.name for p in folders if p.name not in label_of]
    if unknown:
        shown = ", ".join(unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        raise DataError(
            f"{split_dir}: {len(unknown)} folder(s) are not classes of this task ({shown}); "
            "is this the right split and class list?"
        )
    items: list[tuple[Path, int]] = []
    for folder in folders:
        # Every file, images or not: the loader skips (and lists) the others, so the denominator is stated.
        files = sorted(p for p in folder.iterdir() if p.is_file())
        items.extend((p, label_of[folder.name]) for p in files)
    return finish_scan(items, classes, split_dir)


def finish_scan(items: list[tuple[Path, int]], classes: ClassList, where: Path) -> FolderScan:
    images = [(path, label) for path, label in items if is_image_file(path)]
    if not images:
        others = f" ({len(items)} other file(s), e.g. {items[0][0].name})" if items else ""
        raise DataError(f"{where}: no images found{others}; images are files ending in "
                        f"{' '.join(IMAGE_SUFFIXES)}")
    seen = {label for _, label in images}
    return FolderScan(items=items, empty_classes=[c for i, c in enumerate(classes.ids) if i not in seen])
