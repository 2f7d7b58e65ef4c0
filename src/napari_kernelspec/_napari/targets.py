"""What the Explain widget explains: filters of a conv layer, a class score, or images the
network makes (synthesis); no Qt here.

The widget shows a target switch (`TARGETS`), the methods of the chosen target
(`methods_for`) and, for a class, a choice of "predicted" or one of the model's classes
(`class_choices`, read back with `parse_class`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..base.errors import KernelSpecError

if TYPE_CHECKING:
    from ..imaging.explain.model import ExplainModel

__all__ = ["PREDICTED", "SYNTHESIS", "TARGETS", "class_choices", "methods_for", "parse_class"]

#: The target switch: the filters of one conv layer, one class score of a classifier, or
#: images synthesised by the network (class visualisation, DeepDream).
TARGETS = ("filters", "class", "synthesis")
#: The synthesis objectives the widget offers (those needing at most one image).
SYNTHESIS = ("class", "dream")
#: The class choice that explains each image's predicted class.
PREDICTED = "predicted"


def methods_for(target: str) -> list[str]:
    """The explanation methods of a target (`TARGETS`), in the CLI's order."""
    from ..imaging.explain.attribution import METHODS
    from ..imaging.explain.classes import CLASS_METHODS

    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if target == "synthesis":
        return list(SYNTHESIS)
    return list(METHODS if target == "filters" else CLASS_METHODS)


def class_choices(model: ExplainModel) -> list[str]:
    """``"predicted"``, then one ``"k"`` or ``"k name"`` per class of the model.

    Class names come from the weights where they know them (`classes.class_names`); a
    classifier without names lists its class indices; a model that does not output class
    scores offers "predicted" only (explaining it then says why it cannot).
    """
    from ..imaging.explain.classes import class_names, n_outputs

    try:
        n = n_outputs(model)
    except (KernelSpecError, RuntimeError, ValueError):
        return [PREDICTED]
    names = class_names(model, n)
    labels = [
        str(k) if names is None or names[k] == str(k) else f"{k} {names[k]}" for k in range(n)
    ]
    return [PREDICTED, *labels]


def parse_class(choice: str | None) -> int | None:
    """The class index of a `class_choices` entry; None for "predicted" (or no choice)."""
    if choice is None or choice == PREDICTED:
        return None
    head = str(choice).split(" ", 1)[0]
    try:
        return int(head)
    except ValueError:
        raise KernelSpecError(f"class must be 'predicted' or an index, got {choice!r}") from None
