"""Energy and carbon *estimates* for an audit record (method and sources: docs/reference/audit.mdx).

Nothing here is measured. Each coefficient is a published or derived per-unit figure for a class
of engine, named by a key that every record carries (`energy_method`), so a reader can see which
assumption produced a number and recompute it. Carbon = energy x the operator's configured grid
intensity (`BATCHIN_GRID_GCO2_PER_KWH`); without one we assume the US average, so no saving is
claimed that the operator has not configured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["COEFFICIENTS", "US_AVERAGE_GCO2_PER_KWH", "Coefficient", "EnergyEstimate", "estimate"]

# EIA, "How much carbon dioxide is produced per kilowatthour of U.S. electricity generation?"
# (FAQ, 2022 data): about 0.86 lb CO2/kWh ≈ 390 g/kWh. The "US cloud" reference of every record.
US_AVERAGE_GCO2_PER_KWH = 390.0

# OpenAI's rule of thumb (≈ 4 characters of English per token), used only when a record comes
# with text but no token counts (POST /v1/vaas).
_BYTES_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class Coefficient:
    key: str
    wh_per_1k_input: float  # per 1,000 input tokens (prefill), or per input unit for non-text kinds
    wh_per_1k_output: float  # per 1,000 output tokens, or per output unit (image, audio second)
    per_unit: bool = False  # True: the figures are per unit of `usage.units`, not per 1k tokens
    source: str = ""


# Output (decode) dominates; prefill runs batched over the prompt, so we take it as a tenth of
# decode per token (an assumption, stated as one in docs/reference/audit.mdx).
COEFFICIENTS: dict[str, Coefficient] = {
    # SmolLM2-135M on llama.cpp, 2 CPU cores: ~35 W attributable package power at ~100 tokens/s
    # → 0.35 J/token → 0.097 Wh per 1k output tokens (derived, docs/reference/audit.mdx §CPU).
    "cpu-llm-small": Coefficient("cpu-llm-small", 0.0097, 0.097, source="derived: 35 W / 100 tok/s"),
    # Samsi et al. 2023, "From Words to Watts" (arXiv:2310.03003): ~3-4 J per output token for
    # LLaMA-65B on A100/V100; we take 3 J → 0.83 Wh per 1k output tokens.
    "gpu-llm": Coefficient("gpu-llm", 0.083, 0.83, source="Samsi et al. 2023, ~3 J/token"),
    # Luccioni et al. 2024, "Power Hungry Processing" (FAccT '24): image generation averaged
    # 2.907 kWh per 1,000 inferences → 2.9 Wh per image.
    "gpu-image": Coefficient("gpu-image", 0.0, 2.907, per_unit=True, source="Luccioni et al. 2024"),
}

_BY_ENGINE_KIND: dict[tuple[str, str], str] = {
    ("llama_cpp", "text"): "cpu-llm-small",
    ("exllamav2", "text"): "gpu-llm",
    ("remote", "text"): "gpu-llm",
    ("diffusers", "image"): "gpu-image",
}
_BY_KIND: dict[str, str] = {"text": "gpu-llm", "image": "gpu-image"}


@dataclass(frozen=True, slots=True)
class EnergyEstimate:
    energy_wh: float
    carbon_grams_co2e: float
    carbon_offset_vs_us_cloud: float
    energy_source: str
    method: str  # "estimate:<coefficient key>" or "estimate:none"


def coefficient_for(engine: str | None, kind: str) -> Coefficient | None:
    key = _BY_ENGINE_KIND.get((engine or "", kind)) or _BY_KIND.get(kind)
    return COEFFICIENTS[key] if key else None


def approximate_tokens(text: str) -> int:
    return math.ceil(len(text.encode("utf-8")) / _BYTES_PER_TOKEN)


def estimate(
    *,
    engine: str | None,
    kind: str,
    input_tokens: int,
    output_tokens: int,
    units: float,
    grid_gco2_per_kwh: float | None,
    energy_source: str | None,
) -> EnergyEstimate:
    coefficient = coefficient_for(engine, kind)
    if coefficient is None:
        wh = 0.0
    elif coefficient.per_unit:
        wh = coefficient.wh_per_1k_output * units
    else:
        wh = (
            input_tokens * coefficient.wh_per_1k_input + output_tokens * coefficient.wh_per_1k_output
        ) / 1000
    grid = US_AVERAGE_GCO2_PER_KWH if grid_gco2_per_kwh is None else grid_gco2_per_kwh
    carbon = wh / 1000 * grid
    reference = wh / 1000 * US_AVERAGE_GCO2_PER_KWH
    source = energy_source or (
        "Unspecified grid mix (US average assumed)" if grid_gco2_per_kwh is None else "Configured grid mix"
    )
    return EnergyEstimate(
        energy_wh=round(wh, 6),
        carbon_grams_co2e=round(carbon, 6),
        carbon_offset_vs_us_cloud=round(reference - carbon, 6),
        energy_source=source,
        method=f"estimate:{coefficient.key if coefficient else 'none'}",
    )
