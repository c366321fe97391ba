#!/usr/bin/env bash
# Builds llama.cpp's llama-bench (the CPU peer) and llama-quantize (which writes the BF16 and
# F16 conversions of the model, llama.cpp's fast formats on some CPUs) from the PyPI sdist of
# llama-cpp-python into .peer/ (git-ignored). Safe to run twice.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
peer="$root/.peer"
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.16}"
mkdir -p "$peer"
if [ -x "$peer/bin/llama-bench" ] && [ -x "$peer/bin/llama-quantize" ]; then echo "llama-bench present: $peer/bin/llama-bench"; exit 0; fi
command -v cmake >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null; }
cd "$peer"
[ -f "llama_cpp_python-$VERSION.tar.gz" ] || python3 -m pip download --quiet --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d .
rm -rf src && mkdir src && tar -xzf "llama_cpp_python-$VERSION.tar.gz" -C src --strip-components=1
cmake -S src/vendor/llama.cpp -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON \
      -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_TOOLS=ON >/dev/null
cmake --build build --target llama-bench llama-quantize -j 2
mkdir -p bin && cp build/bin/llama-bench build/bin/llama-quantize bin/ && cp -P build/bin/*.so* bin/ 2>/dev/null || true
echo "built $peer/bin/llama-bench (llama-cpp-python $VERSION)"
