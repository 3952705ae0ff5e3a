"""Exact weight conversion between the torch model's state dict (our safetensors) and the flax parameter tree.

Both directions are transposes and reshapes only, so a round trip returns the same bytes:
- Dense kernels are (in, out) in flax, torch Linear weights (out, in);
- the patch-embedding convolution is HWIO in flax, OIHW in torch;
- torch's fused attention `qkv` (3 * width, width) is three flax kernels `query` / `key` / `value` of shape
  (width, heads, head_dim), its output projection (width, width) the flax `out` kernel (heads, head_dim, width);
- position embeddings keep their leading batch axis (1, tokens, width) in both;
- the log temperature is a scalar in torch and shape (1,) in flax (big_vision's `t`).

Every tensor is accounted for: a key missing on either side, an unexpected one, or a shape that does not fit the
config is an error naming it, before anything is converted. Each piece carries the flax shapes its config implies
(`expected_flax_shapes`), so the check needs no jax and no model; tests/test_model_validation.py pins them to the flax
module's own abstract init.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from reclip_eval.errors import CheckpointError
from reclip_eval.models.config import CLIPConfig

Arrays = list[np.ndarray]
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Piece:
    """Some torch tensors and the flax leaves they become: `to_flax` maps the torch arrays (in `torch_keys` order)
    to the flax arrays (in `flax_paths` order); `to_torch` is its inverse."""

    torch_keys: tuple[str, ...]
    flax_paths: tuple[str, ...]  # "/"-joined paths in the params tree
    flax_shapes: tuple[Shape, ...]  # the shape of each flax leaf, as the config implies it
    to_flax: Callable[[Arrays], Arrays]
    to_torch: Callable[[Arrays], Arrays]


def _same(torch_key: str, flax_path: str, shape: Shape) -> Piece:
    return Piece((torch_key,), (flax_path,), (shape,), lambda a: a, lambda a: a)


def _linear(torch_key: str, flax_path: str, features_in: int, features_out: int) -> Piece:
    return Piece((torch_key,), (flax_path,), ((features_in, features_out),), lambda a: [a[0].T], lambda a: [a[0].T])


def _layer_norm(torch_prefix: str, flax_prefix: str, width: int) -> list[Piece]:
    return [_same(f"{torch_prefix}.weight", f"{flax_prefix}/scale", (width,)),
            _same(f"{torch_prefix}.bias", f"{flax_prefix}/bias", (width,))]


def _attention(torch_prefix: str, flax_prefix: str, width: int, heads: int) -> list[Piece]:
    head_dim = width // heads
    names = ("query", "key", "value")

    def qkv_kernels(a: Arrays) -> Arrays:  # (3W, W) -> 3 x (W, heads, head_dim)
        return [w.T.reshape(width, heads, head_dim) for w in np.split(a[0], 3, axis=0)]

    def qkv_weight(a: Arrays) -> Arrays:
        return [np.concatenate([k.reshape(width, width).T for k in a], axis=0)]

    def qkv_biases(a: Arrays) -> Arrays:
        return [b.reshape(heads, head_dim) for b in np.split(a[0], 3)]

    return [
        Piece((f"{torch_prefix}.qkv.weight",), tuple(f"{flax_prefix}/{n}/kernel" for n in names),
              ((width, heads, head_dim),) * 3, qkv_kernels, qkv_weight),
        Piece((f"{torch_prefix}.qkv.bias",), tuple(f"{flax_prefix}/{n}/bias" for n in names), ((heads, head_dim),) * 3,
              qkv_biases, lambda a: [np.concatenate([b.reshape(width) for b in a])]),
        Piece((f"{torch_prefix}.proj.weight",), (f"{flax_prefix}/out/kernel",), ((heads, head_dim, width),),
              lambda a: [a[0].T.reshape(heads, head_dim, width)], lambda a: [a[0].reshape(width, width).T]),
        _same(f"{torch_prefix}.proj.bias", f"{flax_prefix}/out/bias", (width,)),
    ]


def _mlp(torch_prefix: str, flax_prefix: str, width: int, hidden: int) -> list[Piece]:
    return [_linear(f"{torch_prefix}.fc1.weight", f"{flax_prefix}/Dense_0/kernel", width, hidden),
            _same(f"{torch_prefix}.fc1.bias", f"{flax_prefix}/Dense_0/bias", (hidden,)),
            _linear(f"{torch_prefix}.fc2.weight", f"{flax_prefix}/Dense_1/kernel", hidden, width),
            _same(f"{torch_prefix}.fc2.bias", f"{flax_prefix}/Dense_1/bias", (width,))]


def _encoder(torch_prefix: str, flax_prefix: str, layers: int, width: int, heads: int, mlp_ratio: float,
             norm_path: str | None = None, final_norm: bool = True) -> list[Piece]:
    """A torch Transformer's blocks plus the tower's final LayerNorm `{tower}.norm`, which the flax Encoder holds
    as `encoder_norm` (big_vision's layout), or the tower at `norm_path` when it normalises after pooling (CLIPA);
    none without a `final_norm`."""
    hidden = int(width * mlp_ratio)  # as both models size their MLP
    pieces = []
    for i in range(layers):
        t, f = f"{torch_prefix}.transformer.blocks.{i}", f"{flax_prefix}/encoderblock_{i}"
        pieces += _layer_norm(f"{t}.norm1", f"{f}/LayerNorm_0", width)
        pieces += _attention(f"{t}.attn", f"{f}/MultiHeadDotProductAttention_0", width, heads)
        pieces += _layer_norm(f"{t}.norm2", f"{f}/LayerNorm_1", width)
        pieces += _mlp(f"{t}.mlp", f"{f}/MlpBlock_0", width, hidden)
    if not final_norm:
        return pieces
    return pieces + _layer_norm(f"{torch_prefix}.norm", norm_path or f"{flax_prefix}/encoder_norm", width)


def _map_head(torch_prefix: str, flax_prefix: str, width: int, heads: int, mlp_ratio: float) -> list[Piece]:
    """models/map_head.py's MAPHead <-> big_vision's MAPHead_0: the query kernel from `q`, key and value from `kv`."""
    head_dim = width // heads
    attention = f"{flax_prefix}/MultiHeadDotProductAttention_0"
    split = lambda w: w.T.reshape(width, heads, head_dim)  # noqa: E731  (out, in) -> (in, heads, head_dim)
    merge = lambda k: k.reshape(width, width).T  # noqa: E731
    return [
        _same(f"{torch_prefix}.probe", f"{flax_prefix}/probe", (1, 1, width)),
        Piece((f"{torch_prefix}.q.weight",), (f"{attention}/query/kernel",), ((width, heads, head_dim),),
              lambda a: [split(a[0])], lambda a: [merge(a[0])]),
        Piece((f"{torch_prefix}.q.bias",), (f"{attention}/query/bias",), ((heads, head_dim),),
              lambda a: [a[0].reshape(heads, head_dim)], lambda a: [a[0].reshape(width)]),
        Piece((f"{torch_prefix}.kv.weight",), (f"{attention}/key/kernel", f"{attention}/value/kernel"),
              ((width, heads, head_dim),) * 2, lambda a: [split(w) for w in np.split(a[0], 2, axis=0)],
              lambda a: [np.concatenate([merge(k) for k in a], axis=0)]),
        Piece((f"{torch_prefix}.kv.bias",), (f"{attention}/key/bias", f"{attention}/value/bias"),
              ((heads, head_dim),) * 2, lambda a: [b.reshape(heads, head_dim) for b in np.split(a[0], 2)],
              lambda a: [np.concatenate([b.reshape(width) for b in a])]),
        Piece((f"{torch_prefix}.proj.weight",), (f"{attention}/out/kernel",), ((heads, head_dim, width),),
              lambda a: [a[0].T.reshape(heads, head_dim, width)], lambda a: [a[0].reshape(width, width).T]),
        _same(f"{torch_prefix}.proj.bias", f"{attention}/out/bias", (width,)),
        *_layer_norm(f"{torch_prefix}.norm", f"{flax_prefix}/LayerNorm_0", width),
        *_mlp(f"{torch_prefix}.mlp", f"{flax_prefix}/MlpBlock_0", width, int(width * mlp_ratio)),
    ]


def pieces_for(config: CLIPConfig) -> list[Piece]:
    """Every tensor of a model of `config`, as torch key(s) <-> flax path(s)."""
    v, t, embed = config.vision, config.text, config.embed_dim
    patch = (v.patch_size, v.patch_size, 3, v.width)  # HWIO over RGB
    pieces = [Piece(("visual.patch_embed.weight",), ("img/embedding/kernel",), (patch,),
                    lambda a: [a[0].transpose(2, 3, 1, 0)], lambda a: [a[0].transpose(3, 2, 0, 1)])]
    if v.patch_bias:
        pieces.append(_same("visual.patch_embed.bias", "img/embedding/bias", (v.width,)))
    if v.pos_embed == "learned":  # a sin-cos table is computed from the config on both sides, never stored
        pieces.append(_same("visual.pos_embed", "img/pos_embedding", (1, v.pos_embed_prefix + v.num_patches, v.width)))
    if v.has_class_token:
        pieces.append(_same("visual.cls_token", "img/cls", (1, 1, v.width)))
    if v.ln_pre:
        pieces += _layer_norm("visual.norm_pre", "img/ln_pre", v.width)
    pieces += _encoder("visual", "img/Transformer", v.layers, v.width, v.heads, v.mlp_ratio,
                       norm_path="img/encoder_norm" if v.norm_after_pool else None, final_norm=v.final_norm)
    if v.pool == "map":
        pieces += _map_head("visual.map_head", "img/MAPHead_0", v.width, v.heads, v.mlp_ratio)
    pieces += _head("visual", "img", v.width, embed, v.head_bias)
    pieces += [_same("text.token_embed.weight", "txt/Embed_0/embedding", (t.vocab_size, t.width)),
               _same("text.pos_embed", "txt/pos_embedding", (1, t.context_length, t.width))]
    pieces += _encoder("text", "txt/Encoder_0", t.layers, t.width, t.heads, t.mlp_ratio)
    if t.pool == "map":
        pieces += _map_head("text.map_head", "txt/MAPHead_0", t.width, t.heads, t.mlp_ratio)
    pieces += _head("text", "txt", t.width, embed, t.head_bias)
    pieces.append(Piece(("logit_scale",), ("t",), ((1,),), lambda a: [a[0].reshape(1)], lambda a: [a[0].reshape(())]))
    return pieces


def _head(torch_tower: str, flax_tower: str, width: int, embed_dim: int, bias: bool) -> list[Piece]:
    """The projection to the embedding space (big_vision's `head`), with its bias when the config has one."""
    pieces = [_linear(f"{torch_tower}.proj.weight", f"{flax_tower}/head/kernel", width, embed_dim)]
    return pieces + [_same(f"{torch_tower}.proj.bias", f"{flax_tower}/head/bias", (embed_dim,))] if bias else pieces


def flatten(tree: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(path, leaf) of a nested params dict, paths joined with '/'."""
    for key, value in tree.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from flatten(value, f"{path}/")
        else:
            yield path, value


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, leaf = path.split("/")
        node = tree
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = value
    return tree


def _check_keys(have: set[str], want: set[str], what: str, source: str) -> None:
    missing, unexpected = sorted(want - have), sorted(have - want)
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else "")] if missing else []) + \
                ([f"unexpected {', '.join(unexpected[:5])}" + (" ..." if len(unexpected) > 5 else "")]
                 if unexpected else [])
        raise CheckpointError(f"{source}: {what} does not fit the config: {'; '.join(parts)}")


def torch_to_flax(state: Mapping[str, Any], config: CLIPConfig, *, source: str = "state dict") -> dict[str, Any]:
    """A torch state dict (numpy arrays, or anything `np.asarray` reads) -> the flax `params` tree for `config`."""
    pieces = pieces_for(config)
    _check_keys(set(state), {k for p in pieces for k in p.torch_keys}, "the torch state dict", source)
    flat = {}
    for piece in pieces:
        for path, array in zip(piece.flax_paths, piece.to_flax([np.asarray(state[k]) for k in piece.torch_keys]),
                               strict=True):
            flat[path] = np.array(array, order="C")  # a copy (ascontiguousarray would make a scalar 1-d)
    _check_shapes(flat, expected_flax_shapes(config), source)
    return unflatten(flat)


def flax_to_torch(params: Mapping[str, Any], config: CLIPConfig, *, source: str = "flax params") -> dict[str, np.ndarray]:
    """The flax `params` tree -> a torch state dict of numpy arrays (what save_safetensors / load_state_dict take
    after torch.from_numpy). Every leaf's shape is checked first: the torch side cannot tell the head split of an
    attention kernel (it is reshaped to (width, width)), so a layer with another head count must be caught here."""
    flat = {path: np.asarray(leaf) for path, leaf in flatten(params)}
    pieces = pieces_for(config)
    _check_keys(set(flat), {p for piece in pieces for p in piece.flax_paths}, "the flax params tree", source)
    _check_shapes(flat, expected_flax_shapes(config), source)
    state = {}
    for piece in pieces:
        for key, array in zip(piece.torch_keys, piece.to_torch([flat[p] for p in piece.flax_paths]), strict=True):
            state[key] = np.array(array, order="C")
    return state


def expected_flax_shapes(config: CLIPConfig) -> dict[str, Shape]:
    """The shape of every flax leaf of a model of `config` (no jax, no model: the pieces say them)."""
    return {path: shape for piece in pieces_for(config)
            for path, shape in zip(piece.flax_paths, piece.flax_shapes, strict=True)}


def _check_shapes(flat: Mapping[str, np.ndarray], expected: Mapping[str, tuple[int, ...]], source: str) -> None:
    for path, shape in expected.items():
        if tuple(flat[path].shape) != shape:
            raise CheckpointError(f"{source}: {path} has shape {tuple(flat[path].shape)}, the config needs {shape}")
