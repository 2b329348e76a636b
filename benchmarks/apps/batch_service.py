"""The peers harness's synthetic batch model (5 ms + 0.05 ms per row) served by dosirak.

``fake_model`` comes from the harness's apps folder (benchmarks/serve_iris.py puts it on
PYTHONPATH), so every server runs the very same model code.
"""

import numpy as np
from fake_model import fake_predict

import dosirak


class FakeModel(dosirak.Runnable):
    SUPPORTS_CPU_MULTI_THREADING = True  # it sleeps: one worker process is enough

    @dosirak.Runnable.method(batchable=True, batch_dim=0)
    def predict(self, x: np.ndarray) -> np.ndarray:
        return fake_predict(x)


runner = dosirak.Runner(FakeModel, name="fake", max_batch_size=64, max_latency_ms=100)
svc = dosirak.Service("batched", runners=[runner])


@svc.api(input=dosirak.io.NumpyNdarray(), output=dosirak.io.NumpyNdarray())
async def predict(x: np.ndarray) -> np.ndarray:
    return await runner.predict.async_run(x)
