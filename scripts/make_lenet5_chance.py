"""Make the chance estimates of the sample history that ship with the package.

Analyses every step of `sources.history.lenet5_history` (and the trained LeNet5 of the
``lenet5`` sample) with `analysis.pipeline.analyze`'s defaults, in a fresh temporary kernel
cache, and writes their `analysis.chance.ChanceModel` s (with the calibrated levels and the
descriptor contrasts) to ``src/napari_kernelspec/sources/data/lenet5_chance.npz``
(`analysis.chance_store.SHIPPED_FILE`). It prints the file's SHA-256: paste it into
``chance_store.SHIPPED_SHA256``. Run it again whenever the shipped weights or the null
(`analysis.chance`) change; ``tests/analysis/test_chance_store.py`` fails until then.

Usage::

    python scripts/make_lenet5_chance.py
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile


def sample_models() -> dict:
    """Estimates of the sample history's steps and of the ``lenet5`` sample, by memo key."""
    from napari_kernelspec.analysis import chance
    from napari_kernelspec.analysis.pipeline import analyze
    from napari_kernelspec.sources.history import history_steps, lenet5_history
    from napari_kernelspec.sources.loading import load_kernels

    chance.set_store(None)  # nothing from before: every estimate drawn here
    banks = [load_kernels(path) for path in history_steps(lenet5_history())]
    banks.append(load_kernels("lenet5"))
    out = {}
    for bank in banks:
        analyze(bank)
        key = chance.memo_key(bank.weights)
        out[key] = chance.estimate_chance(bank.weights)
    return out


def main() -> int:
    from napari_kernelspec.analysis.chance_store import SHIPPED_FILE, write_models

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["KERNELSPEC_CACHE"] = tmp
        models = sample_models()
    write_models(SHIPPED_FILE, models)
    SHIPPED_FILE.chmod(0o644)
    digest = hashlib.sha256(SHIPPED_FILE.read_bytes()).hexdigest()
    print(f"{len(models)} estimates written to {SHIPPED_FILE}")
    print(f'SHIPPED_SHA256 = "{digest}"')
    return 0


if __name__ == "__main__":
    sys.exit(main())
