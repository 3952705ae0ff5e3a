"""The contrastive loss and its gradients over a batch too large for memory, in micro-batches, exactly.

Plain gradient accumulation is wrong for a contrastive loss: each micro-batch would only see its own negatives,
so the loss (and what the model learns) would depend on the micro-batch size. Instead (GradCache, Gao et al.
2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup"):

1. embed every micro-batch without keeping activations;
2. compute the full-batch loss on those embeddings and its gradient with respect to them (cheap: B x D);
3. embed every micro-batch again, now with activations, and back-propagate the cached embedding gradients.

The parameter gradients equal the full-batch ones (tests/test_chunked_loss.py), for one extra forward pass, with
the peak activation memory of one micro-batch. Token masking draws from `generator(i)`, a new generator for
micro-batch i built the same way in both passes, so both passes mask the same tokens.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import torch

from reclip_eval.models.token_reduction import ImageTokens
from reclip_eval.train.loss import contrastive_loss


def chunked_contrastive_backward(
    net: torch.nn.Module,
    pixels: torch.Tensor,
    tokens: torch.Tensor,
    micro_batch_size: int,
    *,
    image_tokens: ImageTokens | None = None,
    generator: Callable[[int], torch.Generator | None] = lambda chunk: None,
    autocast: Callable[[], contextlib.AbstractContextManager] = contextlib.nullcontext,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Back-propagate the contrastive loss of the whole (local) batch through `net` in micro-batches of
    `micro_batch_size` pairs; returns (loss, temperature scale), detached. Under DDP and FSDP, gradients are
    synchronised only on the last micro-batch's backward."""
    pixel_chunks, token_chunks = pixels.split(micro_batch_size), tokens.split(micro_batch_size)
    images, texts = [], []
    with torch.no_grad():
        for index, (chunk_pixels, chunk_tokens) in enumerate(zip(pixel_chunks, token_chunks, strict=True)):
            with autocast():
                image_emb, text_emb, scale = net(chunk_pixels, chunk_tokens, image_tokens, generator(index))
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
    for index, (chunk_pixels, chunk_tokens) in enumerate(zip(pixel_chunks, token_chunks, strict=True)):
        last = index == len(pixel_chunks) - 1
        sync = contextlib.nullcontext() if last or no_sync is None else no_sync()
        if set_gradient_sync is not None:
            set_gradient_sync(last)
        with sync:
            with autocast():
                image_emb, text_emb, chunk_scale = net(chunk_pixels, chunk_tokens, image_tokens, generator(index))
            # d(loss)/d(params) = sum over embeddings of (cached d loss / d embedding) * d embedding / d params;
            # the temperature enters the loss once, so its gradient goes in once: with the last micro-batch, whose
            # backward is the one DDP synchronises and so must reach every parameter.
            surrogate = (image_emb.float() * image_grads[index]).sum() + (text_emb.float() * text_grads[index]).sum()
            if last:
                surrogate = surrogate + chunk_scale.float() * scale_leaf.grad
            surrogate.backward()
    return loss.detach(), scale.detach()
