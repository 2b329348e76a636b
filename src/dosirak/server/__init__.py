"""The HTTP server of a service: its ASGI application, OpenAPI document and error answers.

    >>> from dosirak.server.app import create_app
    >>> app = create_app(svc)          # serve with any ASGI server, e.g. uvicorn
"""
