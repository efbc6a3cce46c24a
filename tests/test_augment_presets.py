"""Every augment preset moves masks with their images: an image whose grey level encodes each
pixel's class must still encode it after the pipeline, and padding is ignored."""

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

CODES = np.array([20, 80, 140, 200, 250])  # grey level of classes 0..4 (4 = a small class)


def coded_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 200x300 image of class blocks whose grey level is the class code."""
    mask = np.zeros((200, 300), dtype=np.uint8)
    for _ in range(6):
        y, x = rng.integers(0, 150), rng.integers(0, 250)
        h, w = rng.integers(30, 80), rng.integers(30, 80)
        mask[y : y + h, x : x + w] = rng.integers(1, 5)
    image = np.repeat(CODES[mask].astype(np.uint8)[..., None], 3, axis=2)
    return image, mask


@pytest.mark.parametrize("preset", ["none", "basic", "strong", "em"])
def test_masks_stay_aligned_with_images(make_cfg, preset) -> None:
    cfg = make_cfg("data=camvid", f"augment={preset}", "data.crop_size=128", tiny=False)
    train, evaluate = instantiate(cfg.augment.train), instantiate(cfg.augment.eval)
    train.compose.set_random_seed(0)
    mean = torch.tensor(list(cfg.data.mean))[:, None, None]
    std = torch.tensor(list(cfg.data.std))[:, None, None]
    rng = np.random.default_rng(0)
    hits = total = 0
    for _ in range(12):
        image, mask = coded_sample(rng)
        out = train(image=image, mask=mask)
        if preset != "none":
            assert out["image"].shape == (3, 128, 128) and out["mask"].shape == (128, 128)
        assert out["mask"].dtype == torch.int64
        grey = ((out["image"] * std + mean) * 255).mean(dim=0)
        labels = set(out["mask"].unique().tolist())
        assert labels <= {0, 1, 2, 3, 4, 11}  # classes, or the ignore index from padding
        # colour changes keep the order of grey levels, so decode by the nearest class median
        padded = out["mask"] == 11
        keep = ~padded
        medians = {c: grey[out["mask"] == c].median() for c in labels - {11}}
        ordered = [medians[c] for c in sorted(medians)]
        assert ordered == sorted(ordered)
        # padding carries the ignore index in the mask and black (darker than any class) pixels
        if padded.any():
            assert grey[padded].median() <= min(ordered)
        centres = torch.stack(ordered)
        decoded = torch.tensor(sorted(medians))[
            (grey[keep][:, None] - centres[None]).abs().argmin(dim=1)
        ]
        hits += int((decoded == out["mask"][keep]).sum())
        total += int(keep.sum())
        # evaluation is deterministic, at the image's own size, and exact
        ev = evaluate(image=image, mask=mask)
        assert ev["image"].shape == (3, 200, 300)
        torch.testing.assert_close(ev["mask"], torch.from_numpy(mask).long())
    # blur, noise, dropout and distortion touch edges and holes, never whole regions
    assert hits / total > (0.999 if preset == "none" else 0.9)
