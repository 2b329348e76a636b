"""The model repository (the seeds' Yatai): a hub where a team shares models and bentos.

Layers, imports pointing down:

    app.py        Starlette app + uvicorn (`dosirak hub serve`)     -> api, dashboard
    api.py        REST API, declared once; openapi.py derives /docs.json from it
    dashboard.py  server-rendered pages (Jinja2), assets in static/
    transfers.py  chunked, resumable pushes and pulls                -> catalog, layout, store
    catalog.py    versions, aliases, label selectors, deletion       -> hub, selectors
    collector.py  garbage collection
    hub.py        settings, database, object store, tokens, event log -> db, storage, tokens
    db.py         SQLAlchemy tables, sessions, Alembic migrations (migrations/)
    storage.py    content-addressed objects on disk or S3 (fsspec)
    tokens.py     hashed tokens, scopes, failed-attempt limits
    layout.py     archives laid out as parts, readable from any byte (server and client)
    client.py     HubClient: login, push, pull (httpx; no server dependencies)

The server needs the ``hub`` extra (SQLAlchemy, Alembic, psycopg, Jinja2); the client does not.
Nothing here imports ``dosirak.serve`` or ``dosirak.server``.
"""
