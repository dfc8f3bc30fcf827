import os

import torch

from promptcot_pl.config import TinyModelConfig
from promptcot_pl.models import load_model, load_tokenizer, tiny_model_dir


def test_tiny_model_round_trips_offline(tiny_dir, tmp_path):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    tok, model = load_tokenizer(tiny_dir), load_model(tiny_dir)
    assert model.config.tie_word_embeddings is False
    assert model.get_input_embeddings().weight.data_ptr() != model.get_output_embeddings().weight.data_ptr()
    model.save_pretrained(tmp_path / "copy")
    tok.save_pretrained(tmp_path / "copy")
    tok2, model2 = load_tokenizer(tmp_path / "copy"), load_model(tmp_path / "copy")
    text = "Find the remainder when $7^{222}$ is divided by $5$. Ünïcode ✓"
    ids = tok(text).input_ids
    assert tok2(text).input_ids == ids and tok2.decode(ids) == text
    x = torch.tensor([ids])
    with torch.no_grad():
        assert torch.equal(model.eval()(x).logits, model2.eval()(x).logits)


def test_tiny_build_is_cached_by_config_and_corpus(tmp_path):
    cfg = TinyModelConfig(vocab_size=300, hidden_size=16, num_layers=1, num_heads=2, intermediate_size=32)
    texts = ["alpha beta gamma", "delta epsilon"] * 20
    first = tiny_model_dir(cfg, texts, tmp_path, seed=0)
    stamp = (first / "model.safetensors").stat().st_mtime_ns
    assert tiny_model_dir(cfg, texts, tmp_path, seed=0) == first
    assert (first / "model.safetensors").stat().st_mtime_ns == stamp
    assert tiny_model_dir(cfg, texts + ["zeta"], tmp_path, seed=0) != first
    assert tiny_model_dir(cfg, texts, tmp_path, seed=1) != first
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no half-built leftovers


def test_pad_token_falls_back_to_eos(tiny_dir, tmp_path):
    tok = load_tokenizer(tiny_dir)
    tok.pad_token = None
    tok.save_pretrained(tmp_path)
    assert load_tokenizer(tmp_path).pad_token_id == tok.eos_token_id
