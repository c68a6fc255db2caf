"""Adam in one pass over memory on the CPU.

``torch.optim.Adam`` on the CPU updates a tensor with seven separate kernels (lerp, mul, addcmul,
sqrt, div, add, addcdiv), each a pass over the parameter, the gradient or the moments. For the
fine-tuned 7,050 x 4,096 image table of MGCN and FREEDOM that is about 2 GB of memory traffic per
step, 40% of a training step on Baby. ``FusedAdam`` does the same arithmetic in one OpenMP loop
(one read of each array, one write of the parameter and the moments), compiled with the system C
compiler when first used (about 0.1 s). It is a drop-in ``torch.optim.Adam``: the same
hyperparameters, ``param_groups`` and ``state_dict`` layout, so checkpoints move freely between
the two, and it delegates to ``torch.optim.Adam`` for anything outside the plain case (CUDA or
non-float32 tensors, amsgrad, weight decay, maximize) or when no C compiler is found.
A parameter carrying a ``bf16_shadow`` tensor (a fine-tuned feature table under
``precision=bf16``) gets that bfloat16 copy rewritten in the same pass. A row-sparse gradient
(FREEDOM's tables, projected on the batch's rows only) is stepped in the same single pass over
every row, without a table-sized zero-filled gradient.
"""

from __future__ import annotations

import ctypes
import logging
import math
import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

import torch

log = logging.getLogger(__name__)

# The arithmetic and its order follow torch.optim.Adam's single-tensor CPU path exactly:
# m = lerp(m, g, 1 - b1); v = v * b2 + (1 - b2) * g * g; p = p + (-step_size) * m / (sqrt(v) / bc2_sqrt + eps),
# each product evaluated left to right as ATen's addcmul / addcdiv kernels do, and no FMA contraction.
SOURCE = r"""
#include <math.h>
#include <stdint.h>
/* One element: the moments, then the parameter, left in pi. */
#define ADAM_UPDATE(i)                                                  \
    float gi = g[i];                                                    \
    float mi = m[i] + weight * (gi - m[i]);                             \
    float vi = v[i] * beta2 + one_minus_beta2 * gi * gi;                \
    m[i] = mi;                                                          \
    v[i] = vi;                                                          \
    float pi = p[i] + neg_step_size * mi / (sqrtf(vi) / bc2_sqrt + eps); \
    p[i] = pi;

void adam_step(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, int64_t n,
               float weight, float beta2, float one_minus_beta2, float bc2_sqrt, float eps, float neg_step_size,
               int threads) {
    #pragma omp parallel for simd num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        ADAM_UPDATE(i)
    }
}

/* x rounded to bfloat16 (round to nearest even, as torch's float -> bfloat16 cast; NaN stays NaN). */
#define STORE_BF16(dst, x)                                              \
    {                                                                   \
        union { float f; uint32_t u; } bits = { x };                    \
        uint32_t rounded = bits.u + 0x7FFFu + ((bits.u >> 16) & 1u);    \
        dst = (x != x) ? (uint16_t)0x7FC0u : (uint16_t)(rounded >> 16); \
    }

/* The same update, also writing the new parameter in bfloat16 into shadow: a bf16 copy kept
   current at no extra pass. */
void adam_step_shadow(float *restrict p, const float *restrict g, float *restrict m, float *restrict v,
                      uint16_t *restrict shadow, int64_t n, float weight, float beta2, float one_minus_beta2,
                      float bc2_sqrt, float eps, float neg_step_size, int threads) {
    #pragma omp parallel for simd num_threads(threads) schedule(static)
    for (int64_t i = 0; i < n; i++) {
        ADAM_UPDATE(i)
        STORE_BF16(shadow[i], pi)
    }
}

/* A row-sparse gradient: row r's gradient is values[position[r]] when position[r] >= 0, else the
   zero row ``zeros``, so every row gets the dense step's arithmetic. shadow_all may be NULL. */
void adam_step_rows(float *restrict p_all, const float *restrict values, const int64_t *restrict position,
                    const float *restrict zeros, float *restrict m_all, float *restrict v_all,
                    uint16_t *restrict shadow_all, int64_t n_rows, int64_t row_len, float weight, float beta2,
                    float one_minus_beta2, float bc2_sqrt, float eps, float neg_step_size, int threads) {
    #pragma omp parallel for num_threads(threads) schedule(static)
    for (int64_t r = 0; r < n_rows; r++) {
        float *restrict p = p_all + r * row_len;
        float *restrict m = m_all + r * row_len;
        float *restrict v = v_all + r * row_len;
        const float *restrict g = position[r] >= 0 ? values + position[r] * row_len : zeros;
        uint16_t *restrict shadow = shadow_all ? shadow_all + r * row_len : 0;
        #pragma omp simd
        for (int64_t i = 0; i < row_len; i++) {
            ADAM_UPDATE(i)
            if (shadow) STORE_BF16(shadow[i], pi)
        }
    }
}
"""
FLAGS = ["-O3", "-march=native", "-fopenmp", "-fno-math-errno", "-ffp-contract=off", "-shared", "-fPIC"]


@lru_cache(maxsize=1)
def kernel():
    """The compiled ``adam_step``, or None when no C compiler can build it."""
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        log.info("fused Adam: no C compiler found; using torch.optim.Adam")
        return None
    with tempfile.TemporaryDirectory(prefix="synergraph-adam-") as folder:
        source, library = Path(folder) / "adam.c", Path(folder) / "adam.so"
        source.write_text(SOURCE)
        try:
            subprocess.run([compiler, *FLAGS, str(source), "-o", str(library)], check=True, capture_output=True,
                           timeout=120)
            lib = ctypes.CDLL(str(library))  # stays mapped after the folder is removed
        except (OSError, subprocess.SubprocessError) as err:
            log.info("fused Adam: cannot compile the kernel (%s); using torch.optim.Adam", type(err).__name__)
            return None
    step, with_shadow, rows = lib.adam_step, lib.adam_step_shadow, lib.adam_step_rows
    step.argtypes = [ctypes.c_void_p] * 4 + [ctypes.c_int64] + [ctypes.c_float] * 6 + [ctypes.c_int]
    with_shadow.argtypes = [ctypes.c_void_p] * 5 + [ctypes.c_int64] + [ctypes.c_float] * 6 + [ctypes.c_int]
    rows.argtypes = [ctypes.c_void_p] * 7 + [ctypes.c_int64] * 2 + [ctypes.c_float] * 6 + [ctypes.c_int]
    step.restype = with_shadow.restype = rows.restype = None
    return step, with_shadow, rows


def available() -> bool:
    return kernel() is not None


def row_sparse(grad: torch.Tensor) -> bool:
    """Whether ``grad`` is a sparse COO gradient over rows only (``sparse_dim == 1``: whole rows,
    as ``ModalityProjection`` gives a table projected on a batch's rows), with unique rows."""
    return grad.is_sparse and grad.sparse_dim() == 1 and grad.is_coalesced()


class FusedAdam(torch.optim.Adam):
    """``torch.optim.Adam`` whose CPU float32 update is one fused pass (see the module doc).

    It also takes a row-sparse gradient (:func:`row_sparse`), which ``torch.optim.Adam`` refuses:
    every row is updated as with the dense gradient (the rows it lacks with zero), in the same
    single pass, without a table-sized zero-filled gradient. Where the fused kernel does not
    apply, such a gradient is made dense and ``torch.optim.Adam`` takes the step."""

    def _plain(self) -> bool:
        if kernel() is None:
            return False
        for group in self.param_groups:
            if group["amsgrad"] or group["weight_decay"] != 0 or group["maximize"] or group["capturable"] \
                    or group["differentiable"] or isinstance(group["lr"], torch.Tensor):
                return False
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.device.type != "cpu" or p.dtype != torch.float32 or not p.is_contiguous():
                    return False
                # (torch keeps a gradient's dtype that of its parameter, float32 here)
                grad_ok = (row_sparse(p.grad) and p.grad.values().is_contiguous() if p.grad.is_sparse
                           else p.grad.is_contiguous())
                if not grad_ok:
                    return False
                state = self.state.get(p)
                if state and not (state["exp_avg"].is_contiguous() and state["exp_avg_sq"].is_contiguous()):
                    return False
        return True

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None or not self._plain():
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is not None and p.grad.is_sparse:
                        p.grad = p.grad.to_dense()
            return super().step(closure)
        adam_step, adam_step_shadow, adam_step_rows = kernel()
        threads = torch.get_num_threads()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:  # the layout torch.optim.Adam uses, so state_dicts are interchangeable
                    state["step"] = torch.tensor(0.0, dtype=torch.float32)
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["step"] += 1
                step = state["step"].item()
                step_size = group["lr"] / (1 - beta1 ** step)
                bc2_sqrt = math.sqrt(1 - beta2 ** step)
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
                scalars = [1 - beta1, beta2, 1 - beta2, bc2_sqrt, group["eps"], -step_size, threads]
                shadow = getattr(p, "bf16_shadow", None)  # set by nn.multimodal.ModalityProjection
                if not (shadow is not None and shadow.shape == p.shape and shadow.dtype == torch.bfloat16
                        and shadow.is_contiguous() and shadow.device == p.device):
                    shadow = None
                if p.grad.is_sparse:
                    rows, values = p.grad.indices()[0], p.grad.values()  # coalesced: checked in _plain
                    position = torch.full((p.shape[0],), -1, dtype=torch.int64)
                    position[rows] = torch.arange(len(rows))
                    row_len = p.numel() // p.shape[0]
                    zeros = torch.zeros(row_len)
                    adam_step_rows(p.data_ptr(), values.data_ptr(), position.data_ptr(), zeros.data_ptr(),
                                   exp_avg.data_ptr(), exp_avg_sq.data_ptr(),
                                   None if shadow is None else shadow.data_ptr(), p.shape[0], row_len, *scalars)
                    continue
                pointers = [p.data_ptr(), p.grad.data_ptr(), exp_avg.data_ptr(), exp_avg_sq.data_ptr()]
                if shadow is not None:
                    adam_step_shadow(*pointers, shadow.data_ptr(), p.numel(), *scalars)
                else:
                    adam_step(*pointers, p.numel(), *scalars)
        return None
