"""Issue 17, bug 2: ``runner.run(x)`` on a runner with one method calls that method, as BentoML
does (its docs write ``runner.run(x)`` for custom runnables with a single method)."""

from __future__ import annotations

import asyncio

import pytest

import dosirak as bentoml
from dosirak.exceptions import DosirakError


class Doubler(bentoml.Runnable):
    @bentoml.Runnable.method(batchable=False)
    def double(self, x: int) -> int:
        return 2 * x


class TwoMethods(bentoml.Runnable):
    @bentoml.Runnable.method
    def a(self, x: int) -> int:
        return x

    @bentoml.Runnable.method
    def b(self, x: int) -> int:
        return -x


def test_run_and_async_run_call_the_only_method() -> None:
    runner = bentoml.Runner(Doubler, name="doubler")
    runner.init_local()
    assert runner.run(21) == 42

    async def call() -> int:
        return await runner.async_run(4)

    assert asyncio.run(call()) == 8


def test_several_methods_without_call_still_say_which_to_call() -> None:
    runner = bentoml.Runner(TwoMethods, name="two")
    runner.init_local()
    with pytest.raises(DosirakError, match=r"\[.a., .b.\]"):
        runner.run(1)
