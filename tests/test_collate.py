import torch

from promptcot_pl.data.collate import IGNORE, encode_pair, pack_examples, packed_batch, pad_batch
from promptcot_pl.models import load_model, load_tokenizer
from tests.reference import masked_nll, token_logprobs


def test_encode_masks_the_prompt_and_appends_eos(tiny_dir):
    tok = load_tokenizer(tiny_dir)
    enc = encode_pair(tok, "Problem:\n", "x = 5", max_length=100)
    n_prompt = len(tok("Problem:\n").input_ids)
    assert enc.labels[:n_prompt] == [IGNORE] * n_prompt
    assert enc.labels[n_prompt:] == enc.input_ids[n_prompt:]
    assert enc.input_ids[-1] == tok.eos_token_id
    assert tok.decode(enc.input_ids[n_prompt:-1]) == "x = 5"


def test_encode_drops_what_does_not_fit_instead_of_cutting(tiny_dir):
    """A cut example would teach the model to stop without its answer or EOS: it is dropped (the caller counts)."""
    tok = load_tokenizer(tiny_dir)
    prompt, target = "Problem: " * 10, "a long target " * 10
    whole = encode_pair(tok, prompt, target, max_length=10_000)
    assert encode_pair(tok, prompt, target, max_length=len(whole)) == whole
    assert encode_pair(tok, prompt, target, max_length=len(whole) - 1) is None


def test_pack_respects_max_length_and_keeps_every_example(tiny_dir, math_triples):
    tok = load_tokenizer(tiny_dir)
    examples = [encode_pair(tok, t.problem, t.rationale, 256) for t in math_triples[:40]]
    rows = pack_examples(examples, 256)
    assert all(sum(len(e) for e in row) <= 256 for row in rows)
    assert sorted(id(e) for row in rows for e in row) == sorted(id(e) for e in examples)
    assert len(rows) < len(examples) / 2  # short examples really share rows


def test_packed_loss_equals_unpacked_loss(tiny_dir, math_triples):
    """Exact packing: same summed target log-prob and the same token-mean NLL as padded batches (1e-5)."""
    tok, model = load_tokenizer(tiny_dir), load_model(tiny_dir).eval()
    examples = [encode_pair(tok, t.problem, t.rationale, 256) for t in math_triples[:12]]
    padded = pad_batch(examples, tok.pad_token_id)
    rows = pack_examples(examples, 256)
    packed = packed_batch(rows, tok.pad_token_id)
    assert packed["input_ids"].shape[0] < len(examples)
    with torch.no_grad():
        logits_pad = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits
        logits_pack = model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
    loss_pad, n_pad = masked_nll(logits_pad, padded["labels"])
    loss_pack, n_pack = masked_nll(logits_pack, packed["labels"])
    assert int(n_pad) == int(n_pack)
    assert abs(float(loss_pad) - float(loss_pack)) < 1e-5
    logp_pad, _ = token_logprobs(logits_pad, padded["labels"])
    logp_pack, _ = token_logprobs(logits_pack, packed["labels"])
    assert abs(float(logp_pad.sum()) - float(logp_pack.sum())) < 1e-4


def test_packed_segments_do_not_attend_to_each_other(tiny_dir, math_triples):
    """Gradient probe: the loss of the second segment has zero gradient w.r.t. the first segment's embeddings."""
    tok, model = load_tokenizer(tiny_dir), load_model(tiny_dir).eval()
    first, second = (encode_pair(tok, t.problem, t.rationale, 256) for t in math_triples[:2])
    batch = packed_batch([[first, second]], tok.pad_token_id)
    embeds = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)
    logits = model(inputs_embeds=embeds, position_ids=batch["position_ids"], use_cache=False).logits
    labels = batch["labels"].clone()
    labels[0, : len(first)] = IGNORE  # score the second segment only
    masked_nll(logits, labels)[0].backward()
    assert torch.all(embeds.grad[0, : len(first)] == 0)
    assert torch.any(embeds.grad[0, len(first):] != 0)
