"""Choose the reference recipe R on dev: train candidate recipes on the same features and seeds and
print their dev R@1+R@5+R@10 per epoch, the kept epoch and the training time. Dev only; test is
never read. 07 records which candidates were measured and why R is the one it uses.

    .venv/bin/python scripts/tune_reference.py efficientnet_lite0+mobilenet_v2 \
        '{"b256x8": {"captions_per_image": 5, "batch_size": 256, "max_epochs": 8, "lr_schedule": "cosine", "patience": 8}}' 0,1

Arguments: the image backbone(s), a JSON object of candidate name -> RunConfig changes (from
InfoNCE, lr 1e-3, batch 128, <= 20 epochs, patience 3), and the seeds.
"""

import json
import sys
import time

from flickr_retrieval.config import RunConfig
from flickr_retrieval.data import load_flickr8k
from flickr_retrieval.inputs import FeatureSpace
from flickr_retrieval.metrics import dev_selection_score
from flickr_retrieval.train import train


def main(backbone: str, candidates: dict, seeds: list[int]) -> None:
    data = load_flickr8k()
    base = RunConfig(
        name="tune",
        image_backbone=backbone,
        loss="infonce",
        negatives="in_batch",
        lr=1e-3,
        batch_size=128,
        max_epochs=20,
        patience=3,
    )
    space = FeatureSpace(base, data)
    feats = {name: space.split(name) for name in ("train", "dev")}
    for name, changes in candidates.items():
        for seed in seeds:
            start = time.perf_counter()
            run = train(base.replace(seed=seed, **changes), feats)
            curve = [round(dev_selection_score(h), 1) for h in run.history]
            kept = run.kept()
            print(
                f"{name} seed {seed}: dev R@1+R@5+R@10 {dev_selection_score(kept):.1f}, "
                f"dev R@1 {kept['dev_R@1']:.1f}, kept epoch {run.best_epoch} of {len(run.history)}, "
                f"{time.perf_counter() - start:.0f} s; per epoch {curve}",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1], json.loads(sys.argv[2]), [int(s) for s in sys.argv[3].split(",")])
