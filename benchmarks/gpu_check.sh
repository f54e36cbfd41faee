#!/usr/bin/env bash
# The device check for a GPU machine, in the repo root of a copy of the tree:
#   bash benchmarks/gpu_check.sh OUT
# It unpacks cifar10-jpg.tar.gz (from shared/data/ in the tree, else ../shared/data/), runs the
# CUDA tests, times training on the GPU (benchmarks/throughput.py, eager, then compiled), then
# the results grid: baseline.yaml and optimized.yaml (the 7x7 stem, cheap on a GPU), best.yaml
# for 30 epochs, then configs/budget.yaml at 0.75 PFLOP. The three seeds of a config train side
# by side on the one GPU, as one run of these small models leaves most of it idle, and the
# configs follow one another, so that a check cut short keeps whole configs. A run that
# finished is scored once on the test split; a run cut short is not scored.
#
# Each part is time-boxed, and parts that would start after GPU_CHECK_SECONDS (default 470) are
# skipped and said so, so the check stays within 8 minutes on one GPU. OUT gets few files, so
# that all of them can travel back: timings.txt (each part's exit status and seconds),
# throughput.json, and gpu_check.tar.gz (every part's log and every run's records, without
# weights), packed again after each config so that a check cut short keeps what it did.
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
    part "train-$run" "$limit" "$py" train.py "$@" --run-name "$run" \
        --set output_dir="$runs" --set train.device=cuda &&
        part "test-$run" 45 "$py" evaluate.py --ckpt "$runs/$run/best.pt" --split test
}

seeds() {  # seeds NAME SECONDS ARGS...: seeds 0-2 of one config side by side, then packed
    local name=$1 limit=$2 seed
    shift 2
    for seed in 0 1 2; do
        train "$name-s$seed" "$limit" "$@" --set train.seed="$seed" &
    done
    wait
    pack
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
seeds baseline 75 --config baseline.yaml
seeds optimized 75 --config optimized.yaml
seeds best-30ep 200 --config best.yaml
train budget-075-s0 60 --config budget.yaml --set train.seed=0
pack
echo "total: $SECONDS s" | tee -a "$timings"
