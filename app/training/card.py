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


def registered_card(
    name: str, version: str, fmt: str, fields: dict[str, Any], table: str | None
) -> str:
    """The card of a version registered with ``modelserve register`` (trained elsewhere)."""
    source, features, classes = fields["source"], fields["features"], fields["classes"]
    listed = ", ".join(f"`{f['name']}` ({f['kind']})" for f in features[:20])
    return "\n".join(
        [
            f"# {name} version {version}\n",
            f"- **Registered from:** {source['kind']} `{source['path']}`, stored as {fmt}",
            f"- **Task:** {fields['task']}" + (f" (classes {classes})" if classes else ""),
            f"- **Features:** {len(features)} (input format {fields['input_format']}): {listed}",
            f"- **Data fingerprint:** `{fields['data_fingerprint']}`",
            f"- **Served with:** Python {fields['python_version']}, "
            f"scikit-learn {fields['sklearn_version']}\n",
            "## Metrics on the registration sample\n",
            (table or "None: registered without `--sample` and `--target`.") + "\n",
            *card_lines(fields.get("calibration")),
            "## Intended use and limits\n",
            "Trained outside modelserve: the metrics are those of the sample given at "
            "registration (which may overlap the training data), and drift monitoring "
            "compares traffic with that sample's numeric features only.\n",
        ]
    )
