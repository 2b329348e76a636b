"""Offline runs: an API called without an HTTP server, once (``run``), over files (``batch``),
or over a Spark DataFrame (``spark``, also ``dosirak.spark``)."""
