"""What operators see of a running server: metrics, access and prediction logs, request ids.

* :mod:`.metrics` - Prometheus series for requests and runners, rendered across processes.
* :mod:`.multiprocess` - the supervisor's metrics directory shared by its worker processes.
* :mod:`.access_log` and :mod:`.prediction_log` - one line per request, one per prediction.
* :mod:`.log_setup` - where those lines go, as text or JSON.
* :mod:`.request_id` - the ``x-request-id`` of each request.
"""
