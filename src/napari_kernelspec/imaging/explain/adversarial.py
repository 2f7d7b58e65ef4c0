"""Adversarial examples: the smallest push (L-infinity) that makes the network say class c.

FGSM (Goodfellow et al. 2015) takes one step of size epsilon against the sign of the
gradient of the target's cross-entropy; PGD (Madry et al. 2018) takes small such steps,
projecting back into the epsilon-ball around the image and into [0, 1] after each, and stops
as soon as the target class wins, so the budget it reports is what it needed. Our own code:
both are a few lines of torch; the gradient comes from the same network as everything else.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from ...base.errors import KernelSpecError

if TYPE_CHECKING:
    from .model import ExplainModel

__all__ = ["ADVERSARIAL_METHODS", "iter_adversarial"]

ADVERSARIAL_METHODS = ("pgd", "fgsm")
#: PGD: largest number of steps, and the step as a fraction of epsilon.
PGD_STEPS = 200
PGD_STEP_FRACTION = 0.025


def iter_adversarial(
    model: ExplainModel,
    pixels: Any,
    target: Any,
    epsilon: float,
    method: str = "pgd",
    *,
    steps: int = PGD_STEPS,
    step_size: float | None = None,
) -> Generator[tuple[int, int], None, dict[str, Any]]:
    """Push K images towards class `target` within an L-infinity ball of radius `epsilon`.

    Yields ``(done, steps)``.

    Parameters
    ----------
    pixels : (K, C, H, W) array_like
        Images in [0, 1].
    target : int or (K,) ints
    epsilon : float
        L-infinity budget in pixel units (0 < epsilon <= 1).
    method : {"pgd", "fgsm"}
    steps : int
        PGD's largest number of steps (it stops earlier once every image is fooled).
    step_size : float, optional
        PGD's step (default ``PGD_STEP_FRACTION * epsilon``, at least 1/255).

    Returns
    -------
    dict
        ``images`` (K, C, H, W) float32 adversarial images; ``fooled`` (K,) bool (the
        target wins); ``epsilon_used`` (K,) the L-infinity distance reached; ``steps_used``
        (K,); ``predicted_before`` / ``probability_before`` and ``predicted_after`` /
        ``probability_after`` (K,) and ``target_probability_after`` (K,);
        ``parameters``.
    """
    import torch
    import torch.nn.functional as F

    from .classes import predict

    if method not in ADVERSARIAL_METHODS:
        raise KernelSpecError(
            f"method must be one of {', '.join(ADVERSARIAL_METHODS)}, got {method!r}"
        )
    eps = float(epsilon)
    if not 0.0 < eps <= 1.0:
        raise KernelSpecError(f"epsilon is {epsilon}; give a budget in (0, 1] (pixel units)")
    arr = np.asarray(pixels, dtype=np.float32)
    if arr.ndim != 4 or arr.shape[1] != model.channels:
        raise ValueError(f"pixels must be (K, {model.channels}, H, W), got {arr.shape}")
    before = predict(model, arr)
    k, n = before.shape
    tgt = np.broadcast_to(np.asarray(target, dtype=np.int64), (k,)).copy()
    bad = [int(t) for t in tgt if not 0 <= t < n]
    if bad:
        raise KernelSpecError(
            f"class {bad[0]} is out of range: {model.name} has {n} classes (0..{n - 1})"
        )
    x0 = torch.from_numpy(arr).to(model.device)
    t = torch.from_numpy(tgt).to(model.device)
    n_steps = 1 if method == "fgsm" else int(steps)
    alpha = eps if method == "fgsm" else float(step_size or max(PGD_STEP_FRACTION * eps, 1 / 255))
    x = x0.clone()
    active = torch.ones(k, dtype=torch.bool, device=model.device)
    used_steps = np.zeros(k, dtype=np.int64)
    if method == "pgd":
        with torch.no_grad():
            active &= model.net(x).argmax(1) != t
    for step in range(n_steps):
        if not bool(active.any()):
            break
        x.requires_grad_(True)
        loss = F.cross_entropy(model.net(x), t, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x)
        with torch.no_grad():
            moved = x - alpha * grad.sign()
            moved = torch.min(torch.max(moved, x0 - eps), x0 + eps).clamp(0.0, 1.0)
            x = torch.where(active[:, None, None, None], moved, x.detach())
            used_steps[active.cpu().numpy()] = step + 1
            if method == "pgd":
                active &= model.net(x).argmax(1) != t
        yield step + 1, n_steps
    adv = x.detach().cpu().numpy().astype(np.float32)
    after = predict(model, adv)
    rows = np.arange(k)
    return {
        "images": adv,
        "fooled": after.argmax(axis=1) == tgt,
        "epsilon_used": np.abs(adv - arr).reshape(k, -1).max(axis=1),
        "steps_used": used_steps,
        "targets": tgt,
        "predicted_before": before.argmax(axis=1),
        "probability_before": before.max(axis=1),
        "predicted_after": after.argmax(axis=1),
        "probability_after": after.max(axis=1),
        "target_probability_after": after[rows, tgt],
        "parameters": {
            "method": method,
            "epsilon": eps,
            "norm": "L-infinity",
            "step_size": alpha,
            "max_steps": n_steps,
            "loss": "cross-entropy of the target class (targeted)",
        },
    }
