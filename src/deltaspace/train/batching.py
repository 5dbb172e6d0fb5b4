"""Prepared task data → padded batches, in a seeded order that can resume mid-epoch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

SPLITS = ("train", "dev", "test")


@dataclass
class TaskData:
    """One prepared task folder (see docs/contracts.md): manifest plus its three splits."""

    path: Path
    manifest: dict
    splits: dict[str, pd.DataFrame]

    @property
    def name(self) -> str:
        return self.manifest["task"]

    @property
    def verbalizers(self) -> list[str] | None:
        return self.manifest.get("verbalizers") or None

    @property
    def metric(self) -> str:
        return self.manifest["metric"]

    @property
    def regression(self) -> bool:
        return self.manifest.get("kind") == "regression"


def load_task_data(path: str | Path) -> TaskData:
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{path}: not a prepared task folder (no manifest.json); run `deltaspace prepare`")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{manifest_path}: not valid JSON ({exc}); run `deltaspace prepare` again") from None
    splits = {}
    for s in SPLITS:
        split_path = path / f"{s}.parquet"
        if not split_path.is_file():
            raise FileNotFoundError(f"{split_path}: missing from the prepared task folder; run `deltaspace prepare` again")
        try:
            splits[s] = pd.read_parquet(split_path)
        except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise ValueError(f"{split_path}: cannot read Parquet ({exc}); run `deltaspace prepare` again") from None
    for split, df in splits.items():
        if df.empty:
            raise ValueError(f"{path / f'{split}.parquet'}: the {split} split of task {manifest['task']!r} is empty")
    return TaskData(path, manifest, splits)


def collate(rows: list[dict], pad_id: int, kind: str, task_index: int | None = None,
            regression: bool = False) -> dict[str, torch.Tensor]:
    """Pad to the longest row of the batch (dynamic padding); targets pad with -100.

    Seq2seq batches carry the target ids (``labels``) and, as encoder batches do, the class index
    (``label``), which the sentinel heads read. ``regression`` adds ``score``, the float value of
    each row's ``target`` text, for the heads that regress on it (the label head generates the
    number as text instead)."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[i, :n] = torch.tensor(list(r["input_ids"]), dtype=torch.long)
        mask[i, :n] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if kind == "decoder":
        return _collate_decoder(rows, pad_id, task_index)
    if kind == "seq2seq":
        twidth = max(len(r["target_ids"]) for r in rows)
        labels = torch.full((len(rows), twidth), -100, dtype=torch.long)
        for i, r in enumerate(rows):
            labels[i, :len(r["target_ids"])] = torch.tensor(list(r["target_ids"]), dtype=torch.long)
        batch["labels"] = labels
        if all("label" in r for r in rows):  # prepared rows have it; the sentinel heads read it
            batch["label"] = torch.as_tensor([r["label"] for r in rows], dtype=torch.long)
    else:
        batch["label"] = torch.as_tensor([r["label"] for r in rows], dtype=torch.long)
    if regression:
        batch["score"] = torch.as_tensor([target_value(r) for r in rows], dtype=torch.float32)
    if task_index is not None:
        batch["task_index"] = torch.full((len(rows),), task_index, dtype=torch.long)
    return batch


def _collate_decoder(rows: list[dict], pad_id: int, task_index: int | None) -> dict[str, torch.Tensor]:
    """A decoder-only batch: ``input_ids`` = prompt + target (right-padded) with ``labels`` -100 on
    the prompt and the padding, for the causal LM loss; ``prompt_ids`` / ``prompt_mask`` = the
    prompt alone, left-padded, where greedy decoding starts; ``label`` (class index) where every
    row has one (the likelihood head)."""
    seqs = [list(r["input_ids"]) + list(r["target_ids"]) for r in rows]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    pwidth = max(len(r["input_ids"]) for r in rows)
    prompt = torch.full((len(rows), pwidth), pad_id, dtype=torch.long)
    pmask = torch.zeros((len(rows), pwidth), dtype=torch.long)
    for i, (r, seq) in enumerate(zip(rows, seqs)):
        n, p = len(seq), len(r["input_ids"])
        ids[i, :n] = torch.tensor(seq, dtype=torch.long)
        mask[i, :n] = 1
        labels[i, p:n] = torch.tensor(seq[p:], dtype=torch.long)
        prompt[i, pwidth - p:] = torch.tensor(seq[:p], dtype=torch.long)
        pmask[i, pwidth - p:] = 1
    batch = {"input_ids": ids, "attention_mask": mask, "labels": labels, "prompt_ids": prompt, "prompt_mask": pmask}
    labels_of = [r.get("label") for r in rows]
    if all(label is not None and int(label) >= 0 for label in labels_of):  # -1: generation/regression rows
        batch["label"] = torch.as_tensor([int(label) for label in labels_of], dtype=torch.long)
    if task_index is not None:
        batch["task_index"] = torch.full((len(rows),), task_index, dtype=torch.long)
    return batch


def target_value(row: dict) -> float:
    """The float target of a regression row (prepared data keeps it as text, e.g. "3.8")."""
    try:
        return float(row["target"])
    except (TypeError, ValueError):
        raise ValueError(f"row idx={row.get('idx')}: regression target {row['target']!r} is not a number") from None


class BatchStream:
    """Endless shuffled batches over one split; its position is part of a checkpoint.

    Each epoch's order is a permutation drawn from ``seed`` and the epoch number alone, so a
    resumed stream continues exactly where the interrupted one stopped.
    """

    def __init__(self, rows: list[dict], batch_size: int, seed: int, pad_id: int, kind: str,
                 regression: bool = False) -> None:
        if not rows:
            raise ValueError("cannot train on an empty split")
        self.rows, self.batch_size, self.seed, self.pad_id, self.kind = rows, batch_size, seed, pad_id, kind
        self.regression = regression
        self.epoch, self.position = 0, 0

    def _order(self) -> list[int]:
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        return torch.randperm(len(self.rows), generator=g).tolist()

    def __next__(self) -> dict[str, torch.Tensor]:
        order = self._order()
        if self.position >= len(order):
            self.epoch, self.position = self.epoch + 1, 0
            order = self._order()
        picked = order[self.position:self.position + self.batch_size]
        self.position += len(picked)
        return collate([self.rows[i] for i in picked], self.pad_id, self.kind, regression=self.regression)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = state["epoch"], state["position"]


def split_rows(data: TaskData, split: str) -> list[dict]:
    return data.splits[split].to_dict("records")


def eval_batches(rows: list[dict], batch_size: int, pad_id: int, kind: str):
    for start in range(0, len(rows), batch_size):
        yield collate(rows[start:start + batch_size], pad_id, kind)
