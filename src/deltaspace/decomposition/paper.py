"""The decomposition paper's method rows as (registry method, options), and its ‰Params column.

Tables II-IV print, for every method row, the share of trainable delta parameters in ‰ of the
backbone (notes §3.4, §3.8). :data:`ROWS` maps each row label to a registry method with the options
of each rank group (r = 2, 4, 8, 16; adapters at the bottleneck sizes of the same budgets), and
:data:`PAPER_PERMILLE` holds the printed values. :func:`parity_table` recomputes the column with
``deltaspace describe`` from configs alone (no weights).

The paper's conventions, read off its own numbers (docs/methods.md has the details):

* the denominator is the backbone as the paper names it, 125M / 184M / 355M: our config-only
  encoder's parameter count (pooler included, no classifier head) to 3 significant digits;
* a cell agrees when ours rounds to the printed value ± 1 in the last digit (no single
  denominator reproduces every printed cell exactly: the printed RoBERTa-base cells alone need
  one below 124.99M and one above 125.16M), or when the count rounded to 0.01M, as the AdaLoRA
  paper prints counts, gives the printed value (the DeBERTaV3-base cells that exist in AdaLoRA's
  table were copied from it);
* :data:`KNOWN_DEVIATIONS` lists the cells that agree under neither rule, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

RANKS = (2, 4, 8, 16)
BACKBONES = ("roberta-base", "deberta-v3-base", "roberta-large")


@dataclass(frozen=True)
class Row:
    """One method row of Tables II-IV."""

    label: str
    method: str
    options: dict[str, Any]  # rank-independent options
    sizes: tuple[int, ...] | None = None  # per rank group: the value of the rank option; None: rank-free
    rank_option: str = "r"
    alpha_per_r: float | None = None  # alpha = alpha_per_r · r (s = α/r constant across ranks)

    def options_at(self, group: int | None) -> dict[str, Any]:
        """Options for rank group ``group`` (0-3), or the rank-free options."""
        options = dict(self.options)
        if self.sizes is not None:
            size = self.sizes[group]
            options[self.rank_option] = size
            if self.alpha_per_r is not None:
                options["alpha"] = float(self.alpha_per_r * size)
        return options


_ALL = {"targets": "all"}
#: The rows of Tables II-IV in the paper's order (rows 2-6 rank-free; 7-19 repeated per rank group).
#: LoRA's scale s = α/r = 2 (notes §6 #7) for every LoRA-type row but TriLoRA, whose code has no scale.
ROWS: tuple[Row, ...] = (
    Row("SAM-PARSER", "sam-parser", {}),
    Row("(IA)³", "ia3", {}),
    Row("SSL", "ssl", {}),
    Row("SSB", "ssb", {}),
    Row("BitFit", "bitfit", {}),
    Row("HAdapter", "adapter", {"bias": True, "activation": "silu", "placement": "sublayers"}, (8, 16, 32, 64)),
    Row("PAdapter", "adapter", {"bias": True, "activation": "relu", "placement": "ffn"}, (16, 32, 64, 128)),
    Row("PA", "parallel-adapter", dict(_ALL), RANKS),
    Row("LoRA", "lora", dict(_ALL), RANKS, alpha_per_r=2.0),
    Row("LoRA + MPCo", "lora-mpco", dict(_ALL), RANKS, alpha_per_r=2.0),
    Row("LoRA + MPCd", "lora-mpcd", dict(_ALL), RANKS, alpha_per_r=2.0),
    Row("LoRA + MPCn", "lora-mpcn", dict(_ALL), RANKS),
    Row("TriLoRA", "trilora", dict(_ALL), RANKS, alpha_per_r=1.0),
    Row("TriLoRA + MPCo", "trilora", {**_ALL, "mpc": "o"}, RANKS, alpha_per_r=1.0),
    Row("AdaLoRA - MPCo", "adalora", {**_ALL, "orth_weight": 0.0}, RANKS, alpha_per_r=2.0),
    Row("AdaLoRA", "adalora", dict(_ALL), RANKS, alpha_per_r=2.0),
    Row("FLoRA", "flora", dict(_ALL), RANKS, alpha_per_r=2.0),
    Row("DoRA", "dora", dict(_ALL), RANKS, alpha_per_r=2.0),
)

_LORA_LIKE = ("PA", "LoRA", "LoRA + MPCo", "LoRA + MPCd", "LoRA + MPCn", "TriLoRA", "TriLoRA + MPCo",
              "AdaLoRA - MPCo", "AdaLoRA")


def _table(rank_free: dict[str, float], hadapter, padapter, lora, flora, dora) -> dict[str, Any]:
    table: dict[str, Any] = dict(rank_free)
    table.update({"HAdapter": hadapter, "PAdapter": padapter, "FLoRA": flora, "DoRA": dora})
    table.update({label: lora for label in _LORA_LIKE})
    return table


#: The ‰Params column as printed in Tables II (RoBERTa-base), III (DeBERTaV3-base), IV (RoBERTa-large).
PAPER_PERMILLE: dict[str, dict[str, Any]] = {
    "roberta-base": _table({"SAM-PARSER": 0.44, "(IA)³": 0.44, "SSL": 0.22, "SSB": 0.66, "BitFit": 0.82},
                           hadapter=(2.50, 4.87, 9.59, 19.03), padapter=(2.43, 4.80, 9.52, 18.96),
                           lora=(2.65, 5.31, 10.62, 21.24), flora=(2.65, 5.31, 10.64, 21.38),
                           dora=(3.32, 5.97, 11.28, 21.90)),
    "deberta-v3-base": _table({"SAM-PARSER": 0.30, "(IA)³": 0.30, "SSL": 0.15, "SSB": 0.45, "BitFit": 0.54},
                              hadapter=(1.68, 3.32, 6.63, 12.93), padapter=(1.63, 3.26, 6.41, 12.88),
                              lora=(1.79, 3.61, 7.23, 14.43), flora=(1.79, 3.61, 7.24, 14.52),
                              dora=(2.23, 4.06, 7.66, 14.87)),
    "roberta-large": _table({"SAM-PARSER": 0.42, "(IA)³": 0.42, "SSL": 0.21, "SSB": 0.62, "BitFit": 0.76},
                            hadapter=(2.35, 4.57, 9.00, 17.87), padapter=(2.29, 4.50, 8.93, 17.80),
                            lora=(2.49, 4.98, 9.97, 19.94), flora=(2.49, 4.99, 9.98, 19.98),
                            dora=(3.12, 5.61, 10.59, 20.56)),
}

#: (backbone, row label, rank group) → why our count cannot give the printed value.
KNOWN_DEVIATIONS: dict[tuple[str, str, int], str] = {
    ("deberta-v3-base", "HAdapter", 2): (
        "6.63‰ is AdaLoRA's printed 1.22M for its HAdapter; Houlsby adapters with biases at bottleneck 32 "
        "have 1,198,848 (6.52‰), and no integer bottleneck gives 1.22M (31: 1.16M, 33: 1.24M)"),
    ("deberta-v3-base", "PAdapter", 2): (
        "6.41‰ is AdaLoRA's printed 1.18M for its PAdapter; Pfeiffer adapters with biases at bottleneck 64 "
        "have 1,189,632 (6.47‰), and no integer bottleneck gives 1.18M (63: 1.171M)"),
    ("roberta-large", "FLoRA", 3): (
        "LoRA's 19.94‰ plus the r×r cores (6·16²·24 = 36,864 = 0.10‰) is 20.04‰; the paper prints 19.98‰ "
        "(its RoBERTa-large FLoRA cells sit below this count at every rank, notes §3.8)"),
}


def nominal_size(parameters: int) -> float:
    """The backbone size as the paper names it: 124.6M → 125M, 183.8M → 184M, 355.4M → 355M."""
    return float(f"{parameters:.3g}")


def permille(size: int, backbone_parameters: int) -> float:
    """|θ| in ‰ of the backbone, by the paper's convention (its nominal backbone size)."""
    return 1000.0 * size / nominal_size(backbone_parameters)


def agreement(size: int, backbone_parameters: int, printed: float) -> str:
    """How a count gives the printed ‰ (module docstring): "exact" (same 2 decimals), "last digit"
    (± 1 in the last printed digit), "0.01M" (the count rounded as AdaLoRA prints counts) or ""."""
    nominal = nominal_size(backbone_parameters)
    ours = round(1000.0 * size / nominal, 2)
    if abs(ours - printed) <= 1e-9:
        return "exact"
    coarse = round(1000.0 * round(size, -4) / nominal, 2)
    if abs(coarse - printed) <= 1e-9:
        return "0.01M"
    if abs(ours - printed) <= 0.01 + 1e-9:
        return "last digit"
    return ""


def agrees(size: int, backbone_parameters: int, printed: float) -> bool:
    """Whether a count gives the printed ‰ within the paper's rounding."""
    return bool(agreement(size, backbone_parameters, printed))


def cells(backbones: tuple[str, ...] = BACKBONES) -> list[tuple[str, Row, int | None]]:
    """Every (backbone, row, rank group) of the ‰ column; group None for rank-free rows."""
    return [(backbone, row, group) for backbone in backbones for row in ROWS
            for group in ((None,) if row.sizes is None else range(len(RANKS)))]


def parity_table(backbones: tuple[str, ...] = BACKBONES) -> pd.DataFrame:
    """Ours vs the paper for every cell, counted by ``deltaspace describe`` from configs."""
    from ..describe import describe

    records = []
    for backbone, row, group in cells(backbones):
        options = row.options_at(group)
        report = describe(backbone, row.method, options, config_only=True)
        printed = PAPER_PERMILLE[backbone][row.label]
        printed = printed if group is None else printed[group]
        size, total = report["size"], report["backbone_parameters"]
        records.append({
            "backbone": backbone, "row": row.label, "group": group, "rank": None if group is None else RANKS[group],
            "method": row.method, "options": ", ".join(f"{k}={v}" for k, v in options.items()),
            "size": size, "backbone_parameters": total, "nominal": nominal_size(total),
            "paper_permille": printed, "ours_permille": round(permille(size, total), 2),
            "agreement": agreement(size, total, printed), "agrees": agrees(size, total, printed),
            "known_deviation": KNOWN_DEVIATIONS.get((backbone, row.label, group), ""),
        })
    table = pd.DataFrame(records)
    for column in ("group", "rank"):
        table[column] = table[column].astype("Int64")
    return table


def parity_markdown(table: pd.DataFrame) -> str:
    """The parity table as docs/methods.md shows it: one line per row, paper/ours per rank group."""
    names = {"roberta-base": "RoBERTa-base", "deberta-v3-base": "DeBERTaV3-base", "roberta-large": "RoBERTa-large"}
    marks = {"exact": "", "last digit": " †", "0.01M": " ‡", "": " ✗"}
    lines = ["| backbone | row | method | r=2 (or rank-free) | r=4 | r=8 | r=16 |", "|---|---|---|---|---|---|---|"]
    for (backbone, label), group in table.groupby(["backbone", "row"], sort=False):
        cells_ = []
        for _, c in group.iterrows():
            cells_.append(f"{c.paper_permille:.2f} / {c.ours_permille:.2f}{marks[c.agreement]}")
        cells_ += [""] * (4 - len(cells_))
        lines.append(f"| {names[backbone]} | {label} | `{group.iloc[0].method}` | " + " | ".join(cells_) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # python -m deltaspace.decomposition.paper: print the docs table
    print(parity_markdown(parity_table()), end="")
