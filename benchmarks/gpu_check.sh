#!/usr/bin/env bash
# The device check for a GPU machine, in the repo root of a copy of the tree:
#   bash benchmarks/gpu_check.sh OUT
# It unpacks ../shared/data/cifar10-jpg.tar.gz, runs the CUDA tests, times training on the GPU
# (benchmarks/throughput.py, eager and compiled), then a results grid:
# configs/budget.yaml at 0.75 PFLOP for seeds 0-2, best.yaml for 30 epochs (seed 0),
# baseline.yaml and optimized.yaml (seed 0), each scored once on the test split. Everything it
# measures goes under OUT (logs, run records, test scores, timings.txt); each part is
# time-boxed, and parts that would start after GPU_CHECK_SECONDS (default 470) are skipped and
# said so in timings.txt, so the whole check stays within 8 minutes on one GPU.
set -uo pipefail
out=$(realpath -m "${1:?usage: bash benchmarks/gpu_check.sh OUT}")
mkdir -p "$out/runs"
timings="$out/timings.txt"
work=$(mktemp -d)
export RESNET18_DATA_ROOT="$work/cifar10-jpg"

# part NAME SECONDS COMMAND...: a time-boxed part, logged to OUT/NAME.log and timed
source "$(dirname "$0")/timebox.sh"

part unpack 60 tar -xzf ../shared/data/cifar10-jpg.tar.gz -C "$work"
part gpu 10 python -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
part cuda_tests 120 python -m pytest -q -n 0 -m cuda tests/test_cuda.py
part throughput 90 python -m benchmarks.throughput --device cuda --stems cifar --batch 500 \
    --steps 40 --repeats 2 --compile --output "$out/throughput.json"
train() {  # train RUN SECONDS ARGS...: one run into $out/runs, then its test score
    local run=$1 limit=$2
    shift 2
    part "train-$run" "$limit" python train.py "$@" --run-name "$run" \
        --set output_dir="$out/runs" --set train.device=cuda
    part "test-$run" 60 python evaluate.py --ckpt "$out/runs/$run/best.pt" --split test
}
for seed in 0 1 2; do
    train "budget-075-s$seed" 60 --config budget.yaml --set train.seed="$seed"
done
train best-30ep-s0 150 --config best.yaml
train baseline-s0 60 --config baseline.yaml
train optimized-s0 60 --config optimized.yaml
find "$out/runs" -name '*.pt' -delete  # the records stay, the weights would not travel back
echo "total: $SECONDS s" | tee -a "$timings"
