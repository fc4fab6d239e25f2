#!/usr/bin/env bash
# The GPU check, in one go on a machine with an NVIDIA GPU and CuPy (`pip install 'rnncap[gpu]'`): it installs
# nothing. It runs every CUDA test (the device-parametrised layer, model, decoding, optimiser and backend tests,
# float64 gradient checks included: `pytest -k cuda`), then benchmarks/bench_engine.py --device cuda (the NumPy
# engine through CuPy against the PyTorch twins on the same GPU; the twins' side needs a CUDA build of torch).
# About 10 minutes at most: each part runs under a timeout. Results go to $OUT (or /tmp/rnncap-gpu-check):
# versions.txt, gpu-tests.log and gpu-tests.xml (JUnit), bench-cuda.txt. Exit status: non-zero if a part failed.
#
#     bash benchmarks/gpu_check.sh                     # with .venv/bin/python
#     PYTHON=python3 OUT=/tmp/gpu bash benchmarks/gpu_check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
RESULTS=${OUT:-/tmp/rnncap-gpu-check}
mkdir -p "$RESULTS"
status=0

# The modules whose tests take the `device` fixture (tests/conftest.py); -k cuda selects their [cuda] params.
TESTS=(
    tests/test_backend.py tests/test_nn.py tests/test_attention.py tests/test_nn_reference.py tests/test_packed.py
    tests/test_contract.py tests/test_model.py tests/test_gradcheck.py tests/test_decode.py tests/test_sampling.py
    tests/test_optim.py tests/test_image_input.py tests/test_attention_model.py
)

"$PYTHON" - > "$RESULTS/versions.txt" 2>&1 <<'EOF'
import platform
import numpy
print(f"Python {platform.python_version()}, NumPy {numpy.__version__}")
try:
    import cupy
    props = cupy.cuda.runtime.getDeviceProperties(0)
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    print(f"CuPy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, "
          f"{cupy.cuda.runtime.getDeviceCount()} device(s), device 0: {name}, "
          f"{props['totalGlobalMem'] / 2**30:.0f} GiB")
except Exception as exc:  # reported, not fatal: the tests then skip with the reason
    print(f"CuPy unusable here: {exc!r}")
try:
    import torch
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
except Exception as exc:
    print(f"torch unusable here: {exc!r}")
EOF
cat "$RESULTS/versions.txt"

# -rs lists every skip with its reason ("no CuPy", "no GPU"): a GPU run that skipped has measured nothing.
echo "== CUDA tests (at most 6 minutes)"
timeout 360 "$PYTHON" -m pytest -q -rs -p no:cacheprovider -k cuda --durations=15 \
    --junitxml "$RESULTS/gpu-tests.xml" "${TESTS[@]}" 2>&1 | tee "$RESULTS/gpu-tests.log"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== bench_engine.py --device cuda (at most 4 minutes)"
timeout 240 "$PYTHON" benchmarks/bench_engine.py --device cuda --repeats 5 --warmup 2 2>&1 \
    | tee "$RESULTS/bench-cuda.txt"
[ "${PIPESTATUS[0]}" -eq 0 ] || status=1

echo "== results in $RESULTS (status $status)"
exit $status
