"""CLIP_benchmark's webdataset eval sets (`<split>/nshards.txt` + `<split>/N.tar`, classnames.txt, ...; read by
reclip_eval/data/wds_eval.py), as a local folder or `--data-dir hf-datasets:clip-benchmark/wds_NAME` from the Hugging
Face cache (offline). One layout per role: `clip_benchmark_wds` (classification sets), `clip_benchmark_wds_multilabel`
(`npy` label vectors) and `clip_benchmark_wds_retrieval` (caption sets)."""

from __future__ import annotations

from pathlib import Path

from reclip_eval.data.layouts.base import (
    ClassificationData,
    ClassificationLayout,
    MultilabelLayout,
    RetrievalLayout,
    register_layout,
)
from reclip_eval.data.retrieval_files import RetrievalSet
from reclip_eval.errors import DataError

HUB_OWNER = "clip-benchmark/"  # the Hub ids these layouts read from the cache: clip-benchmark/wds_NAME


def _summary(what: str) -> str:
    return (f"CLIP_benchmark webdataset ({what}): <split>/nshards.txt + <split>/0.tar..N-1.tar, read in place; or "
            f"--data-dir hf-datasets:{HUB_OWNER}wds_NAME from the Hugging Face cache")


def resolve_wds_root(folder: Path | str) -> Path:
    """A local folder as it is; a Hub id (`clip-benchmark/wds_NAME`) as its snapshot in the Hugging Face cache,
    never downloaded (evaluation reads what is there, and nshards.txt catches a partial download)."""
    if isinstance(folder, Path):
        return folder
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(folder, repo_type="dataset", local_files_only=True))
    except LocalEntryNotFoundError:
        raise DataError(f"hf-datasets:{folder}: not in the Hugging Face cache (HF_HUB_CACHE); evaluation never "
                        f"downloads: fetch it first, e.g. `huggingface-cli download --repo-type dataset {folder}`"
                        ) from None


class _WdsLayout:
    """The presence test and texts both roles share (mixed in before the role class)."""

    name: str
    reads_hub_ids = True

    def claims_hub_id(self, hub_id: str) -> bool:
        return hub_id.startswith(HUB_OWNER + "wds_")

    def is_present(self, spec, folder, num_classes, class_ids):
        return (folder / spec.split / "nshards.txt").is_file()

    def partial_match(self, spec, folder):
        if any((folder / spec.split).glob("*.tar")):
            return f"{folder / spec.split} holds .tar files but no nshards.txt (CLIP_benchmark's wds layout)"
        return None

    def expected(self, spec, folder):
        return (f"{folder}/{spec.split}/nshards.txt + {folder}/{spec.split}/0.tar ... (CLIP_benchmark wds); or "
                f"--data-dir hf-datasets:{HUB_OWNER}wds_NAME (cached)")


class _LabelledWds(_WdsLayout):
    """Both labelled roles: the set's `dataset_type` must be this layout's, its classnames.txt the task's classes."""

    dataset_type: str

    def read(self, spec, folder, classes) -> ClassificationData:
        from reclip_eval.data.wds_eval import load_tar_member, read_wds_set

        wds = read_wds_set(resolve_wds_root(folder), spec.split, (self.dataset_type,), tuple(classes.names))
        if self.dataset_type == "multilabel":
            seen = {i for vector in wds.labels for i in vector.nonzero()[0].tolist()}
        else:
            seen = set(wds.labels)
        return ClassificationData(list(zip(wds.images, wds.labels, strict=True)),
                                  [c for i, c in enumerate(classes.ids) if i not in seen],
                                  load=load_tar_member, files=list(wds.shards), extra=wds.counts())


@register_layout
class ClipBenchmarkWds(_LabelledWds, ClassificationLayout):
    name = "clip_benchmark_wds"
    summary = _summary("classification")
    dataset_type = "classification"


@register_layout
class ClipBenchmarkWdsMultilabel(_LabelledWds, MultilabelLayout):
    name = "clip_benchmark_wds_multilabel"
    summary = _summary("multilabel")
    dataset_type = "multilabel"


@register_layout
class ClipBenchmarkWdsRetrieval(_WdsLayout, RetrievalLayout):
    name = "clip_benchmark_wds_retrieval"
    summary = _summary("retrieval")

    def problems(self, spec):
        return []  # no annotation file: the captions are in the shards

    def read(self, spec, folder) -> RetrievalSet:
        from reclip_eval.data.wds_eval import load_tar_member, read_wds_set

        wds = read_wds_set(resolve_wds_root(folder), spec.split, ("retrieval",))
        captions = [caption for captions in wds.labels for caption in captions]
        caption_image = [index for index, captions in enumerate(wds.labels) for _ in captions]
        return RetrievalSet(wds.images, captions, caption_image, load=load_tar_member, files=list(wds.shards),
                            extra=wds.counts())
