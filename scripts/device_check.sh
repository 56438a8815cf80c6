#!/usr/bin/env bash
# The checks that need a real NVIDIA GPU, in one run that prints figures for the closing note.
#
#   scripts/device_check.sh            (on the GPU machine, from the repository root)
#
# Needs python3 with torch (CUDA) and the pinned packages of pyproject.toml's main and "dots"
# lists; on a machine without internet, bring them as wheels first. Writes its logs to $OUT
# (default /tmp/ocrdash-device) and prints everything too.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/ocrdash-device}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1

step() { echo; echo "== $* =="; }

step "nvidia-smi"
nvidia-smi || { echo "no NVIDIA driver here: nothing to check"; exit 0; }

step "NVML recording (compare with tests/data/nvml/*.json)"
timeout 60 $PY -m tests.doubles.fake_pynvml record > "$OUT/nvml-recording.json" && head -c 1500 "$OUT/nvml-recording.json"

step "sampler, planner and peak measurement against the card, with memory held by a second process"
timeout 90 $PY scripts/gpu_probe.py 2>&1 | tee "$OUT/gpu_probe.log"

step "sampler cost at 1 Hz (target: under 1% of one core)"
timeout 60 $PY bench/sampler.py --nvml real --seconds 15 2>&1 | tee "$OUT/sampler.log"

step "backend unit tests on the GPU (tiny model: bf16, 8-bit, 4-bit load paths)"
timeout 150 $PY -m pytest -q -p no:cacheprovider -p no:django -rs tests/unit/test_transformers_backend.py tests/unit/test_gpu_snapshot.py 2>&1 | tail -25 | tee "$OUT/pytest.log"

step "transformers bf16 / 8-bit / 4-bit at dots.ocr's real size (random weights), idle card"
timeout ${IDLE_S:-200} $PY bench/backends.py --real-size --backends transformers --runs 2 --max-new-tokens 64 2>&1 | tee "$OUT/backends-idle.log"

step "the same with another process holding most of the card"
FREE=$(nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits -i 0 | head -1)
HOLD=$(( FREE / 1024 - 8 ))
[ "$HOLD" -gt 1 ] && timeout ${HELD_S:-160} $PY bench/backends.py --real-size --backends transformers --runs 2 \
  --max-new-tokens 64 --hold-gib "$HOLD" 2>&1 | tee "$OUT/backends-held.log"
step "throughput: batch 1 vs batched, tokens/s beside the bandwidth bound (bench/throughput.py --gpu)"
# One JSON line per precision in $OUT/throughput.jsonl: serial (batch 1) and --batch pages at once,
# tokens_per_s at batch 1, bandwidth_bound_tokens_per_s and their ratio; then bf16 with fast decoding.
: > "$OUT/throughput.jsonl"
for Q in bf16 int8 nf4; do
  timeout ${THROUGHPUT_S:-240} $PY bench/throughput.py --gpu --real-size --quantization "$Q" --pages 4 --batch 4 --repeats 2 \
    --max-new-tokens 64 --json 2>>"$OUT/throughput.log" | tee -a "$OUT/throughput.jsonl"
done
timeout ${THROUGHPUT_S:-240} $PY bench/throughput.py --gpu --real-size --quantization bf16 --pages 4 --batch 4 --repeats 2 \
  --max-new-tokens 64 --fast-decode --json 2>>"$OUT/throughput.log" | tee -a "$OUT/throughput.jsonl"
step "llama.cpp (GGUF) at dots.ocr's real size: Q8_0 and Q4_K_M at full and partial offload, beside nf4 above"
# llama-cpp-python must be built with CUDA (CMAKE_ARGS="-DGGML_CUDA=on -DGGML_NATIVE=OFF"); a CPU
# build reports it and the step is skipped.
if $PY -c "import llama_cpp, sys; sys.exit(0 if llama_cpp.llama_supports_gpu_offload() else 1)" 2>/dev/null; then
  timeout ${GGUF_S:-420} $PY bench/llamacpp.py --real-size --runs 2 --max-new-tokens 64 2>&1 | tee "$OUT/llamacpp-real.log"
  timeout 120 $PY -m pytest -q -p no:cacheprovider -p no:django -rs tests/unit/test_llamacpp_backend.py 2>&1 | tail -8 | tee "$OUT/pytest-llamacpp.log"
else
  echo "llama-cpp-python is missing or built without CUDA here: skipped" | tee "$OUT/llamacpp-real.log"
fi
echo; echo "logs in $OUT"
