#!/usr/bin/env bash
# One lease of a GPU, in one go: the networks benchmark of issue #14, then three training runs
# of issue #15 side by side on the same GPU. The synthetic clips are drawn by CPU processes
# (`--config.data_workers`): one core of the H200 machine made one batch of 16 × 4,096 samples
# per second (the 2-core development machine three), so the GPU waits for them.
#
#   bash experiments/gpu_session.sh OUT_DIR [TRAIN_SECONDS]
#
# Everything it writes is in OUT_DIR: networks.tgz (benchmark JSON lines and logs) and one
# RUN.tgz per training run (its EMA weights exported as msgpack + JSON sidecar, metrics.jsonl,
# log). STAGES=networks runs the benchmark alone. Each stage has its own time limit, so a stage
# that fails or overruns costs only its own results. DRY=1 runs the same stages on the CPU with
# tiny sizes, to check the script itself. Run it where JAX sees the GPU (`pip install -e
# .[cuda12]`, or an image with JAX for CUDA plus the wheels of requirements.txt it lacks).
set -uo pipefail
out="$1"
train_seconds="${2:-320}"
runs=/tmp/jaxrestore_runs
mkdir -p "$out" "$runs" "$out/networks"
if [[ "${DRY:-0}" == 1 ]]; then
  platform=cpu; big=sashimi:tiny; other=cqtdiff:tiny; small=sashimi:tiny; length=2048
  train_extra=(--config.model.preset=tiny --config.sigma_data_clips=4 --config.spectrum_clips=4
               --config.clip_length=2048 --config.batch_size=4)
  steps=20; workers=2; bench_limit=60
else
  platform=cuda; big=sashimi:reference; other=cqtdiff:reference; small=sashimi:cpu; length=65536
  train_extra=(); steps=""; workers=5; bench_limit=""
fi

{
  date -u
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  nproc
  python3 -c "import jax, flax, optax, orbax.checkpoint as o, numpy; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, 'orbax', o.__version__, 'numpy', numpy.__version__); print(jax.devices())"
} > "$out/networks/environment.txt" 2>&1

bench() {  # name, time limit, benchmark flags...
  local name="$1" limit="${bench_limit:-$2}"
  shift 2
  timeout "$limit" python3 -m experiments.benchmark --platform="$platform" --sections=networks \
    --num_samples="$length" --repeats=5 "$@" \
    > "$out/networks/$name.jsonl" 2> "$out/networks/$name.err" \
    || echo "$name: exit status $?" >> "$out/networks/failed.txt"
}
start=$(date +%s)
# On the H200 a process spent ~25 s initialising and compiling SaShiMi `reference` and ~50 s
# CQT-Diff, before any timing. (`networks.prepare` leaves a GPU on the FFT path.)
bench b1_float32 180 --models="$big,$other,$small" --batch=1 --restore_steps=2
bench b8_float32 120 --models="$big,$other" --batch=8 --restore_steps=0
bench b8_bfloat16 120 --models="$big,$other" --batch=8 --restore_steps=0 \
  --matmul_precision=bfloat16
echo "benchmarks: $(( $(date +%s) - start )) s" >> "$out/networks/environment.txt"
[[ "${STAGES:-all}" == networks ]] && { tar czf "$out/networks.tgz" -C "$out" networks; exit; }

# Training. How many steps fit: each run's workers make batches at (workers / seconds per
# batch) per second; the cosine schedule should end inside the time limit.
per_batch=$(python3 -c "
import time
from jaxrestore import train
source = train.data_source(train.DataConfig())
train.batch_for_step(source, 0, 0, 16, 4096)
start = time.perf_counter()
for step in range(1, 4):
    train.batch_for_step(source, 0, step, 16, 4096)
print(round((time.perf_counter() - start) / 3, 3))
" 2>> "$out/networks/environment.txt")
if [[ -z "$steps" ]]; then
  # 45 s for start-up (spectrum, compilation, workers), 90 % of the workers' rate after that.
  steps=$(python3 -c "print(max(500, min(8000, int(0.9 * ($train_seconds - 45) * $workers / $per_batch) // 250 * 250)))")
fi
echo "one batch of 16 x 4096: $per_batch s; training $steps steps per run" \
  >> "$out/networks/environment.txt"
tar czf "$out/networks.tgz" -C "$out" networks && rm -r "$out/networks"

export XLA_PYTHON_CLIENT_MEM_FRACTION=0.25 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
common=(--config=experiments/configs/sashimi_synthetic.py --config.num_steps="$steps"
        --config.checkpoint_every=250 --config.log_every=100 --config.data_workers="$workers"
        --config.p_std=1.5 "${train_extra[@]}")
declare -A variant=(
  [d16_pm3]="--config.p_mean=-3.0"
  [d32_pm2]="--config.model.d_model=32 --config.p_mean=-2.0"
  [d32_pm3]="--config.model.d_model=32 --config.p_mean=-3.0"
)
for name in "${!variant[@]}"; do
  # shellcheck disable=SC2086  # the variant's flags split on purpose
  timeout "$train_seconds" python3 -m experiments.train "${common[@]}" ${variant[$name]} \
    --workdir="$runs/$name" > "$runs/$name.log" 2>&1 &
done
wait
for name in "${!variant[@]}"; do
  mkdir -p "$runs/$name/export"
  JAX_PLATFORMS=cpu python3 -c "
from jaxrestore import checkpoints
checkpoints.export_msgpack('$runs/$name', '$runs/$name/export/$name.msgpack')
" >> "$runs/$name.log" 2>&1 || echo "export failed" >> "$runs/$name.log"
  cp "$runs/$name.log" "$runs/$name/metrics.jsonl" "$runs/$name/export/" 2>/dev/null
  tar czf "$out/$name.tgz" -C "$runs/$name" export
done
ls -la "$out"
