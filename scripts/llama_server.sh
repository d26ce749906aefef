#!/usr/bin/env bash
# Prints the path of a cached llama.cpp `llama-server` binary (for `structgen bench serve`), building it once
# with cmake from the llama.cpp sources vendored in the pinned llama-cpp-python sdist (~10 min on 2 cores).
# Same CPU recipe and cache key as scripts/llama_wheel.sh (native, less AMX). The sdist comes from PyPI's
# cache of pip (setup time, never at bench time); `--check` only prints the path if it is built (exit 1 if not).
set -euo pipefail
version=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
python=${PYTHON:-python3}
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | md5sum | cut -c1-8 || echo generic)
recipe=noamx
cache=${STRUCTGEN_SERVER_CACHE:-$HOME/.cache/structgen/llama-server}/$(uname -m)-$flags-$recipe-$version
binary=$cache/llama-server
if [ -x "$binary" ]; then echo "$binary"; exit 0; fi
if [ "${1:-}" = "--check" ]; then exit 1; fi
echo "building llama.cpp's llama-server (llama-cpp-python $version's vendored sources) into $cache (one time)..." >&2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$python" -m pip download -q --no-deps --no-binary :all: -d "$work" "llama-cpp-python==$version" >&2
tar -xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
src=$work/llama_cpp_python-$version/vendor/llama.cpp
no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
cmake -S "$src" -B "$work/build" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF \
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DCMAKE_C_FLAGS="$no_amx" -DCMAKE_CXX_FLAGS="$no_amx" \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON ${CMAKE_ARGS:-} >&2
cmake --build "$work/build" --target llama-server -j "$(nproc)" >&2
mkdir -p "$cache"
cp "$work/build/bin/llama-server" "$binary.tmp" && mv "$binary.tmp" "$binary"
echo "$binary"
