"""What a complete, consistent model folder of each kind holds, checked before any model is built or data touched.

One check per folder kind (FOLDER_CHECKS, by kind name: zoo/model_kinds.py runs a kind's check before its loader;
ours is run by ReclipAdapter.from_source, the one way to our checkpoints: a folder, a named model, a Hub repo):

    reclip           config.json with every key; model.safetensors holding exactly the tensors the config implies,
                     each of the shape it implies (values: the loader's reader refuses NaN/inf as it reads them)
    hf_transformers  config.json whose model_type names a transformers dual encoder (HF_DUAL_ENCODERS: CLIPModel,
                     SiglipModel); model.safetensors holding exactly the tensors that model of that config has, of
                     their shapes, all finite; its image processor's settings (preprocessor_config.json, or the
                     processor_config.json a processor's save_pretrained writes); a tokenizer: tokenizer.json, or
                     the architecture's own files (CLIP: vocab.json + merges.txt, SigLIP: spiece.model; without them
                     transformers builds a tokenizer that maps every caption to the same ids, and the numbers would
                     be silently wrong)
    open_clip        open_clip_config.json with a model_cfg object; safetensors weights (the files only: building
                     the architecture is open_clip's, in zoo/openclip.py)

(big_vision / CLIPA `.npz` files are checked as they are read, by reclip_eval.flax_models.big_vision_npz.)

Names and shapes come from the safetensors header; the expected ones from the model's own class built on the meta
device (no memory, no initialisation). Values are read one tensor at a time from the memory-mapped file and checked a
chunk at a time (reclip_eval.models.finite), so checking a checkpoint of gigabytes costs no second copy of it. Each
problem is one CheckpointError line naming the file, the tensor or key, and what was expected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reclip_eval.checkpoint import CONFIG_NAME, WEIGHTS_NAME, check_finite, missing_weights_error, read_config
from reclip_eval.errors import CheckpointError, read_json

PREPROCESSOR_NAME = "preprocessor_config.json"
PROCESSOR_NAME = "processor_config.json"  # a processor's save_pretrained (transformers 5): image processor inside
TOKENIZER_NAME = "tokenizer.json"  # a fast tokenizer, complete in itself
BPE_FILES = ("vocab.json", "merges.txt")  # the slow CLIP tokenizer's vocabulary, both needed
SENTENCEPIECE_FILES = ("spiece.model",)  # the slow SigLIP tokenizer's SentencePiece model


@dataclass(frozen=True)
class HFDualEncoder:
    """A transformers dual encoder a `hf:` folder may hold, told by its config.json's model_type. Class names, not
    classes: transformers is imported on use."""

    model_type: str
    model_class: str
    config_class: str
    image_processor_class: str
    tokenizer_files: tuple[str, ...]  # the slow tokenizer's files, all needed when there is no tokenizer.json
    causal_text: bool  # a causal text tower pooled at its end token: padding after it changes nothing
    naflex: bool = False  # SigLIP 2's NaFlex input: each image its own patch grid (zoo/hf_siglip.py)
    position_key: str = "vision_model.embeddings.position_embedding.weight"


HF_DUAL_ENCODERS = {
    "clip": HFDualEncoder("clip", "CLIPModel", "CLIPConfig", "CLIPImageProcessor", BPE_FILES, causal_text=True),
    "siglip": HFDualEncoder("siglip", "SiglipModel", "SiglipConfig", "SiglipImageProcessor", SENTENCEPIECE_FILES,
                            causal_text=False),
    "siglip2": HFDualEncoder("siglip2", "Siglip2Model", "Siglip2Config", "Siglip2ImageProcessor", (TOKENIZER_NAME,),
                             causal_text=False, naflex=True),
}
# What a transformers dual-encoder folder needs besides its config and weights (the Hub download patterns).
HF_PROCESSOR_FILES = (PREPROCESSOR_NAME, PROCESSOR_NAME, "tokenizer*", *BPE_FILES, *SENTENCEPIECE_FILES,
                      "special_tokens_map.json")
# Two captions any real tokenizer tells apart (a tokenizer without its vocabulary maps both to the same ids).
PROBE_CAPTIONS = ("a photo of a red circle.", "two blue squares on a green field")

FolderCheck = Callable[[Path], None]


# --- safetensors, header first ---------------------------------------------------------------------------------


@contextmanager
def _safetensors(path: Path) -> Iterator[Any]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise missing_weights_error(path)
    try:
        with safe_open(str(path), framework="pt") as weights:
            yield weights
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({' '.join(str(e).split())}); the file may "
                              "be truncated or in another format") from None


def check_tensor_shapes(path: Path, expected: Mapping[str, tuple[int, ...]], what: str,
                        tolerated: Callable[[str], bool] = lambda key: False) -> None:
    """The safetensors file at `path` holds exactly the tensors of `expected`, each of its shape (from the header:
    no value is read). `what` says where the expectation comes from; `tolerated` keys may be extra."""
    with _safetensors(path) as weights:
        shapes = {key: tuple(weights.get_slice(key).get_shape()) for key in weights.keys()}
    missing = sorted(set(expected) - set(shapes))
    unexpected = sorted(key for key in set(shapes) - set(expected) if not tolerated(key))
    wrong = [key for key in expected if key in shapes and shapes[key] != tuple(expected[key])]
    if missing:
        raise CheckpointError(f"{path}: tensor {missing[0]} is missing{_more(missing)}; {what} has it, of shape "
                              f"{tuple(expected[missing[0]])}")
    if unexpected:
        raise CheckpointError(f"{path}: tensor {unexpected[0]} is not part of {what}{_more(unexpected)}; the "
                              "weights are of another architecture")
    if wrong:
        key = wrong[0]
        raise CheckpointError(f"{path}: tensor {key} has shape {shapes[key]}; {what} gives it shape "
                              f"{tuple(expected[key])}{_more(wrong)}")


class _MappedTensors(Mapping):
    """The tensors of an open safetensors file as a mapping that reads each only when it is looked up."""

    def __init__(self, weights: Any):
        self.weights = weights
        self.keys_in_file = list(weights.keys())

    def __getitem__(self, key: str) -> Any:
        return self.weights.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys_in_file)

    def __len__(self) -> int:
        return len(self.keys_in_file)


def check_tensors_finite(path: Path) -> None:
    """Every tensor in the safetensors file at `path` is finite: checkpoint.check_finite (its message too) over the
    mapped file, so one tensor at a time is in memory."""
    with _safetensors(path) as weights:
        check_finite(_MappedTensors(weights), path)


def _more(keys: list[str]) -> str:
    return f" (and {len(keys) - 1} more)" if len(keys) > 1 else ""


# --- the kinds ---------------------------------------------------------------------------------------------------


def check_reclip_folder(folder: Path) -> None:
    import torch

    from reclip_eval.models.clip import CLIP

    config = read_config(folder)  # every key, before any tensor
    with torch.device("meta"):
        expected = {key: tuple(t.shape) for key, t in CLIP(config).state_dict().items()}
    check_tensor_shapes(folder / WEIGHTS_NAME, expected, f"the model of {CONFIG_NAME}")


def hf_dual_encoder(folder: Path) -> HFDualEncoder:
    """The architecture of the transformers folder `folder`, from its config.json's model_type."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a transformers dual-encoder folder holds {CONFIG_NAME}, "
                              f"{WEIGHTS_NAME}, its image processor's settings and its tokenizer")
    config = read_json(path, CheckpointError)
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in HF_DUAL_ENCODERS:
        raise CheckpointError(f"{path}: model_type {model_type!r} is not a transformers dual encoder this kind loads "
                              f"(one of {', '.join(sorted(HF_DUAL_ENCODERS))})")
    return HF_DUAL_ENCODERS[model_type]


def check_hf_folder(folder: Path) -> None:
    import torch
    import transformers

    architecture = hf_dual_encoder(folder)
    _check_processor_files(folder, architecture)
    try:
        config = getattr(transformers, architecture.config_class).from_pretrained(str(folder), local_files_only=True)
        with torch.device("meta"):
            model = getattr(transformers, architecture.model_class)(config)
            expected = {key: tuple(t.shape) for key, t in model.state_dict().items()}
    except (OSError, ValueError, TypeError, KeyError, ZeroDivisionError) as e:
        raise CheckpointError(f"{folder / CONFIG_NAME}: not a valid transformers {architecture.config_class} "
                              f"({' '.join(str(e).split())})") from None
    # Older transformers saved the position_ids buffers, which newer ones rebuild: extra ones are harmless.
    check_tensor_shapes(folder / WEIGHTS_NAME, expected, f"the {architecture.model_class} of {CONFIG_NAME}",
                        tolerated=lambda key: key.endswith("position_ids"))
    check_tensors_finite(folder / WEIGHTS_NAME)


def _check_processor_files(folder: Path, architecture: HFDualEncoder) -> None:
    if not (folder / PREPROCESSOR_NAME).is_file() and not _holds_image_processor(folder / PROCESSOR_NAME):
        raise CheckpointError(f"{folder / PREPROCESSOR_NAME}: missing; the image preprocessing of a transformers "
                              f"{architecture.model_class} folder is its own ({architecture.image_processor_class}"
                              f".save_pretrained writes it, or {PROCESSOR_NAME} with an 'image_processor' object)")
    if (folder / TOKENIZER_NAME).is_file():
        return
    missing = [name for name in architecture.tokenizer_files if not (folder / name).is_file()]
    if missing:
        accepted = dict.fromkeys([TOKENIZER_NAME, " + ".join(architecture.tokenizer_files)])  # Gemma's: one file
        raise CheckpointError(f"{folder}: no tokenizer vocabulary: {', or '.join(accepted)}, expected "
                              f"({', '.join(missing)} missing); "
                              "without it every caption would encode to the same ids (the tokenizer's "
                              "save_pretrained writes them)")


def _holds_image_processor(path: Path) -> bool:
    if not path.is_file():
        return False
    processor = read_json(path, CheckpointError)
    return isinstance(processor, dict) and isinstance(processor.get("image_processor"), dict)


def check_hf_tokenizer(tokenizer: Any, vocab_size: int, folder: Path) -> None:
    """The loaded tokenizer covers the text tower's vocabulary and tells captions apart."""
    size = len(tokenizer)
    if size != vocab_size:
        raise CheckpointError(f"{folder}: the tokenizer has {size} tokens, the text tower's embedding "
                              f"{vocab_size} (text_config.vocab_size in {CONFIG_NAME}); they must be one vocabulary")
    first, second = (tokenizer(caption)["input_ids"] for caption in PROBE_CAPTIONS)
    if first == second:
        raise CheckpointError(f"{folder}: the tokenizer encodes different captions to the same ids ({first}); its "
                              "vocabulary files are broken")


def check_open_clip_folder(folder: Path) -> None:
    from reclip_eval.zoo.openclip import OPENCLIP_CONFIG, OPENCLIP_WEIGHTS  # at call time: that module imports ours

    config = read_json(folder / OPENCLIP_CONFIG, CheckpointError, what="open_clip config")
    if not isinstance(config, dict) or not isinstance(config.get("model_cfg"), dict):
        raise CheckpointError(f"{folder / OPENCLIP_CONFIG}: expected a JSON object with a 'model_cfg' object (the "
                              "architecture), as open_clip's push_to_hub writes it")
    if not any((folder / name).is_file() for name in OPENCLIP_WEIGHTS):
        pickles = sorted(p.name for p in folder.glob("*.bin")) + sorted(p.name for p in folder.glob("*.pt*"))
        found = f" (found {', '.join(pickles)}: pickled weights are never loaded)" if pickles else ""
        raise CheckpointError(f"{folder}: no safetensors weights ({', '.join(OPENCLIP_WEIGHTS)}){found}")


FOLDER_CHECKS: dict[str, FolderCheck] = {  # "reclip": check_reclip_folder runs in ReclipAdapter.from_source
    "hf_transformers": check_hf_folder,
    "open_clip": check_open_clip_folder,
}


def check_model_folder(kind: str, folder: Path) -> None:
    """Run the check of the folder kind `kind` on `folder` (kinds without one, like detectors, check as they load)."""
    check = FOLDER_CHECKS.get(kind)
    if check is not None:
        check(folder)
