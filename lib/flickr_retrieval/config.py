"""One frozen object per training run, saved with every result it produces."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from .losses import LOSS_SPECS, loss_spec

MODELS = ("dual_encoder", "cosine_projection", "pair_classifier")
LOSSES = tuple(LOSS_SPECS)
NEGATIVES = ("none", "random", "random_once", "most_different", "in_batch", "hardest_in_batch")
SIMILARITIES = ("cosine", "dot", "euclidean")
FEATURE_NORMS = ("none", "l2", "standardize")
PRECISIONS = ("auto", "float32", "bfloat16")
LR_SCHEDULES = ("constant", "cosine")
IMAGE_VIEWS = ("full", "flip", "crops")  # the names of flickr_retrieval.images.VIEW_SETS (tested equal)
TEST_VIEWS = ("full", "mean")

#: Fields added after run records and exports were first written, with their defaults: written by
#: :meth:`RunConfig.to_dict` only when set otherwise, so that every earlier config's dict, run-cache
#: key, record and ensemble member id stays exactly what it was.
LATER_FIELDS = {
    "image_views": "full",
    "test_view": "full",
    "tune_image_heads": False,
    "image_head_lr": 1e-4,
    "hardest_weight": 0.0,
    "hardest_from_epoch": 1,
    "distill_teacher": "",
    "distill_weight": 0.0,
    "distill_temperature": 0.05,
}

#: The fields that are not part of what a run trains (see :meth:`RunConfig.setting`).
SETTING_EXCLUDES = ("name", "seed", "precision")

#: The environment variable that shifts every training seed (see :func:`seed_offset`).
SEED_OFFSET_VARIABLE = "RCP217_SEED_OFFSET"


def seed_offset() -> int:
    """The shift added to every training seed, from ``RCP217_SEED_OFFSET`` (default 0).

    ``RCP217_SEED_OFFSET=100 ./run_tests.sh`` trains every run of the study with other random
    draws (initialisation, batch order, negatives, dropout) and checks the outputs against the
    committed ones: the nearest thing to another CPU that can be run on one machine. Configs keep
    their nominal seed; the run cache and the exports record the offset.
    """
    raw = os.environ.get(SEED_OFFSET_VARIABLE, "0").strip() or "0"
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{SEED_OFFSET_VARIABLE} must be an integer, got {raw!r}") from None
    if not 0 <= value < 2**31:
        raise ValueError(f"{SEED_OFFSET_VARIABLE} must be from 0 to 2**31 - 1, got {value}")
    return value


def allowed_combinations() -> str:
    """What each loss trains, as the losses declare it (:data:`flickr_retrieval.losses.LOSS_SPECS`)."""
    return "; ".join(
        f"{' or '.join(spec.models)} + {name}: negatives {' or '.join(spec.negatives)}"
        for name, spec in LOSS_SPECS.items()
    )


@dataclass(frozen=True)
class FeatureSetting:
    """The part of a config that decides the input features (one cache of loaded, normalised
    features per setting): :meth:`RunConfig.feature_setting`."""

    image_backbone: str
    text_encoder: str
    text_pooling: str
    feature_norm: str
    pretrained_images: bool
    image_views: str
    test_view: str
    tune_image_heads: bool


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a trained model and its evaluation.

    The defaults are the report's final model (section IX-XI): Wang et al.'s two branches,
    CosineEmbeddingLoss with one random negative per caption, Adam 1e-4, batch 64, up to 30 epochs
    with early stopping on the dev split.
    """

    name: str = "dual_encoder"
    # features
    image_backbone: str = "efficientnet_lite0"  # one backbone, or several joined by "+" (concatenated)
    text_encoder: str = "minilm"  # one sentence encoder, or several joined by "+" (features concatenated)
    text_pooling: str = "mean"  # "mean" or "cls"
    feature_norm: str = "none"  # "none", "l2" (each vector), "standardize" (train mean/std per dimension)
    pretrained_images: bool = True  # False: seeded random CNN weights (the report's broken features)
    # feature augmentation: the views of each training image a run draws from, one per image per epoch
    # ("full": the image only; "flip": it and its mirror; "crops": 10 views, see images.VIEW_SETS), and
    # what dev and test score: the whole image ("full") or the mean of the views' CNN features ("mean")
    image_views: str = "full"
    test_view: str = "full"
    # partial fine-tuning: the last layer of each image backbone (its 1x1 head convolution, from the
    # cached activations that enter it; see head_features) trained with the branches, at image_head_lr
    tune_image_heads: bool = False
    image_head_lr: float = 1e-4
    # model
    model: str = "dual_encoder"
    hidden_dim: int = 2048
    embed_dim: int = 512
    dropout: float = 0.5
    similarity: str = "cosine"
    # objective
    loss: str = "cosine_embedding"
    negatives: str = "random"
    label_scheme: str = "pm1"  # CosineEmbeddingLoss targets: "pm1" (+1/-1, correct) or "01" (the report's bug)
    margin: float = 0.0  # CosineEmbeddingLoss margin, or the triplet margin (VSE++: 0.2)
    temperature: float = 0.05  # InfoNCE initial temperature
    learn_temperature: bool = True
    # VSE++'s hardest-negative hinge (margin ``margin``) added to InfoNCE with this weight, from epoch
    # ``hardest_from_epoch`` on (the epochs before it are a warm-up on InfoNCE alone); 0: InfoNCE alone
    hardest_weight: float = 0.0
    hardest_from_epoch: int = 1
    # distillation: the KL divergence from a teacher's in-batch softmax to the student's (captions over
    # images and images over captions, at ``distill_temperature``), added with this weight; the teacher's
    # embeddings of the training split arrive with the features (SplitFeatures.teacher_*); its name is
    # what the experiment registered it under (flickr_retrieval.teacher); 0: no teacher
    distill_teacher: str = ""
    distill_weight: float = 0.0
    distill_temperature: float = 0.05
    finetune_text: bool = False  # also train the text encoder (models.TextTunedDualEncoder), from a trained run
    text_lr: float = 2e-5  # the text encoder's learning rate when fine-tuned
    # optimisation
    lr: float = 1e-4
    batch_size: int = 64
    captions_per_image: int = 1  # captions of each training image visited per epoch (1: a random one; 5: all)
    max_epochs: int = 30
    lr_schedule: str = "constant"  # "constant", or "cosine": decayed to 0 over max_epochs, step by step
    early_stopping: bool = True  # select the dev-best epoch (t2i R@1+R@5+R@10), restore its weights
    patience: int = 5  # epochs without a better dev score before stopping (>= max_epochs: never stops early)
    seed: int = 0
    # training arithmetic: "bfloat16" autocast for the forward passes (weights, gradients, optimiser and
    # every evaluation in float32), "float32", or "auto": what this machine does natively, decided once
    # per process (flickr_retrieval.precision; RCP217_PRECISION overrides). How a run computes, not
    # what it trains: left out of its setting (see setting()); the run cache keys the effective one.
    precision: str = "auto"

    def __post_init__(self):
        for value, allowed, what in (
            (self.model, MODELS, "model"),
            (self.loss, LOSSES, "loss"),
            (self.negatives, NEGATIVES, "negatives"),
            (self.similarity, SIMILARITIES, "similarity"),
            (self.feature_norm, FEATURE_NORMS, "feature_norm"),
            (self.text_pooling, ("mean", "cls"), "text_pooling"),
            (self.label_scheme, ("pm1", "01"), "label_scheme"),
            (self.precision, PRECISIONS, "precision"),
            (self.lr_schedule, LR_SCHEDULES, "lr_schedule"),
            (self.image_views, IMAGE_VIEWS, "image_views"),
            (self.test_view, TEST_VIEWS, "test_view"),
        ):
            if value not in allowed:
                raise ValueError(f"{what} must be one of {allowed}, got {value!r}")
        if not 1 <= self.captions_per_image <= 5:
            raise ValueError(f"captions_per_image must be 1 to 5, got {self.captions_per_image}")
        spec = loss_spec(self.loss)  # the loss says what it trains
        if self.model not in spec.models or self.negatives not in spec.negatives:
            raise ValueError(
                f"model {self.model!r} with loss {self.loss!r} and negatives {self.negatives!r} cannot be trained; "
                f"the allowed combinations are: {allowed_combinations()}"
            )
        if self.label_scheme not in spec.label_schemes:
            raise ValueError(
                f"loss {self.loss!r} takes label_scheme {' or '.join(spec.label_schemes)}, not {self.label_scheme!r}"
            )
        if self.model != "dual_encoder" and self.similarity != "cosine":
            raise ValueError(
                f"similarity {self.similarity!r} needs model 'dual_encoder' ({self.model!r} scores with its own function)"
            )
        if self.finetune_text and "+" in self.text_encoder:
            raise ValueError(
                "finetune_text trains one sentence encoder, not the concatenation " + repr(self.text_encoder)
            )
        if self.finetune_text and not (self.model == "dual_encoder" and spec.finetunes_text):
            trainable = [name for name, s in LOSS_SPECS.items() if s.finetunes_text]
            raise ValueError(f"finetune_text trains a 'dual_encoder' with loss {' or '.join(map(repr, trainable))}")
        for name in ("lr", "text_lr", "temperature", "image_head_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.hardest_weight >= 0.0:
            raise ValueError(f"hardest_weight must be 0 or positive, got {self.hardest_weight!r}")
        if self.hardest_weight > 0 and not spec.takes_hardest_term:
            takers = [name for name, s in LOSS_SPECS.items() if s.takes_hardest_term]
            raise ValueError(f"hardest_weight adds a hardest-negative hinge to loss {' or '.join(map(repr, takers))}")
        if not self.distill_weight >= 0.0:
            raise ValueError(f"distill_weight must be 0 or positive, got {self.distill_weight!r}")
        if not self.distill_temperature > 0:
            raise ValueError(f"distill_temperature must be positive, got {self.distill_temperature!r}")
        if self.distill_weight > 0 and (spec.inputs != "batch" or self.finetune_text or not self.distill_teacher):
            raise ValueError(
                "distill_weight adds a teacher's in-batch distribution to a batch loss on frozen text features, "
                "from the teacher named by distill_teacher"
            )
        if self.distill_weight == 0 and self.distill_teacher:
            raise ValueError(f"distill_teacher {self.distill_teacher!r} is named but distill_weight is 0")
        for name in ("batch_size", "max_epochs", "patience", "hidden_dim", "embed_dim", "hardest_from_epoch"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.test_view == "mean" and self.image_views == "full":
            raise ValueError("test_view 'mean' averages the views of image_views: set image_views to 'flip' or 'crops'")
        if self.image_views != "full" and (self.model != "dual_encoder" or not self.pretrained_images):
            raise ValueError("image_views other than 'full' train a 'dual_encoder' on pretrained image features")
        if self.tune_image_heads and (
            self.model != "dual_encoder"
            or not self.pretrained_images
            or self.finetune_text
            or self.feature_norm != "none"
            or self.image_views != "full"
        ):
            raise ValueError(
                "tune_image_heads trains a 'dual_encoder' on pretrained backbones, with feature_norm 'none', "
                "image_views 'full' and a frozen text encoder"
            )

    def unused_fields(self) -> list[str]:
        """The fields this run's model and loss do not read (their values are defaults, not settings):
        a projection or a pair classifier has no hidden layer, dropout or embedding size; only a loss
        with a margin reads ``margin``; only a learned-temperature loss its temperature; ..."""
        spec = loss_spec(self.loss)
        unused = []
        if self.model != "dual_encoder":
            unused += ["hidden_dim", "embed_dim", "dropout", "similarity"]
        if not spec.uses_margin and self.hardest_weight == 0:
            unused.append("margin")
        if self.hardest_weight == 0:
            unused.append("hardest_from_epoch")
        if not spec.learns_temperature:
            unused += ["temperature", "learn_temperature"]
        if len(spec.label_schemes) == 1:
            unused.append("label_scheme")
        if not self.finetune_text:
            unused.append("text_lr")
        if not self.early_stopping:
            unused.append("patience")
        if self.image_views == "full":
            unused.append("test_view")
        if not self.tune_image_heads:
            unused.append("image_head_lr")
        if self.distill_weight == 0:
            unused.append("distill_temperature")
        written = self.to_dict()  # a later field left at its default is not written, so not listed
        return [name for name in unused if name in written]

    @property
    def backbones(self) -> list[str]:
        return self.image_backbone.split("+")

    @property
    def text_encoders(self) -> list[str]:
        """The sentence encoders whose features are concatenated (``text_encoder`` joined by "+")."""
        return self.text_encoder.split("+")

    @property
    def effective_precision(self) -> str:
        """The precision training runs in: ``precision``, or this machine's when it is ``"auto"``."""
        from .precision import default_precision

        return default_precision() if self.precision == "auto" else self.precision

    def feature_setting(self) -> FeatureSetting:
        """The input features this config reads, as one object (a key for loaded features)."""
        return FeatureSetting(**{f.name: getattr(self, f.name) for f in dataclasses.fields(FeatureSetting)})

    def setting(self) -> dict:
        """What a run trains, as a dict: every field but its ``name``, its ``seed`` and its
        ``precision`` (how it computes). Two runs of one setting and seed are the same draw, whichever
        machine or arithmetic trained them; their records are read alike."""
        return {k: v for k, v in self.to_dict().items() if k not in SETTING_EXCLUDES}

    def replace(self, **changes) -> RunConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        """Every field, but the :data:`LATER_FIELDS` left at their default."""
        values = dataclasses.asdict(self)
        return {k: v for k, v in values.items() if not (k in LATER_FIELDS and v == LATER_FIELDS[k])}

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        return from_known_fields(cls, values)


def from_known_fields(cls, values: dict):
    """``cls(**values)`` for a dataclass, refusing keys it does not have (a file from another
    version or a typo must not be half-read)."""
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}")
    return cls(**values)
