"""Batch inference on Spark DataFrames (``dosirak.offline.spark``); needs ``dosirak[spark]``.

    >>> import dosirak.spark
    >>> scored = dosirak.spark.run_in_spark(df, "iris.yaml", "classify")
    >>> scored = dosirak.spark.run_model(df, "iris_clf:latest", columns=["a", "b", "c", "d"])
"""

from dosirak.offline.spark import run_in_spark, run_model

__all__ = ["run_in_spark", "run_model"]
