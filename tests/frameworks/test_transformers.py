"""The Transformers adapter on tiny models built here from configs (nothing is downloaded)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import transformers
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    BertTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
)

import dosirak
from dosirak.exceptions import InvalidArgument

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "plot", "was", "is",
         "great", "good", "dull", "bad", "not", "very", "!"]
SENTENCES = ["the movie was great !", "the plot is very dull", "not good", "bad bad movie"]


class TinyClassifier(BertForSequenceClassification):
    """A user subclass: stored by module path, imported again at load."""


@pytest.fixture
def tokenizer(tmp_path: Path) -> BertTokenizer:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(WORDS) + "\n")
    return BertTokenizer(vocab_file=str(vocab))


def tiny_bert(cls: type = BertForSequenceClassification) -> BertForSequenceClassification:
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=32,
                        num_labels=2, id2label={0: "NEGATIVE", 1: "POSITIVE"},
                        label2id={"NEGATIVE": 0, "POSITIVE": 1})
    return cls(config).eval()


def test_pipeline_model_and_tokenizer_give_the_same_results_in_a_fresh_process(
        tokenizer, fresh_process):
    model = tiny_bert()
    classifier = transformers.pipeline("text-classification", model=model, tokenizer=tokenizer)
    saved = dosirak.transformers.save_model("sentiment", classifier, labels={"lang": "en"})
    dosirak.transformers.save_model("bert", model)
    dosirak.transformers.save_model("vocab", tokenizer)

    assert saved.info.options == {
        "kind": "pipeline", "task": "text-classification",
        "pipeline_class": "TextClassificationPipeline",
        "model_class": "BertForSequenceClassification"}
    assert saved.info.signatures["__call__"].to_dict() == {"batchable": True, "batch_dim": [0, 0]}
    assert dosirak.transformers.get("bert").info.options == {
        "kind": "pretrained", "class": "BertForSequenceClassification"}
    assert not dosirak.transformers.get("bert").info.signatures["__call__"].batchable
    stored = {p.name for p in saved.path.rglob("*") if p.is_file()}
    assert "model.safetensors" in stored and "tokenizer.json" in stored
    assert not {name for name in stored if name.endswith((".bin", ".pkl", ".pt"))}

    encoded = tokenizer(SENTENCES, padding=True, return_tensors="np")
    out = fresh_process.run(f"""
        import torch, dosirak
        sentences = {SENTENCES!r}
        classifier = dosirak.transformers.load_model("sentiment")
        results = classifier(sentences)
        outputs["labels"] = np.array([r["label"] for r in results])
        outputs["scores"] = np.array([r["score"] for r in results])
        outputs["types"] = np.array([type(classifier).__name__, type(classifier.model).__name__])
        model = dosirak.transformers.load_model("bert")
        with torch.no_grad():
            outputs["logits"] = model(
                input_ids=torch.from_numpy(inputs["ids"]),
                attention_mask=torch.from_numpy(inputs["mask"])).logits.numpy()
        tokenizer = dosirak.transformers.load_model("vocab")
        outputs["ids"] = tokenizer(sentences, padding=True, return_tensors="np")["input_ids"]
    """, ids=encoded["input_ids"], mask=encoded["attention_mask"])

    expected = classifier(SENTENCES)
    assert out["types"].tolist() == ["TextClassificationPipeline", "BertForSequenceClassification"]
    assert out["labels"].tolist() == [r["label"] for r in expected]
    np.testing.assert_allclose(out["scores"], [r["score"] for r in expected], rtol=1e-5)
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(encoded["input_ids"]),
                       attention_mask=torch.from_numpy(encoded["attention_mask"])).logits
    np.testing.assert_allclose(out["logits"], logits.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(out["ids"], encoded["input_ids"])


def test_generative_model_gets_a_generate_signature_and_generates_the_same():
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(WORDS), n_positions=32, n_embd=16,
                                       n_layer=1, n_head=2)).eval()
    saved = dosirak.transformers.save_model("gpt", model)

    loaded = dosirak.transformers.load_model("gpt")
    prompt = torch.tensor([[5, 6, 8]])
    settings = {"max_new_tokens": 5, "do_sample": False, "pad_token_id": 0}

    assert set(saved.info.signatures) == {"__call__", "generate"}
    assert torch.equal(loaded.generate(prompt, **settings), model.generate(prompt, **settings))


def test_a_user_subclass_is_stored_by_module_path():
    model = tiny_bert(TinyClassifier)
    saved = dosirak.transformers.save_model("custom", model)

    loaded = dosirak.transformers.load_model("custom")

    assert saved.info.options["class"] == f"{__name__}:TinyClassifier"
    assert type(loaded) is TinyClassifier
    ids = torch.tensor([[2, 5, 6, 3]])
    with torch.no_grad():
        torch.testing.assert_close(loaded(input_ids=ids).logits, model(input_ids=ids).logits)


def test_save_and_get_refuse_what_is_not_a_transformers_object(fresh_process):
    with pytest.raises(InvalidArgument, match="save_pretrained"):
        dosirak.transformers.save_model("bad", torch.nn.Linear(2, 2))
    dosirak.picklable_model.save_model("other", lambda v: v)
    with pytest.raises(InvalidArgument, match=r"saved with dosirak\.picklable_model"):
        dosirak.transformers.get("other")
    dosirak.transformers.save_model("custom", tiny_bert(TinyClassifier))

    error = fresh_process.error("import dosirak; dosirak.transformers.load_model('custom')")

    assert error.startswith("MissingDependency: ")
    assert "TinyClassifier" in error and "PYTHONPATH" in error


def test_importing_the_adapter_loads_no_framework_and_loading_without_transformers_names_the_extra(
        tokenizer, fresh_process):
    dosirak.transformers.save_model("vocab", tokenizer)

    assert fresh_process.heavy_modules_after("import dosirak, dosirak.transformers") == []
    error = fresh_process.error("import dosirak; dosirak.transformers.load_model('vocab')",
                                blocked=["transformers"])
    assert error.startswith("MissingDependency: ")
    assert "pip install 'dosirak[transformers]'" in error
