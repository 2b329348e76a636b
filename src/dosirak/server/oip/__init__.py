"""The Open Inference Protocol (KServe v2, Triton's HTTP API) on every service, on by default.

Each API is a model named after it: ``POST /v2/models/classify/infer`` calls the ``classify`` API
with tensors instead of its own body format, through the same function, batching and limits.
JSON and binary tensors (the ``binary_tensor_data`` extension) both ways; gzip and deflate.

- ``datatypes``: the protocol's datatypes and numpy's
- ``binary``: the binary extension (body split, BYTES serialization, compression)
- ``codec``: requests and responses
- ``descriptors``: an API's tensors, from its IO descriptors
- ``endpoint``: the infer route; ``routes``: every route (``OpenInference``)

``api_server.oip.enabled: false`` leaves the routes out.
"""
