#!/usr/bin/env bash
# Prints the path of a cached llama-cpp-python wheel for this CPU, building it from source once (~5 min
# on 2 cores). The cache key includes the CPU's feature flags: llama.cpp is built for the native CPU, less
# AMX: sandboxes that advertise amx_tile may not grant the tile state, and ggml's AMX matmul (used for Q4/Q8
# weights) then dies with SIGILL at the first decode. RECIPE names these build settings in the cache key, with a
# digest of the caller's CMAKE_ARGS if any (CMAKE_ARGS="-DGGML_NATIVE=OFF": a generic x86-64 build, its own wheel).
set -euo pipefail
version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
python=${1:-python3}
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | md5sum | cut -c1-8 || echo generic)
pyver=$("$python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
recipe=noamx${CMAKE_ARGS:+-$(printf %s "$CMAKE_ARGS" | md5sum | cut -c1-8)}
cache=${STRUCTGEN_WHEEL_CACHE:-$HOME/.cache/structgen/wheels}/$(uname -m)-$pyver-$flags-$recipe
mkdir -p "$cache"
wheel=$(ls "$cache"/llama_cpp_python-"$version"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  echo "building llama-cpp-python $version from source into $cache (one time, ~5 min)..." >&2
  no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
  CMAKE_ARGS="${CMAKE_ARGS:-} -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DCMAKE_C_FLAGS='$no_amx' -DCMAKE_CXX_FLAGS='$no_amx' -DLLAMA_BUILD_TESTS=off -DLLAMA_BUILD_EXAMPLES=off -DLLAMA_BUILD_TOOLS=off -DLLAMA_BUILD_SERVER=off -DLLAVA_BUILD=off" \
    "$python" -m pip wheel --no-cache-dir --no-deps --no-binary llama-cpp-python -w "$cache" "llama-cpp-python==$version" >&2
  wheel=$(ls "$cache"/llama_cpp_python-"$version"-*.whl | head -n1)
fi
echo "$wheel"
