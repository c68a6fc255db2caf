#!/usr/bin/env bash
# The GPU figures of the README's "GPU (torch backend)" section: epoch and evaluation time of
# LightGCN and MGCN (fp32, and MGCN in bf16) on each dataset, on a CUDA device, through the
# trainer's own code (benchmarks.model_epoch). DGL is not needed: where it cannot be imported,
# every propagation runs on the torch backend, which is what 'auto' picks on a GPU anyway.
#
#   SYNERGRAPH_DATA=/path/holding/baby bash benchmarks/gpu.sh baby [elec ...]
#   MODELS="freedom synergraph siger" EPOCHS=2 bash benchmarks/gpu.sh elec   # other models, fewer epochs
#
# Each line it prints names the device, the torch version and the backend used.
set -uo pipefail
export PYTHONUNBUFFERED=1 DGLBACKEND=pytorch
python=${PYTHON:-python3}
[ $# -gt 0 ] || set -- baby
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$python" -c "import torch, numpy; print('torch', torch.__version__, 'CUDA', torch.version.cuda, 'numpy', numpy.__version__)"
"$python" -c "from dgl_synergraph.graphs.hetero import import_dgl, dgl_missing_reason as r; print('DGL:', 'installed' if import_dgl() else 'absent (' + r() + ')')"
status=0
models=${MODELS:-lightgcn mgcn}
epochs=${EPOCHS:-3}
for dataset in "$@"; do
    for model in $models; do
        "$python" -m benchmarks.model_epoch --dataset "$dataset" --model "$model" --device cuda --epochs "$epochs" || status=1
        if [ "$model" = mgcn ]; then
            "$python" -m benchmarks.model_epoch --dataset "$dataset" --model mgcn --device cuda --epochs "$epochs" \
                --set precision=bf16 || status=1
        fi
    done
done
exit $status
