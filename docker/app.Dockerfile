# syntax=docker/dockerfile:1.7
# Atelier application image. The api-service (LangGraph API server) and the ui-service (Chainlit studio) run the
# same code with different commands, so they are two targets of this file:
#     docker build -f docker/app.Dockerfile --target api -t atelier-api .
#     docker build -f docker/app.Dockerfile --target ui  -t atelier-ui  .
# The generators (diffusers, Hunyuan3D) and the embedder run in these processes. TORCH_INDEX picks torch's build:
# the CPU wheels by default (docker-compose.yml), a CUDA index in docker-compose.gpu.yml, which also reserves the
# GPU for the service. The in-process llama.cpp is a CPU build: the LLM runs in llm-service (ATELIER_LLM_URL).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# -- the 3D viewer's browser scripts (served by the studio itself; nothing from a CDN at run time) --------------
FROM node:20-bookworm-slim AS ui-assets
WORKDIR /src
COPY ui/package.json ui/package-lock.json ui/build_assets.sh ui/
RUN cd ui && npm ci --no-audit --no-fund --loglevel=error && bash build_assets.sh

# -- Python environment -------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS base
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG LLAMA_CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF"
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 ANONYMIZED_TELEMETRY=False \
    ATELIER_DATA_DIR=/data
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake curl libgomp1 espeak-ng sox \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.lock requirements-nodeps.txt constraints.txt ./
# torch from the chosen wheel index (the lock pins the CPU build; the version is the same), then the rest of the
# lock, then the packages wanted for a part of themselves only (requirements-nodeps.txt, as scripts/bootstrap.sh).
RUN TORCH_VERSION=$(grep '^torch==' requirements.lock | cut -d= -f3 | cut -d+ -f1) \
 && pip install --index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple "torch==${TORCH_VERSION}" \
 && grep -v -e '^torch==' requirements.lock > /tmp/requirements.txt \
 && CMAKE_ARGS="$LLAMA_CMAKE_ARGS" pip install -r /tmp/requirements.txt \
 && pip install --no-deps -r requirements-nodeps.txt \
 && rm /tmp/requirements.txt
COPY . /app
RUN pip install --no-deps --no-build-isolation -e . && mkdir -p /data
VOLUME ["/data"]

# -- api-service: `atelier serve`, the LangGraph API server (in-memory runtime, threads under /data/api) -------
FROM base AS api
EXPOSE 2024
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=5 CMD curl -fsS http://127.0.0.1:2024/ok || exit 1
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["api"]

# -- ui-service: the Chainlit studio ------------------------------------------------------------------------
FROM base AS ui
COPY --from=ui-assets /src/public/vendor /app/public/vendor
EXPOSE 7860
HEALTHCHECK --interval=15s --timeout=5s --start-period=90s --retries=5 CMD curl -fsS http://127.0.0.1:7860/ || exit 1
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["ui"]
