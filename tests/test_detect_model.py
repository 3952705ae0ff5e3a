"""The detector's parts: ViTDet backbone shapes and strides, the shared pos-emb resampling, windowed attention,
the text classifier built from the annotation file's names and synonyms, class-agnostic heads, F-VLM's ensemble."""

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from reclip_eval.detect.backbone import ViTDetBackbone, default_global_blocks, window_partition, window_unpartition
from reclip_eval.detect.config import BackboneConfig, DetectorConfig, HeadsConfig
from reclip_eval.detect.heads import AgnosticMaskPredictor, TextEmbeddingClassifier, ensemble_scores
from reclip_eval.detect.model import OpenVocabDetector
from reclip_eval.detect.vocabulary import build_text_embeddings, categories_from_json, encode_phrases
from reclip_eval.models import CLIP, build_config
from reclip_eval.models.config import PosEmbedResampleConfig
from reclip_eval.models.pos_embed import resample_pos_embed


def _tower(patch=8, pool="gap", image_size=32, layers=2):
    config = build_config("tiny", {"vision": {"patch_size": patch, "pool": pool, "image_size": image_size,
                                              "layers": layers}})
    return CLIP(config)


@pytest.mark.parametrize("patch", [8, 16])
def test_backbone_pyramid_strides_and_shapes(patch):
    clip = _tower(patch=patch, image_size=4 * patch)
    backbone = ViTDetBackbone(clip.visual, BackboneConfig(image_size=128, window_size=4, pyramid_channels=24),
                              clip.config.pos_embed_resample)
    features = backbone(torch.randn(2, 3, 128, 128))
    assert list(features) == ["0", "1", "2", "3", "pool"] and backbone.out_channels == 24
    assert [tuple(f.shape[-2:]) for f in features.values()] == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    assert all(f.shape[:2] == (2, 24) for f in features.values())
    with pytest.raises(ValueError, match="128x128"):
        backbone(torch.randn(1, 3, 96, 128))


@pytest.mark.parametrize("pool", ["gap", "cls"])
def test_pos_embed_resampled_with_the_shared_function(pool):
    clip = _tower(pool=pool)  # 4x4 grid (+ a class token for "cls")
    resample = PosEmbedResampleConfig(mode="bicubic", align_corners=False)
    backbone = ViTDetBackbone(clip.visual, BackboneConfig(image_size=96, window_size=4), resample)
    prefix = clip.config.vision.num_prefix_tokens
    expected = resample_pos_embed(clip.visual.pos_embed.detach(), (4, 4), (12, 12), num_prefix=prefix,
                                  mode="bicubic", align_corners=False)[:, prefix:]
    assert torch.equal(backbone.pos_embed.detach(), expected)  # bit for bit: the finetune stage's function
    assert clip.visual.pos_embed.shape[1] == prefix + 16  # the CLIP model itself is left untouched


def test_window_partition_round_trip_with_padding():
    x = torch.randn(2, 7, 9, 5)
    windows, padded = window_partition(x, 4)
    assert windows.shape == (2 * 2 * 3, 16, 5) and padded == (8, 12)
    assert torch.equal(window_unpartition(windows, 4, padded, (7, 9)), x)


def test_one_window_over_the_grid_is_global_attention():
    clip = _tower()
    image = torch.randn(1, 3, 64, 64)  # 8x8 tokens
    windowed = ViTDetBackbone(clip.visual, BackboneConfig(image_size=64, window_size=8, global_blocks=[]),
                              clip.config.pos_embed_resample)
    global_ = ViTDetBackbone(clip.visual, BackboneConfig(image_size=64, window_size=8, global_blocks=[0, 1]),
                             clip.config.pos_embed_resample)
    assert windowed.window_sizes == [None, None]  # default: the last block of each quarter (here: both) is global
    windowed.window_sizes = [8, 8]
    assert torch.allclose(windowed.token_map(image), global_.token_map(image), atol=1e-5)
    small = ViTDetBackbone(clip.visual, BackboneConfig(image_size=64, window_size=4, global_blocks=[1]),
                           clip.config.pos_embed_resample)
    assert not torch.allclose(small.token_map(image), global_.token_map(image), atol=1e-3)


def test_default_global_blocks_are_vitdets():
    assert default_global_blocks(12) == [2, 5, 8, 11]
    assert default_global_blocks(24) == [5, 11, 17, 23]


def test_text_classifier_uses_names_and_synonyms_from_the_json():
    clip = _tower().eval()
    data = {"categories": [{"id": 3, "name": "aerosol_can", "synonyms": ["aerosol_can", "spray_can"],
                            "frequency": "c"},
                           {"id": 1, "name": "red_circle", "synonyms": ["red_circle", "red_disk"], "frequency": "r"}]}
    categories = categories_from_json(data, "test.json")
    assert [c.id for c in categories] == [1, 3]
    assert categories[1].phrases == ["aerosol can", "spray can"]
    templates = ["a photo of a {}.", "{}."]
    embeddings = build_text_embeddings(clip, categories, templates)
    assert embeddings.shape == (2, clip.config.embed_dim)

    def by_hand(phrases):
        per_phrase = [F.normalize(encode_phrases(clip, [t.format(p) for t in templates]).mean(0), dim=-1)
                      for p in phrases]
        return F.normalize(torch.stack(per_phrase).mean(0), dim=-1)

    assert torch.allclose(embeddings[1], by_hand(["aerosol can", "spray can"]), atol=1e-5)
    assert torch.allclose(embeddings[0], by_hand(["red circle", "red disk"]), atol=1e-5)
    # Another synonym in the file gives another embedding: the names really come from the JSON.
    data["categories"][0]["synonyms"] = ["aerosol_can"]
    changed = build_text_embeddings(clip, categories_from_json(data, "test.json"), templates)
    assert torch.allclose(changed[1], by_hand(["aerosol can"]), atol=1e-5)
    assert not torch.allclose(changed[1], embeddings[1], atol=1e-3)


def test_heads_are_class_agnostic_and_score_by_cosine():
    head = TextEmbeddingClassifier(16, 8, temperature=0.05)
    text = F.normalize(torch.randn(5, 8), dim=-1)
    head.text_embeddings = text
    features = torch.randn(4, 16)
    logits, deltas = head(features)
    assert logits.shape == (4, 6) and deltas.shape == (4, 24)
    assert torch.equal(deltas.view(4, 6, 4), deltas.view(4, 6, 4)[:, :1].expand(-1, 6, -1))
    region = head.region_embeddings(features)
    assert torch.allclose(logits[:, 1:], region @ text.t() / 0.05, atol=1e-5)
    assert torch.allclose(logits[:, 0], region @ F.normalize(head.background, dim=-1) / 0.05, atol=1e-5)
    masks = AgnosticMaskPredictor(8, 8)
    masks.num_classes = 6
    x = torch.randn(3, 8, 14, 14)
    assert masks(x).shape == (3, 6, 28, 28) and torch.equal(masks(x)[:, 0], masks(x)[:, 5])
    assert masks.eval()(x).shape == (3, 1, 28, 28)


def test_ensemble_is_fvlms_geometric_mean():
    det, vlm = torch.tensor([[0.4, 0.2, 0.9]]), torch.tensor([[0.1, 0.8, 0.5]])
    novel = torch.tensor([False, True, False])
    out = ensemble_scores(det, vlm, novel, alpha=0.35, beta=0.65)
    expected = torch.tensor([[0.4**0.65 * 0.1**0.35, 0.2**0.35 * 0.8**0.65, 0.9**0.65 * 0.5**0.35]])
    assert torch.allclose(out, expected)


def test_detector_trains_and_predicts_with_torchvision_mask_rcnn():
    torch.manual_seed(0)
    clip = _tower()
    config = DetectorConfig(backbone=BackboneConfig(image_size=64, window_size=4, global_blocks=[1],
                                                    pyramid_channels=16),
                            heads=HeadsConfig(anchor_sizes=[8, 16, 32, 64, 128], box_convs=1, box_fc_dim=32,
                                              mask_convs=1, roi_batch_size_per_image=16, detections_per_image=20))
    detector = OpenVocabDetector(clip, config)
    detector.set_vocabulary(F.normalize(torch.randn(3, clip.config.embed_dim), dim=-1))
    masks = torch.zeros(1, 64, 64, dtype=torch.uint8)
    masks[0, 8:30, 10:40] = 1
    target = {"boxes": torch.tensor([[10.0, 8.0, 40.0, 30.0]]), "labels": torch.tensor([2]), "masks": masks}
    losses = detector.train()([torch.rand(3, 64, 64)], [target])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()
    assert detector.backbone.blocks[0].attn.qkv.weight.grad is not None
    assert all(p.grad is None for p in detector.roi_heads.vlm.parameters())  # the VLM copy stays frozen
    novel = torch.tensor([False, False, True, True])
    detector.set_vocabulary(F.normalize(torch.randn(4, clip.config.embed_dim), dim=-1), novel)  # open vocabulary
    with torch.no_grad():
        out = detector.eval()([torch.rand(3, 48, 64), torch.rand(3, 64, 40)])
    assert out[0]["masks"].shape[-2:] == (48, 64) and out[1]["masks"].shape[-2:] == (64, 40)
    assert all(len(o["boxes"]) <= 20 and set(o["labels"].tolist()) <= {1, 2, 3, 4} for o in out)
    no_vlm = dataclasses.replace(config, open_vocab=dataclasses.replace(config.open_vocab, vlm_scores=False))
    assert OpenVocabDetector(clip, no_vlm).roi_heads.vlm is None
