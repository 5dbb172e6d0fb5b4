"""A trainable classification head for encoders, as a delta component (``classifier``).

The decomposition paper fine-tunes RoBERTa/DeBERTa on GLUE with a fully trainable RoBERTa-style
head on the first token: dropout → dense h→h → tanh → dropout → out h→labels. Keeping that head's
weights outside θ would break the one abstraction (a θ would no longer say everything a run
learned, and subspaces would silently miss part of the solution), so the head is a component whose
tensors live in θ like any other: ``deltaspace train --head classifier`` trains ``METHOD+classifier``
and :class:`deltaspace.heads.ClassifierHead` reads the module this component installs.

``labels`` is the number of outputs (the task's verbalizers; 1 for regression), ``dropout`` the
head's dropout (RoBERTa's hidden dropout, 0.1). ``dense`` starts N(0, 0.02) (the encoders'
``initializer_range``) with a zero bias; ``out`` starts at zero, so a fresh head outputs 0 for
every input (a choice: RoBERTa draws it N(0, 0.02) too) and the backbone's own outputs are unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbones import Backbone
from .base import DeltaMethod, DeltaOptionError, normal_

#: The attribute of the backbone model that holds the head (the heads module looks it up there).
MODULE = "deltaspace_classifier"


class ClassificationHead(nn.Module):
    def __init__(self, hidden: int, labels: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, labels)
        self.dropout = nn.Dropout(dropout)

    def forward(self, first_token: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.dense(self.dropout(first_token)))
        return self.out(self.dropout(x))


class Classifier(DeltaMethod):
    name = "classifier"
    defaults = {"labels": 2, "dropout": 0.1}
    families = ("bert", "roberta", "deberta-v2")  # encoders: seq2seq backbones generate their labels

    def install(self, backbone: Backbone) -> list[nn.Parameter]:
        labels, dropout = self.options["labels"], self.options["dropout"]
        if labels < 1:
            raise DeltaOptionError(f"{self.name}: labels must be at least 1 (1 = regression), got {labels}")
        if not 0.0 <= dropout < 1.0:
            raise DeltaOptionError(f"{self.name}: dropout must be in [0, 1), got {dropout}")
        weight = next(backbone.model.parameters())
        with torch.device(weight.device):
            head = ClassificationHead(backbone.hidden_size, labels, dropout).to(weight.dtype)
        head.requires_grad_(False)
        backbone.model.add_module(MODULE, head)
        return [head.dense.weight, head.dense.bias, head.out.weight, head.out.bias]

    def init_tensor(self, name, param, generator):
        if name.endswith("dense.weight"):
            return normal_(param.shape, 0.02, generator)
        return torch.zeros(param.shape)
