"""Candidate galleries: encode_texts batches by token length (features as if each text were encoded alone, up to
float rounding) and ranking holds one score block at a time."""
import gc
import weakref

import pytest
import torch

from addressclip.inference import encode_texts, length_batches, tokenize_texts, topk_by
from addressclip.model import create_model

STREETS = ["Mannerheimintie", "Kaivokatu", "Iso Roobertinkatu", "Eteläesplanadi", "Pohjoisranta", "Bulevardi",
           "Lönnrotinkatu", "Kolmas linja", "Forbes Avenue", "Craig Street"]
# Real address forms of varied token lengths; "!&" (CLIP tokenises it as ids 0 and 261: 0 is also its padding id);
# a repeated text.
TEXTS = [f"{a} & {b}, Helsinki {100 + 10 * i:05d}" for i, (a, b) in enumerate(zip(STREETS, STREETS[3:] + STREETS[:3]))]
TEXTS += ["Bulevardi", "Kaivokatu !& Bulevardi", "a street view photo of Iso Roobertinkatu & Bulevardi, Helsinki 00120",
          TEXTS[2]]
ATOL = 1e-6  # unit vectors; batching changes float rounding only (observed <= 3e-7 on 1,000 generated addresses)


@pytest.fixture(scope="module")
def clip_tower():
    """CLIP's text tower and tokenizer (causal mask, EOT pooling) at toy size: the paper's path."""
    return create_model("ViT-Tiny-16-quickgelu").eval()


@pytest.fixture(scope="module")
def minilm():
    """The offline default: MiniLM-L6 (padding masked, mean pooling)."""
    return create_model().eval()


@pytest.mark.parametrize("name", ["minilm", "clip_tower"])
def test_batched_features_equal_each_text_alone(name, request):
    """Old path (one string batch padded to its longest) and each text alone (no padding) against encode_texts
    with batches of a few tokens (several batches of mixed lengths) and with the default."""
    model = request.getfixturevalue(name)
    with torch.inference_mode():
        alone = torch.cat([model.encode_text([t]) for t in TEXTS])
        padded = model.encode_text(TEXTS)
    for batch_tokens in (40, None):
        feats = encode_texts(model, TEXTS, batch_tokens)
        assert feats.shape == alone.shape and feats.dtype == torch.float32
        assert torch.allclose(feats, alone, rtol=0, atol=ATOL)
        assert torch.allclose(feats, padded, rtol=0, atol=ATOL)
        assert torch.equal(feats[2], feats[-1])  # the repeated text


def test_frozen_trunk_cache_gives_the_same_features(minilm):
    """With the per-string trunk cache (a frozen text trunk in training) batches are encoded from strings."""
    model = create_model(train_text="proj").eval()
    model.clip.load_state_dict(minilm.clip.state_dict())
    model.cache_frozen_text = False
    direct = encode_texts(model, TEXTS, 40)
    model.cache_frozen_text = True
    model.clear_text_cache()
    cached = encode_texts(model, TEXTS, 40)
    assert set(TEXTS) <= set(model._text_cache)
    assert torch.allclose(cached, direct, rtol=0, atol=ATOL)


def test_token_lengths_count_clip_token_zero(clip_tower):
    """CLIP pads with 0, which is also a token ("!" before "&"): a 0 inside a text is not padding."""
    tokens, lengths = tokenize_texts(clip_tower, ["Kaivokatu", "!&", "Kaivokatu !& Bulevardi"], chunk=2)
    assert tokens[1, :4].tolist() == [49406, 0, 261, 49407]  # SOT, "!", "&", EOT
    assert lengths[1] == 4 and lengths[2] > lengths[0] + 2
    assert tokens.shape[1] == int(lengths.max()) and (tokens[0, int(lengths[0]):] == 0).all()


def test_length_batches_fit_the_token_budget():
    lengths = torch.tensor([5, 20, 3, 7, 7, 30, 4, 4, 12, 50])
    batches = length_batches(lengths, 24)
    rows = torch.cat(batches)
    assert sorted(rows.tolist()) == list(range(len(lengths)))  # every row once
    assert torch.equal(lengths[rows], lengths.sort(stable=True).values)  # sorted by length, ties in input order
    for batch in batches:
        assert len(batch) * int(lengths[batch].max()) <= 24 or len(batch) == 1  # longer than the budget: alone
    assert [b.tolist() for b in batches[:2]] == [[2, 6, 7, 0], [3, 4]]  # 4 x 5 = 20 <= 24; 2 x 7, then 3 x 12 > 24


def test_ranking_holds_one_score_block_at_a_time():
    """Each score block is freed before the next is made (peak memory: one block, not two)."""
    queries, gallery = torch.randn(6, 8), torch.randn(50, 8)
    alive = []

    def score(q, j):
        gc.collect()
        assert not any(ref() is not None for ref in alive), "the previous score block is still held"
        block = q @ gallery[j : j + 16].T
        alive.append(weakref.ref(block))
        return block

    s, i = topk_by(score, queries, len(gallery), 3, query_chunk=4, gallery_chunk=16)
    assert torch.equal(i, (queries @ gallery.T).topk(3, dim=1).indices)
