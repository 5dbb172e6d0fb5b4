"""The synthetic matrix-approximation study of the decomposition paper's Propositions 1-2 and MPC.

Notes §5 ("Feasible on CPU", item 3). A frozen W ∈ R^{n×m} and a target W* = W + ∆W* with ∆W* of
rank k and a decaying spectrum σ_i = decay^i (normalized so Σσ² = k). Every form φ is fitted by Adam
on the relative error ‖W* − φ(W)‖²_F / ‖∆W*‖²_F (plus λ·MPC where the form has it), from the same
initializations the delta library uses, at the same rank r (parameter counts are reported: the
forms differ by r or r² only, as in the paper's ‰ column):

* extension forms, ∆W = A G B: LoRA (G = I), TriLoRA (G diagonal), FLoRA (G any r×r); with MPCo
  (Eq. 25) on each, and LoRA + MPCd (Eq. 26); the parallel adapter x ↦ h(x A) B (= LoRA + MPCn),
  fitted as a regression on inputs X with orthonormal columns, so that its error is measured in
  the same norm (‖X E‖_F = ‖E‖_F when XᵀX = I);
* reconstruction forms (rank-free): SAM-PARSER U Σ' Vᵀ, (IA)³ W D2, SSL D1 W, SSB D1 W D2.

What the mathematics guarantees, and what the tests assert:

* no form of rank ≤ r beats the Eckart-Young bound Σ_{i>r} σ_i² / Σ σ_i² (the nonlinear form
  included: h(XA)B is still a rank-r matrix of outputs);
* AB, ADB and AMB describe the same set of matrices (Eq. 22), so without constraints all three
  can reach the bound; so can LoRA + MPCd (A = U_r, B = Σ_r V_rᵀ satisfies it exactly);
* under MPCo the factors are pushed to semi-orthogonality, so only the middle matrix can carry
  a non-flat spectrum: LoRA + MPCo cannot fit it, TriLoRA + MPCo and FLoRA + MPCo can
  (the ordering FLoRA ≤ TriLoRA ≤ LoRA that Proposition 1 states, where its coupling argument bites);
* SSB contains SSL and (IA)³ (D2 = I or D1 = I), so at the optimum it is no worse than either.

Without constraints, the FLoRA ≤ TriLoRA ≤ LoRA ordering of the paper's experiments is an
optimization effect; this toy reports it (the "ordering" summary) and asserts nothing about it.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ..deltas.mpc import mpc_penalty

#: study method → (form, MPC kind or None). Extension forms first, then reconstruction forms.
EXTENSION = {
    "lora": ("ab", None), "trilora": ("adb", None), "flora": ("amb", None),
    "lora-mpco": ("ab", "o"), "lora-mpcd": ("ab", "d"), "trilora-mpco": ("adb", "o"), "flora-mpco": ("amb", "o"),
    "parallel-adapter": ("nonlinear", None),
}
RECONSTRUCTION = {"sam-parser": "svals", "ia3": "right", "ssl": "left", "ssb": "both"}
ALL_METHODS = tuple(EXTENSION) + tuple(RECONSTRUCTION)


@dataclass
class StudyConfig:
    ranks: tuple[int, ...] = (2, 4, 8, 16)
    seeds: int = 3
    n: int = 64
    m: int = 64
    steps: int = 500
    target_rank: int = 32  # rank k of ∆W*
    decay: float = 0.85  # σ_i ∝ decay^i: a spread spectrum that a pinned pattern cannot carry
    mpc_weight: float = 0.1
    lrs: tuple[float, ...] = (3e-3, 1e-2, 3e-2)
    samples_per_dim: int = 4  # regression inputs for the nonlinear form: N = samples_per_dim · n
    methods: tuple[str, ...] = field(default=ALL_METHODS)

    def check(self) -> None:
        unknown = sorted(set(self.methods) - set(ALL_METHODS))
        if unknown:
            raise ValueError(f"unknown study methods {unknown}; valid: {', '.join(ALL_METHODS)}")
        if not 1 <= self.target_rank <= min(self.n, self.m):
            raise ValueError(f"target rank {self.target_rank} must be in 1..min(n, m) = {min(self.n, self.m)}")
        if any(r < 1 or r > min(self.n, self.m) for r in self.ranks):
            raise ValueError(f"ranks {self.ranks} must be in 1..min(n, m)")
        if self.seeds < 1 or self.steps < 1 or not self.lrs:
            raise ValueError("need at least one seed, one step and one learning rate")


@dataclass
class Target:
    w: torch.Tensor  # frozen W, n × m
    delta: torch.Tensor  # ∆W*, n × m
    sigma: torch.Tensor  # its singular values (k)
    x: torch.Tensor  # regression inputs with orthonormal columns, N × n

    def bound(self, r: int) -> float:
        """Eckart-Young: the least relative error of any rank-r ∆W."""
        s2 = self.sigma.square()
        return float(s2[r:].sum() / s2.sum())


def make_target(cfg: StudyConfig, seed: int) -> Target:
    g = torch.Generator().manual_seed(10_000 + seed)
    n, m, k = cfg.n, cfg.m, cfg.target_rank
    u, _ = torch.linalg.qr(torch.randn(n, k, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(m, k, generator=g, dtype=torch.float64))
    sigma = torch.tensor([cfg.decay ** i for i in range(k)], dtype=torch.float64)
    sigma = sigma * math.sqrt(k) / sigma.norm()
    w = torch.randn(n, m, generator=g, dtype=torch.float64) / math.sqrt(n)
    x, _ = torch.linalg.qr(torch.randn(cfg.samples_per_dim * n, n, generator=g, dtype=torch.float64))
    return Target(w.float(), (u * sigma) @ v.T, sigma, x.float())


def _kaiming(shape: tuple[int, int], g: torch.Generator) -> torch.Tensor:
    bound = 1.0 / math.sqrt(shape[1])
    return (torch.rand(shape, generator=g) * 2 - 1) * bound


def _init(form: str, n: int, m: int, r: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """The delta library's initializations (torch layout: a = lora_A r×n, b = lora_B m×r)."""
    if form in ("ab", "nonlinear"):  # LoRA and the parallel adapter: A kaiming-uniform, B = 0
        return {"a": _kaiming((r, n), g), "b": torch.zeros(m, r)}
    if form == "adb":  # TriLoRA: A, B kaiming-uniform, d = 0
        return {"a": _kaiming((r, n), g), "b": _kaiming((m, r), g), "d": torch.zeros(r)}
    if form == "amb":  # FLoRA: A, B ~ N(0, 0.02), M = 0
        return {"a": torch.randn(r, n, generator=g) * 0.02, "b": torch.randn(m, r, generator=g) * 0.02,
                "core": torch.zeros(r, r)}
    raise ValueError(form)


def extension_params(form: str, n: int, m: int, r: int) -> int:
    return r * (n + m) + {"adb": r, "amb": r * r}.get(form, 0)


def _extension_delta(form: str, p: dict[str, torch.Tensor]) -> torch.Tensor:
    a, b = p["a"], p["b"]
    if form == "adb":
        return (a.T * p["d"]) @ b.T
    if form == "amb":
        return a.T @ p["core"] @ b.T
    return a.T @ b.T


def fit_extension(method: str, target: Target, r: int, seed: int, lr: float, cfg: StudyConfig) -> dict:
    form, kind = EXTENSION[method]
    n, m = target.delta.shape
    # One generator per (seed, rank): LoRA and LoRA + MPC start from the same factors.
    params = {k: v.requires_grad_(True) for k, v in _init(form, n, m, r, torch.Generator().manual_seed(
        1_000 * seed + r)).items()}
    optimizer = torch.optim.Adam(params.values(), lr=lr)
    delta = target.delta.float()
    scale = delta.square().sum()
    y = target.x @ delta

    def error() -> torch.Tensor:
        if form == "nonlinear":
            return (torch.relu(target.x @ params["a"].T) @ params["b"].T - y).square().sum() / scale
        return (_extension_delta(form, params) - delta).square().sum() / scale

    def penalty() -> torch.Tensor:
        return mpc_penalty([(params["a"], params["b"])], kind, "paper") if kind else torch.zeros(())

    for _ in range(cfg.steps):
        loss = error() + cfg.mpc_weight * penalty() if kind else error()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        err, pen = float(error()), float(penalty())
    return {"error": err, "penalty": pen, "objective": err + (cfg.mpc_weight * pen if kind else 0.0),
            "params": extension_params(form, n, m, r)}


def fit_reconstruction(method: str, target: Target, seed: int, lr: float, cfg: StudyConfig) -> dict:
    kind = RECONSTRUCTION[method]
    w = target.w
    w_star = (target.w.double() + target.delta).float()
    scale = target.delta.float().square().sum()
    n, m = w.shape
    if kind == "svals":
        u, s, vh = torch.linalg.svd(w, full_matrices=False)
        sigma = s.clone().requires_grad_(True)
        params = [sigma]

        def phi() -> torch.Tensor:
            return (u * sigma) @ vh
        count = s.numel()
    else:
        d1 = torch.ones(n, requires_grad=True)
        d2 = torch.ones(m, requires_grad=True)
        params = {"left": [d1], "right": [d2], "both": [d1, d2]}[kind]

        def phi() -> torch.Tensor:
            out = w
            if kind in ("left", "both"):
                out = d1[:, None] * out
            if kind in ("right", "both"):
                out = out * d2[None, :]
            return out
        count = sum(p.numel() for p in params)
    optimizer = torch.optim.Adam(params, lr=lr)
    for _ in range(cfg.steps):
        loss = (phi() - w_star).square().sum() / scale
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        err = float((phi() - w_star).square().sum() / scale)
    return {"error": err, "penalty": 0.0, "objective": err, "params": count}


def run_study(cfg: StudyConfig, progress: bool = False) -> pd.DataFrame:
    """One row per (method, rank, seed, lr); ``selected`` marks the lr with the least final objective."""
    cfg.check()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster, and the sums stay in one order
    try:
        return _run_study(cfg, progress)
    finally:
        torch.set_num_threads(threads)


def _run_study(cfg: StudyConfig, progress: bool) -> pd.DataFrame:
    rows = []
    for seed in range(cfg.seeds):
        target = make_target(cfg, seed)
        for method in cfg.methods:
            extension = method in EXTENSION
            for r in (cfg.ranks if extension else (None,)):
                runs = []
                for lr in cfg.lrs:
                    fit = (fit_extension(method, target, r, seed, lr, cfg) if extension
                           else fit_reconstruction(method, target, seed, lr, cfg))
                    runs.append({"method": method, "family": "extension" if extension else "reconstruction",
                                 "form": EXTENSION[method][0] if extension else RECONSTRUCTION[method],
                                 "mpc": (EXTENSION[method][1] or "none") if extension else "none",
                                 "rank": r, "seed": seed, "lr": lr, **fit,
                                 "bound": target.bound(r) if extension else float("nan")})
                best = min(range(len(runs)), key=lambda i: (runs[i]["objective"], i))
                for i, run in enumerate(runs):
                    run["selected"] = i == best
                rows += runs
                if progress:
                    print(f"seed {seed} {method} r={r}: error {runs[best]['error']:.4f}", flush=True)
    frame = pd.DataFrame(rows)
    frame["rank"] = frame["rank"].astype("Int64")
    frame["gap"] = frame["error"] - frame["bound"]
    for key in ("n", "m", "steps", "target_rank", "decay", "mpc_weight"):
        frame[key] = getattr(cfg, key)
    return frame


def summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean relative error over seeds at the selected lr: extension forms by rank, the
    Eckart-Young bound, and the reconstruction forms in a "rank-free" column."""
    chosen = frame[frame.selected]
    ext = chosen[chosen.family == "extension"]
    table = ext.pivot_table(index="method", columns="rank", values="error", aggfunc="mean", sort=False)
    table.loc["Eckart-Young bound"] = ext.groupby("rank").bound.mean()
    table.columns = [f"r={c}" for c in table.columns]
    rec = chosen[chosen.family == "reconstruction"].groupby("method", sort=False).error.mean()
    if len(rec):
        table = pd.concat([table, rec.to_frame("rank-free")])
    table.index.name = "method"
    return table


def ordering(frame: pd.DataFrame, suffix: str = "") -> pd.DataFrame:
    """Per rank: the share of seeds with error(FLoRA) ≤ error(TriLoRA) ≤ error(LoRA) (``suffix`` "-mpco")."""
    chosen = frame[frame.selected]
    wide = chosen.pivot_table(index=["rank", "seed"], columns="method", values="error")
    names = [f"flora{suffix}", f"trilora{suffix}", f"lora{suffix}"]
    if not set(names) <= set(wide.columns):
        return pd.DataFrame()
    tol = 1e-4
    holds = (wide[names[0]] <= wide[names[1]] + tol) & (wide[names[1]] <= wide[names[2]] + tol)
    return holds.groupby(level="rank").mean().rename(f"FLoRA{suffix} ≤ TriLoRA{suffix} ≤ LoRA{suffix}").to_frame()


METRIC = "relative_error_pct"  # test_metric of a result row: 100 x the relative error (lower is better)
STAGE = "synthetic-mpc"
LABELS = {"lora": "LoRA (AB)", "trilora": "TriLoRA (ADB)", "flora": "FLoRA (AMB)", "lora-mpco": "LoRA + MPCo",
          "lora-mpcd": "LoRA + MPCd", "trilora-mpco": "TriLoRA + MPCo", "flora-mpco": "FLoRA + MPCo",
          "parallel-adapter": "PA (= LoRA + MPCn)", "sam-parser": "SAM-PARSER", "ia3": "(IA)³", "ssl": "SSL",
          "ssb": "SSB"}


def result_rows(frame: pd.DataFrame, cfg: StudyConfig, experiment: str) -> pd.DataFrame:
    """The study as result rows: one per form × rank × seed, at the learning rate kept for it.

    They follow the result contract (docs/contracts.md) so that the tables and the report read them
    like any other stage: ``task`` names the synthetic problem, ``method`` the form, ``size`` its
    parameter count, ``test_metric`` is 100 × the relative error (``metric`` says so; lower is
    better) and ``dev_metric`` is missing: the learning rate was chosen on the fitted objective, not
    on held-out data. The study's own numbers keep their names: ``error`` (‖∆W* − ∆W‖²/‖∆W*‖²),
    ``bound`` (Eckart-Young at that rank), ``gap``, ``penalty``, ``objective``, ``params``.
    """
    chosen = frame[frame.selected].copy()
    task = f"lowrank-{cfg.n}x{cfg.m}-k{cfg.target_rank}-decay{cfg.decay:g}"
    rows = pd.DataFrame({
        "experiment": experiment, "stage": STAGE, "task": task, "method": chosen["method"],
        "backbone": "none", "seed": chosen["seed"], "lr": chosen["lr"], "rank": chosen["rank"],
        "dev_metric": float("nan"), "test_metric": 100.0 * chosen["error"], "metric": METRIC,
        "size": chosen["params"],
    })
    study = chosen.drop(columns=[c for c in rows.columns if c in chosen.columns] + ["selected"])
    out = pd.concat([rows, study], axis=1).reset_index(drop=True)
    out["lrs"] = ",".join(f"{lr:g}" for lr in cfg.lrs)
    return out


GAP_FLOOR = 1e-5  # gaps below this are drawn on the floor: "at the bound" (float32 fits)
_MARKERS = "osD^vP*X"


def plot(frame: pd.DataFrame, path: Path) -> None:
    """Three panels: relative error against rank per extension form (mean over seeds, log scales)
    above the Eckart-Young bound; the gap to the bound (which forms reach the optimum at their
    budget, which cannot); the rank-free reconstruction forms as bars.

    A bare matplotlib Figure (Agg canvas): no pyplot state, no backend switch."""
    from matplotlib.figure import Figure

    chosen = frame[frame.selected] if "selected" in frame.columns else frame
    ext, rec = chosen[chosen.family == "extension"], chosen[chosen.family == "reconstruction"]
    fig = Figure(figsize=(13.5, 4.4))
    ax, gx, bx = fig.subplots(1, 3, gridspec_kw={"width_ratios": [2.4, 2.0, 1.2]})
    seeds = chosen.seed.nunique()
    bound = ext.groupby("rank").bound.mean()
    for i, (method, group) in enumerate(ext.groupby("method", sort=False)):
        stats = group.groupby("rank")[["error", "gap"]].mean()
        ranks = stats.index.astype(int)
        style = dict(ls="--" if "mpc" in method else ":" if method == "parallel-adapter" else "-",
                     marker=_MARKERS[i % len(_MARKERS)], ms=7 - 0.5 * i, color=f"C{i}", label=LABELS.get(method, method),
                     mfc="none" if i % 2 else None)
        ax.plot(ranks, stats["error"], **style)
        gx.plot(ranks, stats["gap"].clip(lower=GAP_FLOOR), **style)
    if len(bound):
        ranks = bound.index.astype(int)
        ax.plot(ranks, bound.values, color="0.35", lw=6, alpha=0.35, label="Eckart-Young bound", zorder=0)
        for a in (ax, gx):
            a.set_xscale("log", base=2)
            a.set_xticks(list(ranks), [str(r) for r in ranks])
            a.minorticks_off()
            a.set_xlabel("rank r")
    ax.set_yscale("log")
    ax.set_ylabel("relative error ‖∆W* − ∆W‖² / ‖∆W*‖²")
    ax.set_title(f"error at matched rank, mean of {seeds} seed{'s' * (seeds != 1)}\n"
                 "(grey: the best any rank-r ∆W can do)", fontsize=9.5)
    ax.legend(fontsize=7, ncol=2, loc="lower left")
    gx.set_yscale("log")
    gx.axhline(GAP_FLOOR, color="0.35", lw=6, alpha=0.35, zorder=0)
    gx.set_ylabel("error − bound")
    gx.set_title(f"gap to the bound (on the grey floor: reaches it, ≤ {GAP_FLOOR:g})", fontsize=9.5)
    if len(rec):
        means = rec.groupby("method", sort=False).error.mean()
        bx.bar(range(len(means)), means.values, color="tab:gray")
        bx.set_xticks(range(len(means)), [LABELS.get(m, m) for m in means.index], rotation=30, fontsize=8)
        bx.set_ylim(0, max(1.05, float(means.max()) * 1.05))
        bx.axhline(1.0, color="k", lw=0.8, ls=":")
        bx.set_title("reconstruction forms (rank-free)", fontsize=9.5)
        bx.set_ylabel("relative error (1 = ∆W = 0)")
    else:
        bx.set_axis_off()
    fig.tight_layout()
    from ..io import atomic_write

    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))


def run_and_write(cfg: StudyConfig, out: str | Path, experiment: str = "decomposition",
                  progress: bool = False) -> pd.DataFrame:
    """Run the study; write ``result.parquet`` (stage ``synthetic-mpc``, one row per form × rank ×
    seed, with provenance), ``grid.parquet`` (every learning rate tried), ``summary.csv`` and
    ``synthetic-mpc.png``, each atomically (a killed job leaves no half-written file). Returns the
    result rows."""
    from ..io import atomic_write, write_parquet
    from ..provenance import provenance

    started = time.perf_counter()
    out = Path(out)
    frame = run_study(cfg, progress=progress)
    config = {"study": STAGE, "experiment": experiment,
              **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(cfg).items()}}
    prov = provenance(config, time.perf_counter() - started, precision="fp32")  # matrices alone, no autocast
    result = result_rows(frame, cfg, experiment)
    for key, value in prov.items():
        result[key] = value
        frame[key] = value
    frame.insert(0, "stage", STAGE)
    frame.insert(0, "experiment", experiment)
    write_parquet(frame, out / "grid.parquet")
    table = summary(frame)
    atomic_write(out / "summary.csv", lambda tmp: table.to_csv(tmp))
    atomic_write(out / "synthetic-mpc.png", lambda tmp: plot(frame, tmp))
    write_parquet(result, out / "result.parquet")  # last: its presence means the job is complete
    return result
