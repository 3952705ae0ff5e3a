"""Micro-batched contrastive training (GradCache) gives the loss and gradients of the full batch: on one process,
with token masking, on two DDP processes, and in the trainer step for step."""


import pytest
import torch

from reclip_eval.models.token_reduction import ImageTokens, step_generator
from reclip_eval.train.chunked import chunked_contrastive_backward
from reclip_eval.train.loss import contrastive_loss

from .contrastive_batch import (
    full_batch_reference,
    join_group,
    local_part,
    mean_over_processes,
    run_processes,
    tiny_batch,
    tiny_model,
)


def _grads(model):
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def _assert_grads_close(got, expected):
    """Equal up to float32 summation order: each element within 1e-5 of the tensor's largest gradient."""
    assert got.keys() == expected.keys()
    for name in expected:
        scale = expected[name].abs().max().item()
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-5 * scale + 1e-9, msg=name)


@pytest.mark.parametrize("micro", [1, 2, 4, 8])
def test_micro_batches_give_the_full_batch_loss_and_gradients(micro):
    pixels, tokens = tiny_batch()
    full = tiny_model()
    image, text, scale = full(pixels, tokens)
    loss = contrastive_loss(image, text, scale)
    loss.backward()

    chunked = tiny_model()
    got_loss, got_scale = chunked_contrastive_backward(chunked, pixels, tokens, micro)
    torch.testing.assert_close(got_loss, loss.detach(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got_scale, scale.detach())
    _assert_grads_close(_grads(chunked), _grads(full))


def test_token_masking_is_replayed_identically_in_the_second_pass():
    """Reference: the memory-hungry way with the same masks, i.e. every micro-batch forwarded with autograd with
    its own generator, embeddings concatenated, one backward. Were the second pass to draw other masks than the
    first, the gradients would differ; the global RNG is not touched at all."""
    pixels, tokens = tiny_batch()
    spec = ImageTokens("random", ratio=0.5)

    def generator(chunk):
        return step_generator("cpu", 7, 0, 3, 0, chunk)

    reference = tiny_model()
    outputs = [reference(p, t, spec, generator(i))
               for i, (p, t) in enumerate(zip(pixels.split(2), tokens.split(2), strict=True))]
    loss = contrastive_loss(torch.cat([o[0] for o in outputs]), torch.cat([o[1] for o in outputs]), outputs[-1][2])
    loss.backward()

    chunked = tiny_model()
    torch.manual_seed(7)
    before = torch.get_rng_state()
    got_loss, _ = chunked_contrastive_backward(chunked, pixels, tokens, 2, image_tokens=spec, generator=generator)
    torch.testing.assert_close(got_loss, loss.detach(), rtol=1e-6, atol=1e-6)
    _assert_grads_close(_grads(chunked), _grads(reference))
    assert torch.equal(torch.get_rng_state(), before)  # masking never draws from the global generator
    unmasked = tiny_model()
    other, _ = chunked_contrastive_backward(unmasked, pixels, tokens, 2)
    assert not torch.allclose(other, got_loss)  # the masks matter to the loss: the comparison can fail


def _worker(rank, world, init_file, out_file):
    with join_group(rank, world, init_file):
        model = torch.nn.parallel.DistributedDataParallel(tiny_model())
        pixels, tokens = tiny_batch()
        part = local_part(rank, world)
        loss, _ = chunked_contrastive_backward(model, pixels[part], tokens[part], 2)
        mean_loss = mean_over_processes(loss)
        if rank == 0:
            torch.save({"loss": mean_loss, "grads": _grads(model.module)}, out_file)


def test_two_processes_with_micro_batches_equal_one_process_on_the_full_batch(tmp_path):
    full, loss = full_batch_reference()
    result = run_processes(_worker, tmp_path)
    torch.testing.assert_close(result["loss"], loss, rtol=1e-6, atol=1e-6)
    _assert_grads_close(result["grads"], _grads(full))


def test_trainer_with_micro_batches_follows_the_same_loss_curve(tmp_path):
    from reclip_eval.train.loop import train
    from reclip_eval.train.recipe import load_recipe

    overrides = ["stages.0.steps=6", "stages.1.steps=3", "stages.0.warmup_steps=1", "stages.1.warmup_steps=1",
                 "data.workers=0"]
    plain = load_recipe("tiny-shapes", overrides)
    micro = load_recipe("tiny-shapes", [*overrides, "stages.0.micro_batch_size=8"])
    assert micro.stages[1].micro_batch_size == 8  # inherited by the finetune stage
    _, plain_reports = train(plain, tmp_path / "plain", data_dir=tmp_path / "data", device="cpu")
    _, micro_reports = train(micro, tmp_path / "micro", data_dir=tmp_path / "data", device="cpu")
    for a, b in zip(plain_reports, micro_reports, strict=True):
        assert a.losses == pytest.approx(b.losses, rel=1e-4, abs=1e-5)


def test_micro_batch_size_must_divide_the_per_process_batch(tmp_path):
    from reclip_eval.train.loop import TrainingError, train
    from reclip_eval.train.recipe import load_recipe

    recipe = load_recipe("tiny-shapes", ["stages.0.steps=1", "stages.1.steps=1", "stages.0.warmup_steps=0",
                                         "stages.1.warmup_steps=0", "stages.0.micro_batch_size=5", "data.workers=0"])
    with pytest.raises(TrainingError, match="micro_batch_size 5 must divide the per-process batch 32"):
        train(recipe, tmp_path / "out", data_dir=tmp_path / "data", device="cpu")
