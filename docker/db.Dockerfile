# syntax=docker/dockerfile:1.7
# db-service: PostgreSQL for deployments beyond one box. Atelier's records (SQLAlchemy) and thread checkpoints
# (langgraph-checkpoint-postgres) go to the `atelier` database; the scaled LangGraph server keeps its own
# threads/runs/queue in `langgraph` (created by db-init.sql on first start).
#     docker build -f docker/db.Dockerfile -t atelier-db .
FROM postgres:15-bookworm
COPY docker/db-init.sql /docker-entrypoint-initdb.d/10-atelier.sql
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=5 \
  CMD pg_isready -U "${POSTGRES_USER:-atelier}" -d "${POSTGRES_DB:-atelier}" || exit 1
