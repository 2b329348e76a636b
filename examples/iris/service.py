"""The seeds' iris classifier service (seed 002), written with dosirak.

    python examples/iris/train.py                  # saves iris_clf into the model store
    dosirak serve examples/iris/service.py:svc     # Swagger UI at http://127.0.0.1:3000/
    curl -X POST -H "content-type: application/json" -d "[[5.9, 3.0, 5.1, 1.8]]" \
        http://127.0.0.1:3000/classify

The code is the seed's, with ``dosirak`` in place of ``bentoml``: ``import dosirak as bentoml``
would run it unchanged.
"""

import numpy as np

import dosirak
from dosirak.io import NumpyNdarray

iris_clf_runner = dosirak.sklearn.get("iris_clf:latest").to_runner()

svc = dosirak.Service("iris_classifier", runners=[iris_clf_runner])


@svc.api(input=NumpyNdarray(), output=NumpyNdarray())
def classify(input_series: np.ndarray) -> np.ndarray:
    """Predict the iris species (0 setosa, 1 versicolor, 2 virginica) of each row of four
    measurements: sepal length, sepal width, petal length, petal width (cm)."""
    result = iris_clf_runner.predict.run(input_series)
    return result
