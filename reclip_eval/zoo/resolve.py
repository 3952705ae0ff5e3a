"""`--model` spec strings -> a loaded ModelAdapter.

    NAME                      a named model (zoo/NAME.yaml), weights from its entry or --checkpoint DIR
    path/to/dir               a checkpoint folder of any registered model kind (zoo/model_kinds.py): ours
                              (config.json), open_clip (open_clip_config.json), transformers CLIPModel (config.json
                              with model_type "clip"), and, once reclip_eval.detect is imported (reclip_eval/kinds.py,
                              as the CLI does), our detectors (detection tasks)
    hf-hub:org/name[@rev]     a folder of any of those kinds on the Hugging Face Hub (the local cache when
                              HF_HUB_OFFLINE=1)
    PREFIX:ARGUMENT           a kind's prefix form: openclip:ARCH (weights from --checkpoint FILE.safetensors, from
                              --pretrained TAG (one of open_clip's tags), or none with random_init=True, --random-init,
                              which marks the model id and the results) and hf:PATH (a transformers CLIPModel folder)

`reclip-eval models` lists the kinds. `image_size` builds any of these at another input size, the position embedding
resampled by our one resampler (ViT image towers only; any other is refused). The resolver dispatches on no kind:
folders are offered to the registered kinds in their priority order, and prefixes are the kinds' own; only its
messages for what is no model at all name the zoo's own formats.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reclip_eval.checkpoint import ARCHITECTURE, CONFIG_NAME, WEIGHTS_NAME, read_config, resolve_checkpoint
from reclip_eval.config import to_dict
from reclip_eval.errors import CheckpointError, MissingWeightsError, UnknownNameError
from reclip_eval.hub import HUB_PREFIX, CheckpointSource, download_snapshot, parse_hub_spec
from reclip_eval.models.presets import with_image_size

# Each of the zoo's own kind modules registers its kind when imported; the kinds of the packages above the zoo are
# listed in reclip_eval/kinds.py.
from reclip_eval.zoo import big_vision, hf_clip, openclip, reclip  # noqa: F401
from reclip_eval.zoo.adapter import ModelAdapter
from reclip_eval.zoo.backends import BACKENDS, DEFAULT_BACKEND
from reclip_eval.zoo.entries import ZooEntry, load_entry
from reclip_eval.zoo.model_kinds import (
    LoadRequest,
    ModelFolder,
    ModelKind,
    PrefixForm,
    hub_files,
    prefix_form_of,
    prefix_forms,
    recognising_kind,
)


def folder_kind(folder: Path) -> ModelKind:
    """The registered kind that recognises `folder` first; a folder of none of them is an error saying why."""
    candidate = ModelFolder(folder)
    kind = recognising_kind(candidate)
    if kind is not None:
        return kind
    if candidate.config is not None:
        raise CheckpointError(f"{folder / CONFIG_NAME}: neither a reclip-eval checkpoint (architecture "
                              f"{ARCHITECTURE!r}) nor a transformers CLIP model (model_type 'clip'); found "
                              f"{sorted(candidate.config)[:8]}")
    raise CheckpointError(f"{folder}: no {CONFIG_NAME} or {openclip.OPENCLIP_CONFIG}: not a model folder")


def _adapter_for_folder(folder: Path, request: LoadRequest) -> ModelAdapter:
    return folder_kind(folder).load(folder, request)


def load_adapter(
    model: str,
    *,
    checkpoint: str | None = None,
    image_size: int | None = None,
    device: str = "cpu",
    random_init: bool = False,
    backend: str = DEFAULT_BACKEND,
    pretrained: str | None = None,
    model_config: str | Path | dict[str, Any] | None = None,
    tokenizer: str | None = None,
) -> ModelAdapter:
    """The adapter for the `--model` spec `model` (see the module docstring), at `image_size` if given, computing
    on `backend` (zoo/backends.py: torch, or jax for our own checkpoints).

    `random_init` evaluates an `openclip:ARCH` without weights on purpose; without it a missing --checkpoint is
    an error, since random weights would look like a real (chance-level) result. `pretrained` names one of the
    library's own pretrained tags (`openclip:ARCH --pretrained TAG`); `model_config` is the architecture config of
    a foreign tree (`big_vision:PATH --model-config FILE`); `tokenizer` a foreign tree's tokenizer spec
    (reclip_eval.models.tokenizers: `sentencepiece:PATH.model`, `bert:PATH/vocab.txt`)."""
    form = prefix_form_of(model)
    for flag, given, applies in (("--random-init", random_init, "random_init"),
                                 ("--pretrained", pretrained, "pretrained"),
                                 ("--model-config", model_config is not None, "model_config"),
                                 ("--tokenizer", tokenizer is not None, "tokenizer")):
        if given and not (form is not None and getattr(form, applies)):
            allowed = " or ".join(f.usage for f in prefix_forms() if getattr(f, applies))
            raise CheckpointError(f"{model}: {flag} applies to {allowed} models only"
                                  f"{_architecture_hint(model, pretrained) or '; drop it'}")
    to_backend = BACKENDS.get(backend)  # an unknown backend fails before any model is loaded
    request = LoadRequest(model_id=model, image_size=image_size, checkpoint=checkpoint, random_init=random_init,
                          pretrained=pretrained, model_config=model_config, tokenizer=tokenizer)
    return to_backend(_load(model, form, request)).place(device)


def _load(model: str, form: PrefixForm | None, request: LoadRequest) -> ModelAdapter:
    if model.startswith(HUB_PREFIX):
        repo, revision = parse_hub_spec(model)
        source = download_snapshot(repo, revision=revision, allow_patterns=hub_files())
        return _adapter_for_folder(source.path, LoadRequest(model_id=model, image_size=request.image_size,
                                                            source=source))
    if form is not None:
        return form.load(model[len(form.prefix):], request)
    path = Path(model).expanduser()
    if request.checkpoint is None and path.is_dir():
        return _adapter_for_folder(path, LoadRequest(model_id=str(Path(model)), image_size=request.image_size))
    if path.is_file() and path.suffix not in (".yaml", ".yml"):  # a zoo entry YAML is a named model's file
        hint = f"; for open_clip weights use --model {openclip.PREFIX}ARCH --checkpoint {model}" \
            if path.suffix == ".safetensors" else ""
        raise CheckpointError(f"{model}: a file, not a checkpoint directory (expected a folder with {CONFIG_NAME} "
                              f"and {WEIGHTS_NAME}, or {openclip.OPENCLIP_CONFIG}){hint}")
    if _looks_like_path(model) and not path.exists():
        raise CheckpointError(f"{model}: no such {'file' if path.suffix in ('.yaml', '.yml') else 'folder'}")
    try:
        entry = load_entry(model)
    except UnknownNameError:
        hint = _architecture_hint(model)
        if hint:
            raise UnknownNameError(f"unknown model {model!r}{hint}") from None
        raise
    source = _source_from_spec(request.checkpoint) if request.checkpoint else _entry_source(entry)
    _check_matches_entry(entry, source)
    return reclip.ReclipAdapter.from_source(source, entry.name, request.image_size)


def _looks_like_path(spec: str) -> bool:
    return "/" in spec or spec.startswith((".", "~"))


def _architecture_hint(model: str, pretrained: str | None = None) -> str:
    """`; ... use --model openclip:ARCH` when `model` is a bare open_clip architecture name (an OpenCLIP habit)."""
    if not openclip.is_architecture_name(model):
        return ""
    weights = f"--pretrained {pretrained}" if pretrained else "--pretrained TAG or --checkpoint FILE.safetensors"
    return f"; {model} is an open_clip architecture: use --model {openclip.PREFIX}{model} {weights}"


def checkpoint_source(spec: str) -> CheckpointSource:
    """Where the weights of one of our checkpoints are: `hf-hub:org/name[@rev]`, a checkpoint folder, or a named
    model with weights (its entry's checkpoint); a named model without weights is a MissingWeightsError."""
    if spec.startswith(HUB_PREFIX) or Path(spec).expanduser().is_dir():
        return _source_from_spec(spec)
    return _entry_source(load_entry(spec))


def _source_from_spec(spec: str) -> CheckpointSource:
    if spec.startswith(HUB_PREFIX):
        repo, revision = parse_hub_spec(spec)
        return resolve_checkpoint(repo, revision=revision)
    return resolve_checkpoint(spec)


def _check_matches_entry(entry: ZooEntry, source: CheckpointSource) -> None:
    """A checkpoint given for a named model must have that model's architecture (image size may differ)."""
    stored = read_config(source.path)
    expected = with_image_size(entry.config(), stored.vision.image_size)
    if stored != expected:
        ours, theirs = to_dict(expected), to_dict(stored)
        diffs = [f"{k}: {entry.name} {ours[k]!r}, checkpoint {theirs[k]!r}" for k in ours if ours[k] != theirs[k]]
        raise CheckpointError(
            f"{source.path}: is not a {entry.name} checkpoint ({entry.path} says otherwise):\n  " + "\n  ".join(diffs)
            + f"\n  evaluate it as a plain checkpoint instead: --model {source.path}"
        )


def _entry_source(entry: ZooEntry) -> CheckpointSource:
    if entry.checkpoint is None:
        recipe = entry.recipe or "<recipe>"
        raise MissingWeightsError(
            f"model {entry.name!r} has no published weights (the paper's authors released none). Either\n"
            f"  - train it:    reclip-eval train {recipe} --out runs/{entry.name}\n"
            f"    then evaluate: reclip-eval --model {entry.name} --checkpoint runs/{entry.name} --task ...\n"
            f"    and publish:   reclip-eval push-to-hub runs/{entry.name} ORG/{entry.name}\n"
            f"  - or pass weights you have: --checkpoint DIR, or --model hf-hub:org/name"
        )
    path = entry.checkpoint_path()
    if path is not None:
        try:
            return resolve_checkpoint(str(path))
        except CheckpointError as e:  # name the entry whose `checkpoint:` points there
            raise CheckpointError(f"{entry.path}: checkpoint {entry.checkpoint!r}: {e}") from None
    return _source_from_spec(entry.checkpoint)
