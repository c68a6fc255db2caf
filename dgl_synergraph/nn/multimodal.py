"""Modality modules shared by the multimodal models: feature projection, the behaviour-gated
purifier and the behaviour-aware fuser (MGCN, ACM MM 2023; MODELS.md 1.4 b, e)."""

from __future__ import annotations

import torch
from torch import nn


class ModalityProjection(nn.Module):
    """x_hat^m = W_1^m x^m + b_1^m over the whole item feature table of one modality.

    With ``finetune=True`` the raw feature table itself is a parameter, as in MGCN/FREEDOM
    (``nn.Embedding.from_pretrained(..., freeze=False)``). :meth:`use_bfloat16` computes the
    projection in bfloat16 (the run setting ``precision=bf16``): on CPUs with AMX or AVX-512 bf16
    this matmul, the largest of a step, runs several times faster; the output stays float32.
    """

    def __init__(self, features: torch.Tensor, out_dim: int, finetune: bool):
        super().__init__()
        features = features.float().clone()
        if finetune:
            self.features = nn.Parameter(features)
        else:
            # Not saved in checkpoints: it is rebuilt from the (checksum-verified) dataset.
            self.register_buffer("features", features, persistent=False)
        self.linear = nn.Linear(features.shape[1], out_dim)
        self.bfloat16 = False

    def use_bfloat16(self, enabled: bool = True) -> None:
        self.bfloat16 = enabled
        if not isinstance(self.features, nn.Parameter):  # a frozen table is cast once, not every step
            self.features = self.features.to(torch.bfloat16 if enabled else torch.float32)

    def forward(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Projected features of every item, or of ``rows`` only."""
        features = self.features if rows is None else self.features[rows]
        if not self.bfloat16:
            return self.linear(features)
        with torch.autocast(device_type=features.device.type, dtype=torch.bfloat16):
            return self.linear(features).float()


def set_precision(model: nn.Module, precision: str) -> None:
    """``"bf16"``: every modality projection of ``model`` computes in bfloat16; ``"fp32"``: none."""
    for module in model.modules():
        if isinstance(module, ModalityProjection):
            module.use_bfloat16(precision == "bf16")


class Purifier(nn.Module):
    """Behaviour-gated purifier: e_tilde = e_id * sigmoid(W_2 x_hat + b_2).

    The ID embeddings carry the users' preferences (they are what BPR trains), so the gate keeps
    the modality components that agree with behaviour. ``last_gate`` is kept for diagnostics.
    """

    def __init__(self, dim: int):
        super().__init__()
        self.gate = nn.Linear(dim, dim)
        self.last_gate: torch.Tensor | None = None

    def forward(self, id_embedding: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
        gate = torch.sigmoid(self.gate(projected))
        self.last_gate = gate.detach()
        return id_embedding * gate


def gate_diagnostics(purifiers: nn.ModuleDict | None) -> dict[str, float]:
    """Per-modality gate mean/std of the last forward pass: near-0/1 gates (std ~0.5) or a
    constant gate are MODELS.md's failure signatures, logged at every evaluation."""
    out = {}
    for m, purifier in (purifiers or {}).items():
        if purifier.last_gate is not None:
            out[f"gate_{m}_mean"] = float(purifier.last_gate.mean())
            out[f"gate_{m}_std"] = float(purifier.last_gate.std())
    return out


class BehaviorAwareFuser(nn.Module):
    """Fuse modality views under the guidance of the behaviour (user-item) view.

    alpha^m = softmax_m q^T tanh(W_a h^m + b_a); common c = sum_m alpha^m h^m; specific
    s^m = h^m - c; preference gate g^m = sigmoid(W_g^m e_ui + b_g^m);
    side = (sum_m g^m * s^m + c) / (M + 1).
    """

    def __init__(self, dim: int, modalities: list[str]):
        super().__init__()
        self.modalities = list(modalities)
        self.query = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1, bias=False))
        self.preference = nn.ModuleDict({m: nn.Linear(dim, dim) for m in self.modalities})

    def forward(self, views: dict[str, torch.Tensor], behaviour: torch.Tensor) -> torch.Tensor:
        stacked = torch.stack([views[m] for m in self.modalities], dim=1)  # [N, M, d]
        weights = torch.softmax(self.query(stacked), dim=1)  # [N, M, 1]
        common = (weights * stacked).sum(1)
        side = common
        for index, m in enumerate(self.modalities):
            side = side + torch.sigmoid(self.preference[m](behaviour)) * (stacked[:, index] - common)
        return side / (len(self.modalities) + 1)


def modulus_perturbation(z: torch.Tensor, eps: float, inverse: bool = False) -> torch.Tensor:
    """z + noise whose norm is eps * ||z|| per row (SIGER's modulus-based perturbation).

    The direction is sign(z) * u / ||sign(z) * u|| with u ~ U(0, 1)^d (SimGCL-style), so the
    noise stays in z's orthant. ``inverse``: noise norm eps * mean_norm instead (intensity
    inversely proportional to the modulus; every row gets the same absolute noise).
    """
    direction = torch.sign(z) * torch.rand_like(z)
    direction = direction / direction.norm(dim=1, keepdim=True).clamp(min=1e-12)
    norms = z.norm(dim=1, keepdim=True)
    scale = eps * norms.mean() if inverse else eps * norms
    return z + scale.detach() * direction
