"""Learning-rate schedules whose length is the run's own number of optimizer steps."""

from torch.optim import Optimizer
from torch.optim.lr_scheduler import OneCycleLR


def one_cycle(
    optimizer: Optimizer,
    max_lr: float,
    total_steps: int | None = None,
    pct_start: float = 0.3,
    div_factor: float = 25.0,
    final_div_factor: float = 1.0e4,
) -> OneCycleLR:
    """OneCycleLR (warm-up to ``max_lr``, cosine down), stepped per optimizer step.

    ``total_steps`` None is filled in by SegmentationModule with the trainer's
    ``estimated_stepping_batches``, so the schedule follows max_epochs, limits and
    gradient accumulation without a hand-computed step count.
    """
    if total_steps is None or total_steps < 1:
        raise ValueError(f"one_cycle needs total_steps >= 1, got {total_steps}")
    return OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=int(total_steps),
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        cycle_momentum=False,
    )
