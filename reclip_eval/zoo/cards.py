"""Named models: one `model_cards/NAME.yaml` each (architecture, recipe, weights if published, paper numbers)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from reclip_eval.config import from_dict, load_yaml
from reclip_eval.hub import HUB_PREFIX
from reclip_eval.models.config import CLIPConfig
from reclip_eval.models.presets import ArchitectureSpec
from reclip_eval.registry import find_named_yaml, named_yaml_files


@dataclass(frozen=True)
class PaperResult:
    """Numbers the paper reports for this model, keyed like our results (`<task>/<metric>`), tagged by table."""

    table: str
    row: str
    metrics: dict[str, float]
    note: str = ""


@dataclass(frozen=True)
class ModelCardSpec:
    name: str
    description: str
    architecture: ArchitectureSpec
    recipe: str | None = None  # a recipe name under training/
    # Local checkpoint dir relative to model_cards/, or "hf-hub:org/name[@revision]"; null when never published.
    checkpoint: str | None = None
    license: str = "apache-2.0"
    training_data: str = ""
    intended_use: str = ""
    limitations: str = ""
    paper_results: list[PaperResult] = field(default_factory=list)
    path: str = ""  # filled in when loaded

    def config(self) -> CLIPConfig:
        return self.architecture.build(source=self.path)

    def checkpoint_path(self) -> Path | None:
        if self.checkpoint is None or self.checkpoint.startswith(HUB_PREFIX):
            return None
        return (Path(self.path).parent / self.checkpoint).resolve()


def load_card(name_or_path: str) -> ModelCardSpec:
    path = find_named_yaml("model_cards", "model", name_or_path)
    data = load_yaml(path)
    card = from_dict(ModelCardSpec, {**data, "path": str(path)}, source=str(path))
    if card.name != path.stem:
        from reclip_eval.errors import ConfigError

        raise ConfigError(str(path), [f"name: {card.name!r} must equal the file name {path.stem!r}"])
    return card


def list_cards() -> list[ModelCardSpec]:
    return [load_card(str(p)) for p in named_yaml_files("model_cards").values()]
