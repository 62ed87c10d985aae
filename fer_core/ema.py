"""Exponential moving average of a model's weights (Polyak averaging), updated after every SGD step."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def check_ema(decay: float) -> None:
    """ValueError unless 0 <= decay < 1 (0 turns the average off)."""
    if not 0.0 <= decay < 1.0:
        raise ValueError(f"ema is the per-step decay of the weight average, 0 (off) up to but not including 1, not {decay}")


class WeightEMA:
    """A copy of `model` whose floating tensors (weights and batch-norm statistics) follow the trained ones as
    ema = d * ema + (1 - d) * current after each step, d = min(decay, (1 + n) / (10 + n)) at update n, so the first
    steps' random weights fade quickly; integer buffers are copied. With decay 0.999 the average spans about the last
    1,000 steps (4.5 epochs of FER2013 at batch 128). Evaluate and save `.model`; resume with state_dict()."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        check_ema(decay)
        self.decay, self.updates = decay, 0
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._pairs = self._tensors(model)

    def _tensors(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        mine, theirs = self.model.state_dict(), model.state_dict()
        floats = [k for k, v in mine.items() if v.is_floating_point()]
        ints = [k for k, v in mine.items() if not v.is_floating_point()]
        return [mine[k] for k in floats], [theirs[k] for k in floats], [mine[k] for k in ints], [theirs[k] for k in ints]

    @torch.no_grad()
    def update(self) -> None:
        """Move the average towards the trained model's current tensors (call after optimizer.step())."""
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        ema_f, cur_f, ema_i, cur_i = self._pairs
        torch._foreach_lerp_(ema_f, cur_f, 1.0 - d)
        for e, c in zip(ema_i, cur_i, strict=True):
            e.copy_(c)

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
