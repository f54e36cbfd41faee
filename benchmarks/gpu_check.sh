#!/usr/bin/env bash
# The device check for a GPU machine, in the repo root of a copy of the tree:
#   bash benchmarks/gpu_check.sh OUT
# It unpacks cifar10-jpg.tar.gz (from shared/data/ in the tree, else ../shared/data/), runs the
# CUDA tests, times training on the GPU (benchmarks/throughput.py, eager, then compiled), then
# a results grid, most wanted first: configs/budget.yaml at 0.75 PFLOP (seed 0), best.yaml for
# 30 epochs, baseline.yaml and optimized.yaml (seed 0 each), then seeds 1 and 2 of each. A run
# that finished is scored once on the test split; a run cut short is not scored.
#
# Each part is time-boxed, and parts that would start after GPU_CHECK_SECONDS (default 470) are
# skipped and said so, so the check stays within 8 minutes on one GPU. OUT gets few files, so
# that all of them can travel back: timings.txt (each part's exit status and seconds),
# throughput.json, and gpu_check.tar.gz (every part's log and every run's records, without
# weights), packed again after each part so that a check cut short keeps what it did.
# PYTHON names the interpreter (default python3, the one that holds PyTorch there).
set -uo pipefail
out=$(realpath -m "${1:?usage: bash benchmarks/gpu_check.sh OUT}")
work=$(mktemp -d)
logs="$work/logs" runs="$work/runs" timings="$out/timings.txt"
mkdir -p "$out" "$logs" "$runs"
py=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 RESNET18_DATA_ROOT="$work/cifar10-jpg"

# part NAME SECONDS COMMAND...: a time-boxed part, logged to $logs/NAME.log and timed
source "$(dirname "$0")/timebox.sh"

pack() {  # the logs and run records so far into OUT, weights left out
    tar -czf "$out/gpu_check.tar.gz.part" -C "$work" --exclude='*.pt' logs runs &&
        mv "$out/gpu_check.tar.gz.part" "$out/gpu_check.tar.gz"
}

step() {  # step NAME SECONDS COMMAND...: a part, then the records packed
    part "$@"
    local rc=$?
    pack
    return "$rc"
}

train() {  # train RUN SECONDS ARGS...: one run into $runs; its test score if it finished
    local run=$1 limit=$2
    shift 2
    step "train-$run" "$limit" "$py" train.py "$@" --run-name "$run" \
        --set output_dir="$runs" --set train.device=cuda &&
        step "test-$run" 45 "$py" evaluate.py --ckpt "$runs/$run/best.pt" --split test
}

data=""
for candidate in shared/data/cifar10-jpg.tar.gz ../shared/data/cifar10-jpg.tar.gz; do
    [[ -f $candidate ]] && data=$candidate && break
done
if [[ -z $data ]]; then
    echo "no cifar10-jpg.tar.gz in shared/data/ or ../shared/data/: copy it into shared/data/" \
        "of the tree, which travels with it" | tee -a "$timings"
    exit 1
fi
step unpack 60 tar -xzf "$data" -C "$work" || exit 1
step gpu 20 "$py" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
step cuda_tests 120 "$py" -m pytest -q -n 0 -m cuda tests/test_cuda.py
step throughput 90 "$py" -m benchmarks.throughput --device cuda --stems cifar --batch 500 \
    --steps 40 --repeats 2 --compile --folder "$RESNET18_DATA_ROOT/train" \
    --output "$out/throughput.json"
for seed in 0 1 2; do
    train "budget-075-s$seed" 90 --config budget.yaml --set train.seed="$seed"
    train "best-30ep-s$seed" 200 --config best.yaml --set train.seed="$seed"
    train "baseline-s$seed" 90 --config baseline.yaml --set train.seed="$seed"
    train "optimized-s$seed" 90 --config optimized.yaml --set train.seed="$seed"
done
echo "total: $SECONDS s" | tee -a "$timings"
