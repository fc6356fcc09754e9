-- Run once, on the first start of an empty db-service volume. The `atelier` database itself is POSTGRES_DB.
-- The scaled LangGraph API server (docker-compose profile "scale") migrates its own schema into `langgraph`.
CREATE DATABASE langgraph;
