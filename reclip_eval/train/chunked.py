"""The contrastive loss and its gradients over a batch too large for memory, in micro-batches, exactly.

Plain gradient accumulation is wrong for a contrastive loss: each micro-batch would only see its own negatives,
so the loss (and what the model learns) would depend on the micro-batch size. Instead (GradCache, Gao et al.
2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"):

1. embed every micro-batch without keeping activations;
2. compute the full-batch loss on those embeddings and its gradient with respect to them (cheap: B x D);
3. embed every micro-batch again, now with activations, and back-propagate the cached embedding gradients.

The parameter gradients equal the full-batch ones (tests/test_chunked_loss.py), for one extra forward pass, with
the peak activation memory of one micro-batch. Token masking draws random numbers in the forward pass, so each
micro-batch's random state is saved before step 1 and restored before step 3: both passes mask the same tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from reclip_eval.train.loss import contrastive_loss


def _set_random_state(state: tuple[torch.Tensor, list[torch.Tensor]]) -> None:
    torch.set_rng_state(state[0])
    if state[1]:
        torch.cuda.set_rng_state_all(state[1])


def _random_state() -> tuple[torch.Tensor, list[torch.Tensor]]:
    return torch.get_rng_state(), (torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [])


def chunked_contrastive_backward(
    net: torch.nn.Module,
    pixels: torch.Tensor,
    tokens: torch.Tensor,
    micro_batch_size: int,
    *,
    mask_ratio: float = 0.0,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-propagate the contrastive loss of the whole (local) batch through `net` in micro-batches of
    `micro_batch_size` pairs; returns (loss, temperature scale), detached. Under DDP and FSDP, gradients are
    synchronised only on the last micro-batch's backward."""
    pixel_chunks, token_chunks = pixels.split(micro_batch_size), tokens.split(micro_batch_size)
    states, images, texts = [], [], []
    with torch.no_grad():
        for chunk_pixels, chunk_tokens in zip(pixel_chunks, token_chunks, strict=True):
            states.append(_random_state())
            with autocast():
                image_emb, text_emb, scale = net(chunk_pixels, chunk_tokens, mask_ratio=mask_ratio)
            images.append(image_emb.float())
            texts.append(text_emb.float())
    image_all = torch.cat(images).requires_grad_()
    text_all = torch.cat(texts).requires_grad_()
    scale_leaf = scale.detach().float().requires_grad_()
    loss = contrastive_loss(image_all, text_all, scale_leaf)
    loss.backward()
    image_grads, text_grads = image_all.grad.split(micro_batch_size), text_all.grad.split(micro_batch_size)
    no_sync = getattr(net, "no_sync", None)  # DDP
    set_gradient_sync = getattr(net, "set_requires_gradient_sync", None)  # FSDP: reduce-scatter once, at the end
    after = _random_state()
    for index, (chunk_pixels, chunk_tokens) in enumerate(zip(pixel_chunks, token_chunks, strict=True)):
        last = index == len(pixel_chunks) - 1
        sync = contextlib.nullcontext() if last or no_sync is None else no_sync()
        if set_gradient_sync is not None:
            set_gradient_sync(last)
        _set_random_state(states[index])
        with sync:
            with autocast():
                image_emb, text_emb, chunk_scale = net(chunk_pixels, chunk_tokens, mask_ratio=mask_ratio)
            # d(loss)/d(params) = sum over embeddings of (cached d loss / d embedding) * d embedding / d params;
            # the temperature enters the loss once, so its gradient goes in once: with the last micro-batch, whose
            # backward is the one DDP synchronises and so must reach every parameter.
            surrogate = (image_emb.float() * image_grads[index]).sum() + (text_emb.float() * text_grads[index]).sum()
            if last:
                surrogate = surrogate + chunk_scale.float() * scale_leaf.grad
            surrogate.backward()
    _set_random_state(after)  # continue from where the first pass left the generator, as if run once
    return loss.detach(), scale.detach()
