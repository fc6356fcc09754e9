# syntax=docker/dockerfile:1.7
# memory-service: Chroma in client/server mode (`chroma run`), the same chromadb version as the app's client.
#     docker build -f docker/memory.Dockerfile -t atelier-memory .
FROM python:3.11-slim-bookworm
ARG CHROMADB_VERSION=1.5.9
ENV ANONYMIZED_TELEMETRY=False PIP_NO_CACHE_DIR=1
RUN pip install "chromadb==${CHROMADB_VERSION}"
VOLUME ["/chroma"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=5 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/v2/heartbeat', timeout=4)" || exit 1
CMD ["chroma", "run", "--path", "/chroma", "--host", "0.0.0.0", "--port", "8000"]
