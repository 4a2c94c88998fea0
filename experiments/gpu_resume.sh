#!/usr/bin/env bash
# Continues a training run on a lent GPU for a fixed time and brings its state back.
#
#   bash experiments/gpu_resume.sh WORKDIR OUT_DIR SECONDS TRAIN_FLAGS...
#
# WORKDIR: the run's work dir, or a copy holding only its metrics.jsonl and latest
# checkpoint, inside the checkout (so that it travels with it). TRAIN_FLAGS: the run's own
# `experiments.train` flags, so that it resumes as the same run; the batches are drawn by all
# but two of the machine's cores (`--config.data_workers`), which changes no batch. After
# SECONDS (or the run's end) the latest complete checkpoint and metrics.jsonl go to
# OUT_DIR/run.tgz.00, .01, … (pieces of 15 MB: a lease returns files of at most 16 MiB).
# Back home, `cat OUT_DIR/run.tgz.* | tar xz -C WORKDIR` and the same command resumes there.
set -uo pipefail
workdir="$1" out="$2" seconds="$3"
shift 3
mkdir -p "$out"
workers=$(( $(nproc) > 3 ? $(nproc) - 2 : 1 ))
timeout "$seconds" python3 -m experiments.train "$@" --workdir="$workdir" \
  --config.data_workers="$workers" > "$out/train.log" 2>&1
echo "experiments.train exit status $? (124: stopped at ${seconds} s)" >> "$out/train.log"
# Orbax names a finished checkpoint by its step alone; a save cut short has a longer name.
latest=$(find "$workdir/checkpoints" -mindepth 1 -maxdepth 1 -regex '.*/[0-9]+' -printf '%f\n' \
  | sort -n | tail -1)
if [[ -z "$latest" ]]; then
  echo "no complete checkpoint in $workdir" >> "$out/train.log"
  exit 1
fi
tar czf - -C "$workdir" metrics.jsonl "checkpoints/$latest" \
  | split -b 15m -d - "$out/run.tgz."
ls -la "$out"
