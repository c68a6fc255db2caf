"""Modality modules shared by the multimodal models: feature projection, the behaviour-gated
purifier and the behaviour-aware fuser (MGCN, ACM MM 2023; MODELS.md 1.4 b, e)."""

from __future__ import annotations

import torch
from torch import nn


class ModalityProjection(nn.Module):
    """x_hat^m = W_1^m x^m + b_1^m over the whole item feature table of one modality.

    With ``finetune=True`` the raw feature table itself is a parameter, as in MGCN/FREEDOM
    (``nn.Embedding.from_pretrained(..., freeze=False)``); its gradient is then computed by
    :class:`_TableProjection` into one buffer kept across steps. :meth:`use_bfloat16` computes
    the projection in bfloat16 (the run setting ``precision=bf16``): on CPUs with AMX or AVX-512
    bf16 the three table-sized matmuls of a step run 1.7-4x faster; the output stays float32.
    """

    def __init__(self, features: torch.Tensor, out_dim: int, finetune: bool, unit_rows: bool = False):
        super().__init__()
        features = features.float().clone()
        if unit_rows:  # raw rows have norms of 15-71 on the Amazon features; Adam's steps scale with them
            features = nn.functional.normalize(features, dim=1)
        if finetune:
            self.features = nn.Parameter(features)
        else:
            # Not saved in checkpoints: it is rebuilt from the (checksum-verified) dataset.
            self.register_buffer("features", features, persistent=False)
        self.linear = nn.Linear(features.shape[1], out_dim)
        self.bfloat16 = False
        self.grad_buffer: torch.Tensor | None = None  # the fine-tuned table's gradient, reused each step
        self.shadow: torch.Tensor | None = None  # bf16 copy of a fine-tuned table (precision=bf16)
        self.shadow_version = -1

    def use_bfloat16(self, enabled: bool = True) -> None:
        self.bfloat16 = enabled
        if not isinstance(self.features, nn.Parameter):  # a frozen table is cast once, not every step
            self.features = self.features.to(torch.bfloat16 if enabled else torch.float32)
        self.shadow, self.shadow_version = None, -1

    def bf16_table(self) -> torch.Tensor:
        """The fine-tuned table in bfloat16, re-cast only when it changed since the last call.

        ``FusedAdam`` writes this copy in the same pass as the parameter (``bf16_shadow``), so
        in training it is never re-cast; any other in-place change (``torch.optim.Adam``,
        ``load_state_dict``) raises the table's version and triggers one cast."""
        table = self.features
        if self.shadow is None or getattr(table, "bf16_shadow", None) is not self.shadow:
            self.shadow = torch.empty_like(table, dtype=torch.bfloat16)
            self.shadow_version = -1
            table.bf16_shadow = self.shadow
        if self.shadow_version != table._version:
            with torch.no_grad():
                self.shadow.copy_(table)
            self.shadow_version = table._version
        return self.shadow

    def forward(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        """Projected features of every item, or of ``rows`` only (``rows`` must be unique)."""
        features = self.features
        if isinstance(features, nn.Parameter):
            shadow = self.bf16_table() if self.bfloat16 else None
            if features.requires_grad and torch.is_grad_enabled():
                return _TableProjection.apply(features, self.linear.weight, self.linear.bias, rows, shadow, self)
            features = features if shadow is None else shadow
        features = features if rows is None else features[rows]
        if features.dtype != torch.bfloat16:
            return self.linear(features)
        with torch.autocast(device_type=features.device.type, dtype=torch.bfloat16):
            return self.linear(features).float()


class _TableProjection(torch.autograd.Function):
    """``linear(table[rows])`` for a fine-tuned table, written for its gradient.

    The table's gradient (``grad_out @ W``, as large as the table: 116 MB for Baby's image
    features) is written into ``module.grad_buffer``, allocated once, and installed as
    ``table.grad`` (or added to an existing one), instead of a fresh tensor each step: a fresh one
    costs a page fault per 4 KiB on first touch, which measured 77 ms against 28 ms for the same
    matmul into reused memory. ``table.grad`` is therefore that buffer, overwritten by the next
    backward pass after ``zero_grad(set_to_none=True)``: clone it to keep it. With ``rows`` it is
    a sparse COO gradient of those rows only, its values in that buffer (``FusedAdam`` steps on
    it; ``.to_dense()`` gives autograd's dense gradient). With ``shadow``
    (the bfloat16 table), the forward, the weight gradient and the table's gradient multiply in
    bfloat16 (the last widened into the float32 buffer: 28 ms against 47 ms for Baby's table).
    """

    @staticmethod
    def forward(ctx, table, weight, bias, rows, shadow, module):
        source = table if shadow is None else shadow
        features = source if rows is None else source[rows]
        if shadow is None:
            out = torch.addmm(bias, features, weight.t())
        else:
            out = torch.addmm(bias.bfloat16(), features, weight.bfloat16().t()).float()
        ctx.save_for_backward(weight)
        ctx.features, ctx.rows, ctx.module = features, rows, module
        return out

    @staticmethod
    def backward(ctx, grad_out):
        (weight,) = ctx.saved_tensors
        features, rows, module = ctx.features, ctx.rows, ctx.module
        grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:
            grad_weight = (grad_out.to(features.dtype).t() @ features).float()
        if ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum(0)
        if ctx.needs_input_grad[0]:
            _accumulate_table_grad(module, grad_out, weight, rows)
        return None, grad_weight, grad_bias, None, None, None


@torch.no_grad()
def _accumulate_table_grad(module: ModalityProjection, grad_out: torch.Tensor, weight: torch.Tensor,
                           rows: torch.Tensor | None) -> None:
    table = module.features
    if table.grad is not None:  # accumulate, as autograd would
        if table.grad.is_sparse:
            table.grad = table.grad.to_dense()
        if rows is None:
            table.grad.addmm_(grad_out, weight)
        else:
            table.grad.index_add_(0, rows, grad_out @ weight)
        return
    buffer = module.grad_buffer
    if buffer is None or buffer.shape != table.shape or buffer.device != table.device:
        buffer = module.grad_buffer = torch.empty_like(table)
    if rows is None and module.bfloat16:
        _bf16_product_into(buffer, grad_out, weight)
    elif rows is None:
        torch.mm(grad_out, weight, out=buffer)
    else:
        # Only these rows have a gradient: a sparse COO gradient of them (its values in the
        # buffer's first rows) spares zero-filling and scattering into the whole table; FusedAdam
        # updates every row from it as from the dense one (FREEDOM's step: see its test).
        if not bool((rows[1:] > rows[:-1]).all()):  # a coalesced sparse tensor lists its rows in order
            order = torch.argsort(rows)
            rows, grad_out = rows[order], grad_out[order]
        values = torch.mm(grad_out, weight, out=buffer[: len(rows)])
        table.grad = torch.sparse_coo_tensor(rows.unsqueeze(0), values, table.shape, is_coalesced=True)
        return
    table.grad = buffer


def _bf16_product_into(out: torch.Tensor, left: torch.Tensor, right: torch.Tensor, block_rows: int = 512) -> None:
    """``out = left @ right`` multiplied in bfloat16 (float32 accumulation inside the kernel, the
    result rounded to bfloat16, then widened into ``out``), ``block_rows`` rows at a time so the
    bfloat16 block stays in cache on its way to ``out``."""
    left, right = left.bfloat16(), right.bfloat16()
    block = torch.empty(min(block_rows, len(out)), out.shape[1], dtype=torch.bfloat16, device=out.device)
    for start in range(0, len(out), block_rows):
        part = left[start : start + block_rows]
        out[start : start + len(part)].copy_(torch.mm(part, right, out=block[: len(part)]))


class Purifier(nn.Module):
    """Behaviour-gated purifier: e_tilde = e_id * sigmoid(W_2 x_hat + b_2).

    The ID embeddings carry the users' preferences (they are what BPR trains), so the gate keeps
    the modality components that agree with behaviour. ``normalise_input`` puts a LayerNorm on
    x_hat first, so the projection's growth under Adam no longer reaches the gate; on Baby the
    gate's own weights and the norm's gain then grow instead and the gates saturate as before
    (docs/results.md, "Purifier gates"). ``last_gate`` and ``last_logits`` are kept for diagnostics.
    """

    def __init__(self, dim: int, normalise_input: bool = False):
        super().__init__()
        self.input_norm = nn.LayerNorm(dim) if normalise_input else None
        self.gate = nn.Linear(dim, dim)
        self.last_gate: torch.Tensor | None = None
        self.last_logits: torch.Tensor | None = None

    def forward(self, id_embedding: torch.Tensor, projected: torch.Tensor) -> torch.Tensor:
        logits = self.gate(projected if self.input_norm is None else self.input_norm(projected))
        gate = torch.sigmoid(logits)
        self.last_logits, self.last_gate = logits.detach(), gate.detach()
        return id_embedding * gate

    def penalty(self) -> torch.Tensor:
        """Half the squared norm of the gate's weights and bias (the papers' L2 term, on the gate
        alone): a decay on it makes the gate's own growth pay for itself in the loss.

        With ``normalise_input`` the norm's gain g and shift h feed the same logits,
        W (g * n + h) + b, so the term is on that composed map, W diag(g) and W h + b: decaying W
        alone let the gain grow instead. Then each logit is bounded by construction, by its row's
        norm times sqrt(dim) (the unit-variance input) plus its bias, and the decay bounds both."""
        weight, bias = self.gate.weight, self.gate.bias
        if self.input_norm is not None:
            bias = bias + weight @ self.input_norm.bias
            weight = weight * self.input_norm.weight
        return 0.5 * (weight.square().sum() + bias.square().sum())


#: a gate below this or above 1 minus this is saturated (its sigmoid's gradient is < 0.05)
SATURATED = 0.05


def saturated_share(gate: torch.Tensor) -> float:
    """The share of gate values below ``SATURATED`` or above ``1 - SATURATED``."""
    return float(((gate < SATURATED) | (gate > 1 - SATURATED)).float().mean())


def gate_penalty(purifiers: nn.ModuleDict | None) -> torch.Tensor | float:
    """The purifiers' summed :meth:`Purifier.penalty` (0 without purifiers)."""
    return sum((purifier.penalty() for purifier in (purifiers or {}).values()), 0.0)


def gate_diagnostics(purifiers: nn.ModuleDict | None) -> dict[str, float]:
    """Per-modality gate mean, std, saturated share and pre-activation (logit) std of the last
    forward pass: near-0/1 gates (std ~0.5, a large saturated share) or a constant gate are
    MODELS.md's failure signatures, and a logit std of several units is what produces them;
    logged at every evaluation."""
    out = {}
    for m, purifier in (purifiers or {}).items():
        gate = purifier.last_gate
        if gate is not None:
            out[f"gate_{m}_mean"] = float(gate.mean())
            out[f"gate_{m}_std"] = float(gate.std())
            out[f"gate_{m}_saturated"] = saturated_share(gate)
            out[f"gate_{m}_logit_std"] = float(purifier.last_logits.std())
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
