"""The optional HTTP shim: GivTCP's REST paths on the same command handlers as MQTT.

Nothing here is imported unless ``http.enabled`` is set (the application imports
:mod:`givbridge.http.server` lazily), so a bridge without the shim never loads the web stack.

* :mod:`~givbridge.http.openapi`: the OpenAPI document, generated from the command registry;
* :mod:`~givbridge.http.routes`: the ASGI applications, their routes generated from the registry;
* :mod:`~givbridge.http.server`: serving them with uvicorn in the bridge's own event loop.
"""
