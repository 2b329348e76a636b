"""Settings for the generic service tests: Keras runs on torch, TensorFlow starts quietly."""

from __future__ import annotations

import os

# Keras picks its backend once, at import; the framework tests use torch too.
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
