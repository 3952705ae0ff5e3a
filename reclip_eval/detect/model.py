"""The open-vocabulary detector: torchvision's Mask R-CNN on the CLIP ViT backbone, RO-ViT style.

Recipe (each choice from the cited paper):
- Plain ViT backbone with windowed + global attention and a simple feature pyramid, 2-conv RPN head, 4conv1fc
  box head and 4-conv mask head with LayerNorm, a fixed square input canvas (resize the longer side, pad):
  ViTDet (Li et al. 2022).
- Class-agnostic box regression and masks; the classifier is cosine similarity of region embeddings to CLIP text
  embeddings of the category names plus a learned background embedding, with a temperature; trained on base
  categories only: F-VLM (Kuo et al. 2023), adopted by RO-ViT (Kim et al. 2023).
- Open-vocabulary inference: the detector's class probabilities are combined with region scores from the frozen
  CLIP image tower (RoIAlign on its token map, through its pooling and projection) by a geometric mean, weight
  alpha for base and beta for novel categories: F-VLM. As in RO-ViT, the detector's own backbone is finetuned,
  so the frozen tower is a separate copy of the pretrained one.
"""

from __future__ import annotations

import copy
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import boxes as box_ops

from reclip_eval.detect.backbone import FEATURE_NAMES, ViTDetBackbone
from reclip_eval.detect.config import DetectorConfig
from reclip_eval.detect.heads import (
    AgnosticMaskPredictor,
    TextEmbeddingClassifier,
    VLMRegionScorer,
    conv_box_head,
    conv_mask_head,
    ensemble_scores,
)
from reclip_eval.models.clip import CLIP

BOX_POOL_SIZE, MASK_POOL_SIZE = 7, 14
VLM_FEATURE = "vlm"  # key of the frozen tower's map in the features dict (MultiScaleRoIAlign ignores it)


class OpenVocabRoIHeads(RoIHeads):
    """torchvision's RoIHeads (training unchanged); at inference the class scores are ensembled with the frozen
    VLM's region scores before the usual per-class NMS and top-k."""

    def __init__(self, *args, vlm: VLMRegionScorer | None, alpha: float, beta: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.vlm = vlm
        self.alpha, self.beta = alpha, beta
        self.register_buffer("novel", torch.zeros(0, dtype=torch.bool), persistent=False)

    def forward(self, features, proposals, image_shapes, targets=None):
        if self.training:
            return super().forward(features, proposals, image_shapes, targets)
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)
        scores = F.softmax(class_logits, -1)
        if self.vlm is not None and VLM_FEATURE in features:
            vlm = self.vlm(features[VLM_FEATURE], proposals)
            scores = torch.cat([scores[:, :1], ensemble_scores(scores[:, 1:], vlm, self.novel, self.alpha,
                                                               self.beta)], dim=1)
        boxes, scores, labels = self.select_detections(scores, box_regression, proposals, image_shapes)
        result = [{"boxes": b, "labels": label, "scores": s} for b, s, label in zip(boxes, scores, labels, strict=True)]
        if self.has_mask():
            mask_features = self.mask_head(self.mask_roi_pool(features, boxes, image_shapes))
            probs = self.mask_predictor(mask_features).sigmoid()  # (N, 1, 28, 28): one mask whatever the class
            for r, image_probs in zip(result, probs.split([len(b) for b in boxes]), strict=True):
                r["masks"] = image_probs
        return result, {}

    def select_detections(self, scores, box_regression, proposals, image_shapes):
        """torchvision's postprocess_detections on probabilities (it applies the softmax itself)."""
        num_classes = scores.shape[-1]
        boxes_per_image = [len(p) for p in proposals]
        pred_boxes = self.box_coder.decode(box_regression, proposals)
        out_boxes, out_scores, out_labels = [], [], []
        for boxes, image_scores, image_shape in zip(pred_boxes.split(boxes_per_image),
                                                    scores.split(boxes_per_image), image_shapes, strict=True):
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            labels = torch.arange(num_classes, device=scores.device).view(1, -1).expand_as(image_scores)
            boxes, image_scores, labels = boxes[:, 1:].reshape(-1, 4), image_scores[:, 1:].reshape(-1), \
                labels[:, 1:].reshape(-1)
            keep = torch.where(image_scores > self.score_thresh)[0]
            boxes, image_scores, labels = boxes[keep], image_scores[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, image_scores, labels = boxes[keep], image_scores[keep], labels[keep]
            keep = box_ops.batched_nms(boxes, image_scores, labels, self.nms_thresh)[: self.detections_per_img]
            out_boxes.append(boxes[keep])
            out_scores.append(image_scores[keep])
            out_labels.append(labels[keep])
        return out_boxes, out_scores, out_labels


class OpenVocabDetector(MaskRCNN):
    """Labels are 1..C over the current vocabulary (0 = background); `set_vocabulary` switches it."""

    def __init__(self, clip: CLIP, config: DetectorConfig):
        size = config.backbone.image_size
        heads = config.heads
        backbone = ViTDetBackbone(clip.visual, config.backbone, clip.config.pos_embed_resample)
        channels = backbone.out_channels
        anchors = AnchorGenerator(tuple((s,) for s in heads.anchor_sizes),
                                  (tuple(heads.aspect_ratios),) * len(heads.anchor_sizes))
        canonical = max(1, round(heads.canonical_box_size * size / 1024))
        box_pool = MultiScaleRoIAlign(list(FEATURE_NAMES), BOX_POOL_SIZE, 2, canonical_scale=canonical)
        mask_pool = MultiScaleRoIAlign(list(FEATURE_NAMES), MASK_POOL_SIZE, 2, canonical_scale=canonical)
        box_head = conv_box_head(channels, BOX_POOL_SIZE, heads.box_convs, heads.box_fc_dim)
        predictor = TextEmbeddingClassifier(heads.box_fc_dim, clip.config.embed_dim, config.classifier.temperature)
        preprocess = clip.config.preprocess
        super().__init__(
            backbone, num_classes=None,
            # The longer side goes to `size` and the batch is padded to size x size (a fixed canvas, ViTDet).
            min_size=size, max_size=size, size_divisible=size,
            image_mean=list(preprocess.mean), image_std=list(preprocess.std),
            rpn_anchor_generator=anchors,
            rpn_head=RPNHead(channels, len(heads.aspect_ratios), conv_depth=heads.rpn_conv_depth),
            rpn_pre_nms_top_n_train=heads.rpn_pre_nms_top_n_train,
            rpn_post_nms_top_n_train=heads.rpn_post_nms_top_n_train,
            rpn_pre_nms_top_n_test=heads.rpn_pre_nms_top_n_test,
            rpn_post_nms_top_n_test=heads.rpn_post_nms_top_n_test,
            box_roi_pool=box_pool, box_head=box_head, box_predictor=predictor,
            mask_roi_pool=mask_pool, mask_head=conv_mask_head(channels, heads.mask_convs),
            mask_predictor=AgnosticMaskPredictor(channels, channels),
        )
        vlm = None
        if config.open_vocab.vlm_scores:
            tower = copy.deepcopy(clip.visual)
            tower.set_image_size(size, clip.config.pos_embed_resample)
            vlm = VLMRegionScorer(tower, float(clip.temperature_scale().detach()))
        old = self.roi_heads
        self.roi_heads = OpenVocabRoIHeads(
            old.box_roi_pool, old.box_head, old.box_predictor, 0.5, 0.5, heads.roi_batch_size_per_image, 0.25,
            None, heads.score_threshold, heads.nms_threshold, heads.detections_per_image,
            mask_roi_pool=old.mask_roi_pool, mask_head=old.mask_head, mask_predictor=old.mask_predictor,
            vlm=vlm, alpha=config.open_vocab.alpha, beta=config.open_vocab.beta)
        self.config = config
        if config.backbone.freeze:  # F-VLM: only the pyramid and the heads train
            for name, param in backbone.named_parameters():
                if not name.startswith("pyramid."):
                    param.requires_grad_(False)

    def set_vocabulary(self, text_embeddings: torch.Tensor, novel: torch.Tensor | None = None) -> None:
        """Score against these (C, D) L2-normalised embeddings; `novel` (C,) marks categories not trained on."""
        device = self.roi_heads.box_predictor.background.device
        embeddings = text_embeddings.to(device=device, dtype=torch.float32)
        self.roi_heads.box_predictor.text_embeddings = embeddings
        self.roi_heads.mask_predictor.num_classes = 1 + len(embeddings)
        novel = torch.zeros(len(embeddings), dtype=torch.bool) if novel is None else novel
        self.roi_heads.novel = novel.to(device)
        if self.roi_heads.vlm is not None:
            self.roi_heads.vlm.text_embeddings = embeddings

    def forward(self, images, targets=None):
        if self.training:
            return super().forward(images, targets)
        original_sizes = [tuple(image.shape[-2:]) for image in images]
        image_list, _ = self.transform(images)
        features = self.backbone(image_list.tensors)
        proposals, _ = self.rpn(image_list, features)
        if self.roi_heads.vlm is not None:
            features = OrderedDict(features)
            features[VLM_FEATURE] = self.roi_heads.vlm.token_map(image_list.tensors)
        detections, _ = self.roi_heads(features, proposals, image_list.image_sizes)
        return self.transform.postprocess(detections, image_list.image_sizes, original_sizes)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a detector checkpoint stores: everything but the frozen CLIP copy (saved as its own
        checkpoint beside them)."""
        return {k: v for k, v in self.state_dict().items() if not k.startswith("roi_heads.vlm.")}
