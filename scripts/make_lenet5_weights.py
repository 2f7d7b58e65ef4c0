"""Make the trained LeNet5 weights that ship with the package (the sample data's source).

Trains LeNet5 on scikit-learn's digits with `digits.RECIPE` (fixed seeds, one thread,
deterministic algorithms; about 10 s on one core) and writes
``src/napari_kernelspec/sources/data/lenet5_digits.npz``:

- ``state:<key>``: the whole trained state dict (float32; about 62,000 parameters),
- ``epoch_NNN:conv1.weight`` / ``epoch_NNN:conv1.bias``: the first layer before training
  (``epoch_000``) and after every epoch (the training-history sample),
- ``__info__``: JSON with the recipe, the held-out accuracy (overall and after each epoch)
  and the versions it was made with.

It prints the file's SHA-256: paste it into ``digits.SHIPPED_SHA256`` (the loader refuses a
file whose digest differs). Run it again, and ship the new file, whenever `digits.RECIPE`
changes; ``tests/sources/test_digits.py`` fails until then.

Usage::

    python scripts/make_lenet5_weights.py
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import sys
from importlib.metadata import version
from pathlib import Path

import numpy as np


def main() -> int:
    import torch

    from napari_kernelspec.sources import digits
    from napari_kernelspec.sources.models import lenet5_class

    _, _, x_test, y_test = digits.load_digits_32()
    history: dict[str, np.ndarray] = {}
    epoch_accuracy: list[float] = []
    net = lenet5_class()()
    net.eval()

    def on_epoch(epoch: int, state: dict[str, np.ndarray]) -> None:
        for key in ("conv1.weight", "conv1.bias"):
            history[f"epoch_{epoch:03d}:{key}"] = state[key]
        net.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
        with torch.no_grad():
            pred = net(torch.from_numpy(x_test)).argmax(1).numpy()
        epoch_accuracy.append(float((pred == y_test).mean()))

    state, accuracy = digits.train_lenet5(on_epoch=on_epoch)
    info = {
        "recipe": dict(digits.RECIPE),
        "accuracy": accuracy,
        "n_test": len(y_test),
        "epoch_accuracy": epoch_accuracy,
        "made_with": {
            "torch": torch.__version__.split("+")[0],
            "numpy": np.__version__,
            "scikit-learn": version("scikit-learn"),
            "python": platform.python_version(),
            "machine": platform.machine(),
        },
    }
    arrays = {f"state:{k}": v for k, v in state.items()} | history
    buffer = io.BytesIO()
    np.savez(buffer, __info__=np.array(json.dumps(info, sort_keys=True)), **arrays)
    path = Path(digits.__file__).with_name("data") / digits.SHIPPED_FILE
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(buffer.getvalue())
    digest = hashlib.sha256(buffer.getvalue()).hexdigest()
    print(f"{path}: {len(buffer.getvalue())} bytes, held-out accuracy {accuracy:.4f}")
    print(f"SHIPPED_SHA256 = {digest!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
