"""``dosirak.api`` is the decorator of either style; the class style never imports the 0.x
layer. (Mixing the styles' arguments: tests/legacy/test_errors.py.)"""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import dosirak
from dosirak import api_styles, service_class
from dosirak.legacy.inputs import DataframeInput
from dosirak.legacy.service import LEGACY_MARK


def test_dosirak_api_is_the_face_of_both_styles() -> None:
    assert dosirak.api is api_styles.api

    def modern(self, rows):  # type: ignore[no-untyped-def]
        return rows

    def old(self, df):  # type: ignore[no-untyped-def]
        return df

    marked = dosirak.api(batchable=True, max_batch_size=8)(modern)
    assert getattr(marked, service_class._MARK)["max_batch_size"] == 8
    marked = dosirak.api(input=DataframeInput(), batch=True, mb_max_batch_size=8)(old)
    assert getattr(marked, LEGACY_MARK)["mb_max_batch_size"] == 8
    marked = dosirak.api(DataframeInput, orient="records")(old)  # an adapter class, its options
    assert getattr(marked, LEGACY_MARK)["input"].__class__ is DataframeInput


def test_the_face_takes_the_class_style_s_parameters_with_its_defaults() -> None:
    # The face repeats the signature so that a type checker sees it; the two must not drift.
    face = inspect.signature(api_styles.api).parameters
    assert [(p.name, p.default, p.annotation) for p in face.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)] == \
        [(p.name, p.default, p.annotation)
         for p in inspect.signature(service_class.api).parameters.values()]


def test_the_class_style_does_not_import_the_0x_layer() -> None:
    code = ("import json, sys, dosirak\n"
            "@dosirak.service(name='plain')\n"
            "class Plain:\n"
            "    @dosirak.api\n"
            "    def echo(self, body: dict) -> dict:\n"
            "        return body\n"
            "print(json.dumps(sorted(m for m in sys.modules if m.startswith('dosirak.legacy'))))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
