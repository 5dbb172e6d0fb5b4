"""The subspace stages as objectives for the shared training loop.

- ``FitObjective`` (stage 1): trains the decoders (and, by mode, encoders or shared vectors)
  so decoded θ̄ do the training tasks well: joint decomposition (unified-dt §2.1), the
  simplified shared-vector pipeline (§2.5) and IPT's multi-task subspace finding (ipt §1.2).
- ``IntrinsicObjective`` (stages 2 and 3): trains one y-vector through a frozen decoder on an
  unseen task; at every evaluation it decodes the vector with every method of the subspace and
  keeps, per target method, the vector best on that target's dev (unified-dt notes §6.8).
"""

from __future__ import annotations

import torch
from torch import nn

from ..train.batching import TaskData, split_rows
from ..train.loop import device
from .fastfood import FastfoodProjection
from .projectors import (IntrinsicVector, JointDecomposition, PromptAutoEncoder, SharedVectorSubspace,
                         up_projections)
from .runtime import MethodRuntime

MODES = ("joint", "shared", "msf", "random")


def shared_projections(runtimes: dict[str, MethodRuntime], y: int, seed: int) -> dict[str, nn.Module]:
    """Proj↑ per delta method; fine-tuning gets θ0 + Fastfood(I) with a trainable G instead
    (unified-dt §2.6): a dense y × 222M map is what Fastfood exists to avoid."""
    linear = up_projections({m: rt.delta.size for m, rt in runtimes.items() if m != "finetune"}, y, seed)
    if "finetune" not in runtimes:
        return linear
    delta = runtimes["finetune"].delta
    fastfood = FastfoodProjection(y, [slot.shape for slot in delta.manifest], seed=seed, trainable_G=True,
                                  theta0=delta.init(seed))
    return {**linear, "finetune": fastfood}


class FitObjective:
    """Stage 1 over training tasks × methods; the trainable module depends on ``mode``."""

    def __init__(self, mode: str, runtimes: dict[str, MethodRuntime], tasks: list[TaskData],
                 thetas: dict[str, torch.Tensor] | None, y: int, seed: int, recon_weight: float,
                 lr_vector: float | None, eval_batch_size: int, recon_form: str = "sum") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; valid modes: {', '.join(MODES)}")
        if "finetune" in runtimes and mode != "shared":
            raise ValueError("fine-tuning joins a subspace only in --mode shared (θ0 + Fastfood(I), unified-dt §2.6)")
        self.mode, self.runtimes, self.tasks = mode, runtimes, tasks
        self.recon_weight, self.lr_vector, self.eval_batch_size = recon_weight, lr_vector, eval_batch_size
        sizes = {m: rt.delta.size for m, rt in runtimes.items()}
        if mode == "joint":
            self.module: nn.Module = JointDecomposition(sizes, y, seed)
        elif mode == "shared":
            self.module = SharedVectorSubspace(len(tasks), y, shared_projections(runtimes, y, seed), seed)
        else:
            (method, rt), = runtimes.items()
            n, d = rt.delta.manifest[0].shape
            self.module = PromptAutoEncoder(n, d, y, seed=seed, recon=recon_form)
        self.module.to(device())
        # thetas[method]: (n_tasks, |θ|) stage-0 solutions of the training tasks, in task order.
        self.thetas = {m: t.to(device()) for m, t in (thetas or {}).items()}
        self.heads = {(i, m): rt.head(t) for i, t in enumerate(tasks) for m, rt in runtimes.items()}
        self.mix_generator = torch.Generator().manual_seed(seed)

    def param_groups(self, lr: float) -> list[dict]:
        if self.mode == "shared":
            return self.module.param_groups(self.lr_vector or lr, lr)
        return [{"params": [p for p in self.module.parameters() if p.requires_grad], "lr": lr}]

    def decoded(self, task: int, training: bool) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """θ̄ per method for one training task, and the reconstruction loss (0 where none)."""
        zero = torch.zeros((), device=device())
        if self.mode == "shared":
            return self.module(torch.tensor(task, device=device())), zero
        own = {m: t[task] for m, t in self.thetas.items()}
        if self.mode == "msf":
            (method, theta), = own.items()
            rebuilt, recon = self.module(theta)
            return {method: rebuilt}, recon
        if training:
            return self.module(own, self.mix_generator)
        # Evaluation decodes each method's own code: the solution as the subspace represents it.
        return {m: self.module.up[m](self.module.down[m](theta)) for m, theta in own.items()}, zero

    def loss(self, batch: dict) -> torch.Tensor:
        task = int(batch["task_index"][0])
        thetas, recon = self.decoded(task, training=True)
        task_loss = sum(rt.task_loss(thetas[m], self.heads[task, m], batch) for m, rt in self.runtimes.items())
        if self.mode == "shared":
            task_loss = task_loss / len(self.runtimes)  # A.3: the mean over methods
        return task_loss + self.recon_weight * recon

    @torch.no_grad()
    def scores(self, split: str = "dev") -> dict[tuple[str, str], float]:
        """Score on ``split`` of every (training task, method) with its decoded θ̄."""
        out = {}
        for i, task in enumerate(self.tasks):
            thetas, _ = self.decoded(i, training=False)
            for m, rt in self.runtimes.items():
                out[task.name, m] = rt.score(thetas[m], self.heads[i, m], split_rows(task, split), task.metric,
                                             self.eval_batch_size)
        return out

    def evaluate(self, step: int) -> float:
        scores = self.scores()
        return sum(scores.values()) / len(scores)

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.module.state_dict().items()}

    def state_dict(self) -> dict:
        return {"module": self.snapshot(), "mix": self.mix_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.mix_generator.set_state(state["mix"])

    def decoders(self) -> dict[str, nn.Module]:
        """Method → frozen decoder (y → θ) after fitting: what later stages keep."""
        if self.mode == "msf":
            (method,) = self.runtimes
            return {method: self.module.decoder}
        if self.mode == "shared":
            return dict(self.module.projections)
        return dict(self.module.up)


class IntrinsicObjective:
    """Stage 2 with stage 3 alongside: one intrinsic vector, decoded by every method's decoder."""

    def __init__(self, source: str, decoders: dict[str, nn.Module], runtimes: dict[str, MethodRuntime],
                 task: TaskData, y: int, seed: int, eval_batch_size: int) -> None:
        self.intrinsic = IntrinsicVector(y, seed, decoders[source]).to(device())
        self.vector = self.intrinsic.vector
        self.source, self.decoders, self.runtimes, self.task = source, decoders, runtimes, task
        for decoder in decoders.values():
            decoder.to(device()).requires_grad_(False)
        self.heads = {m: rt.head(task) for m, rt in runtimes.items()}
        self.eval_batch_size = eval_batch_size
        # Per target method: (best dev, step, vector at that step).
        self.best: dict[str, tuple[float, int, torch.Tensor]] = {}

    def param_groups(self, lr: float) -> list[dict]:
        return [{"params": [self.vector], "lr": lr}]

    @property
    def theta(self) -> torch.Tensor:
        """The source method's θ decoded from the vector (differentiable in it): what fused runs bind."""
        return self.intrinsic()

    @property
    def head(self):
        return self.heads[self.source]

    def loss(self, batch: dict) -> torch.Tensor:
        return self.runtimes[self.source].task_loss(self.theta, self.head, batch)

    def score(self, target: str, vector: torch.Tensor, split: str) -> float:
        theta = self.decoders[target](vector.to(device()))
        return self.runtimes[target].score(theta, self.heads[target], split_rows(self.task, split), self.task.metric,
                                           self.eval_batch_size)

    @torch.no_grad()
    def evaluate(self, step: int) -> float:
        """Dev of every target now (kept per target, with ``step``); the loop selects on the source's."""
        devs = {target: self.score(target, self.vector, "dev") for target in self.runtimes}
        for target, dev in devs.items():
            if target not in self.best or dev > self.best[target][0]:
                self.best[target] = (dev, step, self.vector.detach().cpu().clone())
        return devs[self.source]

    def snapshot(self) -> dict[str, torch.Tensor]:
        return {"vector": self.vector.detach().cpu().clone()}

    def state_dict(self) -> dict:
        return {"vector": self.vector.detach().cpu().clone(), "best": self.best}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            self.vector.copy_(state["vector"])
        self.best = state["best"]
