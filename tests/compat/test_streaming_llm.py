"""Streaming tokens of a language model, the common case: a tiny GPT-2 built in the test (no
download) behind a custom runnable whose method yields tokens (``TextIteratorStreamer``), an API
that streams them with ``runner.generate.async_stream``, and a client iterating, all with
``import dosirak as bentoml`` as 1.x code is written."""

from __future__ import annotations

import importlib.util
import sys
import textwrap
from pathlib import Path

import dosirak as bentoml

from .serving import served

TINY_LLM = '''
import threading

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import (GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast,
                          TextIteratorStreamer)

WORDS = ["[UNK]", "[EOS]"] + "the a cat dog sat ran on under mat log and then".split()


def build():
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="[UNK]",
                                   eos_token="[EOS]", pad_token="[EOS]")
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=len(WORDS), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                        eos_token_id=1, bos_token_id=1, pad_token_id=1)
    return fast, GPT2LMHeadModel(config).eval()


def generate(tokenizer, model, prompt, streamer=None):
    inputs = tokenizer(prompt, return_tensors="pt")
    return model.generate(**inputs, max_new_tokens=12, min_new_tokens=12, do_sample=False,
                          streamer=streamer, pad_token_id=1)


def stream(tokenizer, model, prompt):
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    thread = threading.Thread(target=generate, args=(tokenizer, model, prompt, streamer))
    thread.start()
    try:
        yield from streamer
    finally:
        thread.join()
'''

SERVICE = '''
from typing import AsyncGenerator

import dosirak as bentoml
from dosirak.io import Text

import tiny_llm


class LLMRunnable(bentoml.Runnable):
    SUPPORTED_RESOURCES = ("cpu",)
    SUPPORTS_CPU_MULTI_THREADING = True

    def __init__(self):
        self.tokenizer, self.model = tiny_llm.build()

    @bentoml.Runnable.method(batchable=False)
    def generate(self, prompt: str):
        yield from tiny_llm.stream(self.tokenizer, self.model, prompt)


llm_runner = bentoml.Runner(LLMRunnable, name="llm")
svc = bentoml.Service("tiny_llm", runners=[llm_runner])


@svc.api(input=Text(), output=Text())
async def generate(prompt: str) -> AsyncGenerator[str, None]:
    async for token in llm_runner.generate.async_stream(prompt):
        yield token
'''


def test_tokens_of_a_tiny_transformers_model_stream_to_the_client(tmp_path: Path) -> None:
    (tmp_path / "tiny_llm.py").write_text(textwrap.dedent(TINY_LLM))
    spec = importlib.util.spec_from_file_location("tiny_llm_expected", tmp_path / "tiny_llm.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["tiny_llm_expected"] = module
    try:
        spec.loader.exec_module(module)
        tokenizer, model = module.build()
        output = module.generate(tokenizer, model, "the cat")
        expected = tokenizer.decode(output[0][2:], skip_special_tokens=True)
    finally:
        del sys.modules["tiny_llm_expected"]
    assert len(expected.split()) >= 3  # the model says something
    with served(tmp_path, SERVICE) as server, bentoml.SyncHTTPClient(server.url) as client:
        chunks = list(client.generate("the cat"))
    assert len(chunks) > 1  # tokens arrived as a stream, not one answer
    assert "".join(chunks).strip() == expected.strip()
