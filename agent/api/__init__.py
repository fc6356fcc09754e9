"""The LangGraph API server's Atelier parts, one job a module:

    auth.py     who is calling (tokens, the X-Atelier-User header) and the langgraph_sdk Auth handlers
    guard.py    RequestGuard and ALLOWED_ROUTES: the routes the server answers (deny by default)
    routes.py   Atelier's REST routes: /assets, /creations (list, get, delete, upload, export), /atelier/health
    app.py      the http app (routes + /mcp behind RequestGuard) and its start-up lifespan
    server.py   serve(): runs the server; `python -m agent.api.server --routes` prints its route table

langgraph.json points the server at agent.api.auth:auth and agent.api.app:app.
"""
