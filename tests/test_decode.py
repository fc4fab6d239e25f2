"""Greedy and beam search: shapes and special tokens, greedy as argmax, beam search against exhaustive search,
the length penalty. What the searches do for every model (beam of one = greedy, images decoded apart, beams at
least as likely as greedy) is in test_contract.py."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from helpers import make_vocab
from rnncap import CaptioningRNN
from rnncap.backend import to_numpy
from rnncap.decode import beam_candidates, beam_search

NULL, START, END, UNK = 0, 1, 2, 3


def _peaked_model(cell_type="lstm", words=3, seed=0):
    """A float64 model with large weights, so its next-word distributions are far from ties."""
    rng = np.random.default_rng(seed)
    model = CaptioningRNN(
        make_vocab(words),
        input_dim=4,
        wordvec_dim=5,
        hidden_dim=6,
        cell_type=cell_type,
        dtype=np.float64,
        rng=rng,
    )
    for name, value in model.params.items():
        model.params[name] = rng.standard_normal(value.shape) * 1.5
    return model, rng.standard_normal((5, 4))


def _sequence_log_prob(model, features, tokens):
    """Total log-probability of ``tokens`` (ending with <END> or not) for one image, step by step."""
    state = model.init_state(features[None])
    previous, total = START, 0.0
    for token in tokens:
        log_probs, state = model.step(state, np.array([previous]))
        total += float(log_probs[0, token])
        previous = token
    return total


def _exhaustive_best(model, features, max_length, length_penalty):
    words = [w for w in range(model.vocab_size) if w not in (NULL, START, UNK)]
    candidates = [
        (*prefix, END)
        for n in range(max_length)
        for prefix in itertools.product([w for w in words if w != END], repeat=n)
    ]
    candidates += list(itertools.product([w for w in words if w != END], repeat=max_length))
    scored = [(_sequence_log_prob(model, features, c) / len(c) ** length_penalty, c) for c in candidates]
    return max(scored)[1]


@pytest.mark.parametrize("cell_type", ["rnn", "lstm", "gru"])
def test_greedy_shapes_and_special_tokens(cell_type, device):
    model, features = _peaked_model(cell_type)
    model.params["b_vocab"][UNK] = 50.0  # the most likely word everywhere: still never emitted
    model.to(device)
    captions = model.sample(features, max_length=9)
    assert captions.shape == (5, 9) and captions.dtype == np.int32
    assert UNK not in beam_search(model, features, beam_size=3, max_length=9)
    for row in captions:
        assert START not in row and UNK not in row
        ends = np.flatnonzero(row == END)
        body = row if ends.size == 0 else row[: ends[0]]
        assert NULL not in body  # <NULL> only as padding after <END>
        if ends.size:
            assert (row[ends[0] + 1 :] == NULL).all()


def test_greedy_picks_the_argmax_at_every_step(device):
    model, features = _peaked_model()
    model.to(device)
    captions = model.sample(features, max_length=6)
    for n in range(len(features)):
        state, previous = model.init_state(features[n : n + 1]), START
        for t in range(6):
            if t > 0 and captions[n, t - 1] in (END, NULL):
                break
            log_probs, state = model.step(state, np.array([previous]))
            log_probs = to_numpy(log_probs)
            log_probs[0, [NULL, START, UNK]] = -np.inf
            assert captions[n, t] == log_probs[0].argmax()
            previous = captions[n, t]


@pytest.mark.parametrize("length_penalty", [0.0, 1.0])
def test_wide_beam_equals_exhaustive_search(length_penalty, device):
    """With more beams than hypotheses, beam search is exact: it must find the best caption of all."""
    model, features = _peaked_model(words=2)  # tokens <END>, w0, w1: captions of at most 3 of w0, w1
    model.to(device)
    max_length = 3
    captions = beam_search(model, features, beam_size=64, max_length=max_length, length_penalty=length_penalty)
    for n in range(len(features)):
        best = _exhaustive_best(model, features[n], max_length, length_penalty)
        expected = np.full(max_length, NULL)
        expected[: len(best)] = best
        np.testing.assert_array_equal(captions[n], expected)


def test_length_penalty_favours_longer_captions(device):
    model, features = _peaked_model(seed=1)
    model.to(device)
    short = (beam_search(model, features, 5, 10, length_penalty=0.0) != NULL).sum()
    long = (beam_search(model, features, 5, 10, length_penalty=1.0) != NULL).sum()
    assert long >= short


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"beam_size": 0}, "beam_size"),
        ({"max_length": 0}, "max_length"),
        ({"length_penalty": -1}, "length_penalty"),
    ],
)
def test_bad_search_arguments(kwargs, message):
    model, features = _peaked_model()
    with pytest.raises(ValueError, match=message):
        beam_search(model, features, **{"beam_size": 2, "max_length": 5, **kwargs})


@pytest.mark.parametrize("length_penalty", [0.0, 0.7])
def test_beam_candidates_keep_every_hypothesis_and_beam_searchs_best(length_penalty, device):
    model, features = _peaked_model(words=4)
    model.to(device)
    found = beam_candidates(model, features, beam_size=4, max_length=5, length_penalty=length_penalty)
    rows = np.arange(len(features))
    np.testing.assert_array_equal(
        found.tokens[rows, found.best], beam_search(model, features, 4, 5, length_penalty=length_penalty)
    )
    assert found.tokens.shape == (5, 4, 5) and found.logprobs.shape == (5, 4) and found.weights is None
    for n in range(len(features)):  # every score is its hypothesis's log-probability under the model
        for b in range(4):
            tokens = [int(w) for w in found.tokens[n, b] if w != NULL]
            assert found.logprobs[n, b] == pytest.approx(_sequence_log_prob(model, features[n], tokens))
        assert len({tuple(row) for row in found.tokens[n]}) == 4  # four different hypotheses


def test_beam_candidates_refuse_attention_from_a_model_that_does_not_attend():
    model, features = _peaked_model()
    with pytest.raises(ValueError, match="does not attend"):
        beam_candidates(model, features, return_attention=True)


def _ends_after(captions: np.ndarray, word: int) -> np.ndarray:
    """(N,) whether each caption's <END> comes right after ``word``."""
    ends = [np.flatnonzero(row == END) for row in captions]
    return np.array([e.size > 0 and e[0] > 0 and row[e[0] - 1] == word for e, row in zip(ends, captions, strict=True)])


@pytest.mark.parametrize("beam_size", [1, 3])
def test_no_caption_ends_on_a_blocked_ending(beam_size, device):
    model, features = _peaked_model(words=3, seed=4)
    features = np.random.default_rng(5).standard_normal((64, 4))
    model.to(device)
    free = model.sample(features, 8) if beam_size == 1 else beam_search(model, features, beam_size, 8)
    last_words = [row[np.flatnonzero(row == END)[0] - 1] for row in free if END in row[1:]]
    word = int(np.bincount(last_words).argmax())  # the commonest last word
    assert _ends_after(free, word).any()

    model.blocked_endings = [model.idx_to_word[word], "absent"]  # a word the vocabulary lacks is harmless
    assert model.no_end_after == (word,)
    blocked = model.sample(features, 8) if beam_size == 1 else beam_search(model, features, beam_size, 8)
    assert not _ends_after(blocked, word).any()
    if beam_size == 1:  # a greedy caption that never says the word is as before (a beam may change its ranks)
        untouched = ~np.isin(free, word).any(axis=1)
        assert untouched.any()
        np.testing.assert_array_equal(blocked[untouched], free[untouched])


def test_beam_search_with_a_blocked_ending_is_the_exhaustive_best_of_the_captions_allowed(device):
    model, features = _peaked_model(words=2)
    model.blocked_endings = ["w0"]
    model.to(device)
    w0 = model.word_to_idx["w0"]
    captions = beam_search(model, features, beam_size=64, max_length=3)
    words = [w for w in range(model.vocab_size) if w not in (NULL, START, UNK, END)]
    for n in range(len(features)):
        allowed = [(*p, END) for k in range(3) for p in itertools.product(words, repeat=k) if not p or p[-1] != w0]
        allowed += list(itertools.product(words, repeat=3))  # cut at max_length: no <END>, so allowed
        best = max(allowed, key=lambda c: _sequence_log_prob(model, features[n], c))
        expected = np.full(3, NULL)
        expected[: len(best)] = best
        np.testing.assert_array_equal(captions[n], expected)


def test_blocked_endings_are_kept_in_the_file_and_checked(tmp_path):
    from rnncap.models import ModelFileError, load_model
    from rnncap.models.base import BLOCKED_ENDINGS

    model, _ = _peaked_model()
    assert model.blocked_endings == () and model.no_end_after == ()
    model.blocked_endings = ["w1", "w0", "w1"]
    assert model.blocked_endings == ("w0", "w1") and model.metadata[BLOCKED_ENDINGS] == ["w0", "w1"]
    assert load_model(model.save(tmp_path / "m.npz")).blocked_endings == ("w0", "w1")
    model.blocked_endings = []
    assert BLOCKED_ENDINGS not in model.metadata
    for bad, message in (([""], "non-empty strings"), ([3], "non-empty strings"), (["<END>"], "special tokens")):
        with pytest.raises(ValueError, match=message):
            model.blocked_endings = bad
    model.metadata[BLOCKED_ENDINGS] = [7]
    with pytest.raises(ModelFileError, match="blocked_endings"):
        load_model(model.save(tmp_path / "bad.npz"))
