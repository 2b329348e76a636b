"""Seed 000 for Transformers: a config serves a stored text-classification pipeline over HTTP.

The pipeline is a tiny BERT and a tokenizer from an in-code vocabulary (nothing is downloaded),
saved with ``dosirak.transformers.save_model``; the config file alone builds the service, which
uvicorn serves on 127.0.0.1. Answers must be the pipeline's own, inside the seed's envelope.
"""

from __future__ import annotations

import httpx
import pytest
import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification, BertTokenizer

import dosirak
from dosirak.generic import build_service
from frameworks.test_transformers import SENTENCES, WORDS
from generic.test_frameworks import envelope_result, write_config
from live_server import serve

CONFIG = {"service": "sentiment_generic", "endpoints": [
    {"name": "classify", "model": "sentiment:latest", "framework": "transformers",
     "input": "Text", "output": "JSON"},
    {"name": "classify_many", "model": "sentiment", "input": "JSON", "output": "JSON"},
]}


@pytest.fixture
def classifier(tmp_path) -> transformers.Pipeline:
    """A tiny sentiment pipeline whose labels differ between SENTENCES."""
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    torch.manual_seed(1)
    # A wide initializer: the default one gives every sentence the same label at a score of ~0.5.
    config = BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                        initializer_range=1.0, id2label={0: "NEGATIVE", 1: "POSITIVE"},
                        label2id={"NEGATIVE": 0, "POSITIVE": 1})
    model = BertForSequenceClassification(config).eval()
    return transformers.pipeline("text-classification", model=model,
                                 tokenizer=BertTokenizer(vocab_file=str(vocab)))


def assert_same_answers(served: list[dict], expected: list[dict]) -> None:
    assert [answer["label"] for answer in served] == [answer["label"] for answer in expected]
    assert [answer["score"] for answer in served] == pytest.approx(
        [answer["score"] for answer in expected], rel=1e-5)


def test_text_and_json_endpoints_answer_as_the_pipeline_does(tmp_path, classifier):
    dosirak.transformers.save_model("sentiment", classifier)
    svc = build_service(write_config(tmp_path, CONFIG))
    with serve(svc) as url:
        one = envelope_result(httpx.post(f"{url}/classify", content=SENTENCES[0],
                                         headers={"content-type": "text/plain"}))
        many = envelope_result(httpx.post(f"{url}/classify_many", json=SENTENCES))
        single = envelope_result(httpx.post(f"{url}/classify_many", json=SENTENCES[2]))

    expected = classifier(SENTENCES)
    assert {answer["label"] for answer in expected} == {"NEGATIVE", "POSITIVE"}
    assert_same_answers([one], expected[:1])  # one text in, its one answer out
    assert_same_answers(many, expected)
    assert_same_answers(single, expected[2:3])  # a JSON string is a list of one text


def test_json_that_is_not_texts_answers_the_failure_envelope_with_400(tmp_path, classifier):
    dosirak.transformers.save_model("sentiment", classifier)
    svc = build_service(write_config(tmp_path, CONFIG))
    bodies = [b"5", b"[1.0, 2.0]", b"[]", b"null", b'["a text", 3]']
    with serve(svc) as url:
        responses = [httpx.post(f"{url}/classify_many", content=body,
                                headers={"content-type": "application/json"}) for body in bodies]

    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 400, (body, response.text)
        answer = response.json()
        assert answer["success"] is False and "result" not in answer
        assert answer["message"].startswith("Fail: expected a text"), (body, answer)
        assert answer["detail"][0]["type"] == "type_error"
