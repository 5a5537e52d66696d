"""The shipped ``config.yaml``: the schema's defaults, commented, with the demo's values.

``python -m dynamight_core.config > config.yaml`` writes it; a test checks the shipped
file is exactly this. Standard library only, as :mod:`dynamight_core.config`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dynamight_core.config import format_value
from dynamight_core.config_schema import SCHEMA, Key

HEADER = """\
# DynaMight workflow configuration. Validation runs before any job and lists every problem
# (unknown keys, wrong types, out-of-range values, missing files). Units are in the
# comments (Å, px, MB, minutes). A missing key takes its default. As shipped, this file runs
# the synthetic demo: the inputs point at the data rule `simulate` makes, and a few values
# are set for a quick CPU run; they say "demo" and give the default beside it.
# Regenerate with: python -m dynamight_core.config > config.yaml
"""

# The demo: the simulator's two-domain particle with a +-30 degree hinge (box 64, 4,000
# particles), atomic-like pseudo-atoms (1.5 Å wide: the consensus reaches ~4 Å) at SNR 0.2,
# Gaussians from its true residue count, and a short VAE training at 5.5 Å. Chosen so that
# the report shows the tool working (yes, yes by more than 5 standard errors where it
# moves) within the time the earlier, blurrier demo took (README, "Demo").
DEMO: dict[str, dict[str, Any]] = {
    "simulate": {"n_particles": 4000, "snr": 0.2, "width_a": 1.5},
    "gaussians": {"n_residues": 384},
    "vae": {"max_resolution_a": 5.5, "max_epochs": 40},
}


def render_yaml(
    schema: Mapping[str, Any] = SCHEMA, overrides: Mapping[str, Any] | None = None, indent: int = 0
) -> str:
    """Commented YAML of the defaults, with ``overrides`` (the demo values) marked as such."""
    overrides = DEMO if overrides is None and indent == 0 else (overrides or {})
    lines: list[str] = [HEADER] if indent == 0 else []
    pad = " " * indent
    for name, spec in schema.items():
        if isinstance(spec, Key):
            if name in overrides:
                lines.append(
                    f"{pad}{name}: {format_value(overrides[name])}  # {spec.help} "
                    f"[demo value; default {format_value(spec.default)}]"
                )
            else:
                lines.append(f"{pad}{name}: {format_value(spec.default)}  # {spec.help}")
        else:
            if indent == 0:
                lines.append("")
            lines.append(f"{pad}{name}:")
            lines.append(render_yaml(spec, overrides.get(name, {}), indent + 2).rstrip("\n"))
    return "\n".join(lines) + "\n"
