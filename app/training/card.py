"""A short generated model card (``MODEL_CARD.md``) stored in every version directory."""

from __future__ import annotations

from typing import Any

from app.training.calibration import card_lines
from app.training.spec import TrainSpec


def model_card(
    spec: TrainSpec,
    *,
    version: str,
    metadata: dict[str, Any],
    comparison_table: str,
    rows: tuple[int, int],
) -> str:
    steps = [s.class_ for s in spec.preprocessing] + [spec.estimator.class_]
    classes = metadata.get("classes")
    lines = [
        f"# {spec.name} version {version}",
        "",
        f"- **Task:** {spec.task}" + (f" (classes {classes})" if classes else ""),
        f"- **Estimator:** {' -> '.join(f'`{s}`' for s in steps)}",
        f"- **Data:** `{spec.data.source}`, target `{spec.data.target}`, "
        f"{len(metadata['features'])} features; {rows[0]} training rows, {rows[1]} held-out "
        f"rows (test_size {spec.split.test_size}, seed {spec.seed})",
        f"- **Data fingerprint:** `{metadata['data_fingerprint']}`",
        f"- **Code:** git commit `{metadata.get('git_commit') or 'unknown'}`",
        f"- **Trained with:** Python {metadata['python_version']}, "
        f"scikit-learn {metadata['sklearn_version']}",
        "",
        "## Held-out metrics",
        "",
        comparison_table,
        "",
        *card_lines(metadata.get("calibration")),
        "## Gate",
        "",
        *(f"- {metric}: {bound}" for metric, bound in spec.thresholds.items()),
        "",
        "## Intended use and limits",
        "",
        "Scores rows with the same features, units and population as the training data. The "
        "per-feature reference bins in `metadata.json` let drift monitoring flag inputs that "
        "move away from that population; predictions outside it are not validated.",
        "",
    ]
    return "\n".join(lines)
