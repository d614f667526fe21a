"""ctcx.beam_search with shallow fusion (n-gram LM, lexicon, hotwords, insertion
bonus): exact top-k against brute-force enumeration of every output with its
fused score, the split of the score into its CTC and LM parts, and that
without fusion nothing changes."""
import random

import pytest
import torch

import ctcx
from ctcx._reference import ArpaReference, lm_decode_brute_force

from arpa_files import random_arpa

TOKENS = ["<b>", "a", "b", "c", "|"]  # class 4 is the word delimiter where one is used
FULL = ctcx.MAX_BEAM_WIDTH if hasattr(ctcx, "MAX_BEAM_WIDTH") else 1024


def random_log_probs(T, N, C, seed, scale=2.0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(T, N, C, generator=g, dtype=torch.float64) * scale).log_softmax(-1).to(dtype)


def check_against_brute_force(lp, top_k, tol=1e-6, max_length=None, **fusion):
    """Every sample's top_k (a full beam) equals enumeration's, hypotheses and score parts."""
    search_kwargs = {k: v for k, v in fusion.items() if k in ("lm_weight", "insertion_bonus")}
    ref_kwargs = dict(fusion.pop("reference"))
    ref_kwargs.update(search_kwargs)
    res = ctcx.beam_search(lp, beam_width=1024, top_k=top_k, max_length=max_length, **fusion)
    assert isinstance(res, ctcx.FusedBeamSearchResult)
    for n in range(lp.shape[1]):
        expected = lm_decode_brute_force(lp[:, n], TOKENS, max_length=max_length, **ref_kwargs)
        for k in range(top_k):
            if k >= len(expected):
                assert res.lengths[n, k] == 0 and res.scores[n, k] == float("-inf")
                continue
            y, fused, ctc, lm = expected[k]
            got = tuple(res.tokens[n, k, :res.lengths[n, k]].tolist())
            if got != y:  # only a tie may reorder
                assert res.scores[n, k].item() == pytest.approx(fused, abs=tol * 10)
                continue
            assert res.scores[n, k].item() == pytest.approx(fused, abs=tol)
            assert res.ctc_scores[n, k].item() == pytest.approx(ctc, abs=tol)
            assert res.lm_scores[n, k].item() == pytest.approx(lm, abs=tol)
    return res


@pytest.mark.parametrize("order", [1, 2, 3, 5])
def test_char_lm_gives_the_exact_fused_argmax(tmp_path, order):
    path = random_arpa(tmp_path / "lm.arpa", ["a", "b", "c", "|"], order, seed=order, positive_bows=order == 3)
    lm = ctcx.NgramLM.from_arpa(path, TOKENS)
    ref = ArpaReference(str(path))
    for seed, (alpha, beta) in enumerate([(0.5, 0.0), (1.5, 0.8), (0.3, -0.5), (0.0, 0.0)]):
        lp = random_log_probs(5, 3, 5, seed=seed + 10 * order)
        check_against_brute_force(lp, 4, lm=lm, lm_weight=alpha, insertion_bonus=beta,
                                  reference=dict(lm=ref, unit="char"))


@pytest.mark.parametrize("order", [1, 2, 4])
def test_word_lm_scores_words_at_delimiters_and_the_end(tmp_path, order):
    path = random_arpa(tmp_path / "w.arpa", ["a", "ab", "ba", "c"], order, seed=order)
    lm = ctcx.NgramLM.from_arpa(path, TOKENS, unit="word", word_delimiter=4)
    ref = ArpaReference(str(path))
    for seed, (alpha, beta) in enumerate([(0.5, 0.0), (1.0, 1.5), (2.0, -0.3)]):
        lp = random_log_probs(6, 2, 5, seed=seed + 100 * order)
        lp[:, :, 4] += 1.0  # delimiters common enough to matter
        lp = lp.log_softmax(-1)
        check_against_brute_force(lp, 4, lm=lm, lm_weight=alpha, insertion_bonus=beta,
                                  reference=dict(lm=ref, unit="word", delimiter=4))


def test_word_lm_without_a_delimiter_scores_the_whole_hypothesis_as_one_word(tmp_path):
    path = random_arpa(tmp_path / "w.arpa", ["a", "ab", "ba", "cab"], 2, seed=21)
    lm = ctcx.NgramLM.from_arpa(path, TOKENS, unit="word")
    assert lm.score("ab") == pytest.approx(ArpaReference(str(path)).score(["ab"]), abs=1e-5)
    for seed in range(3):
        lp = random_log_probs(5, 2, 5, seed=400 + seed)
        check_against_brute_force(lp, 4, lm=lm, lm_weight=0.8, insertion_bonus=0.5,
                                  reference=dict(lm=ArpaReference(str(path)), unit="word", delimiter=None))


@pytest.mark.parametrize("delimiter", [None, 4])
def test_lexicon_allows_only_its_words(tmp_path, delimiter):
    words = ["ab", "b", "cab", "ca"]
    lexicon = ctcx.Lexicon(words, TOKENS, word_delimiter=delimiter)
    for seed in range(4):
        lp = random_log_probs(6, 2, 5, seed=seed)
        res = check_against_brute_force(lp, 3, lexicon=lexicon,
                                         reference=dict(lexicon=set(words), delimiter=delimiter))
        for n in range(2):
            for k in range(3):
                text = "".join(TOKENS[c] for c in res.tokens[n, k, :res.lengths[n, k]].tolist())
                if res.lengths[n, k] > 0:
                    assert all(w in words for w in (text.split("|") if delimiter else [text]))


def test_lexicon_and_word_lm_together(tmp_path):
    path = random_arpa(tmp_path / "w.arpa", ["a", "ab", "ba", "c"], 3, seed=7)
    lm = ctcx.NgramLM.from_arpa(path, TOKENS, unit="word", word_delimiter=4)
    lexicon = ctcx.Lexicon(["ab", "ba", "c", "bc"], TOKENS, word_delimiter=4)  # "bc" is not in the LM: <unk>
    for seed in range(3):
        lp = random_log_probs(6, 2, 5, seed=50 + seed)
        check_against_brute_force(lp, 3, lm=lm, lexicon=lexicon, lm_weight=0.7, insertion_bonus=0.4,
                                  reference=dict(lm=ArpaReference(str(path)), unit="word", delimiter=4,
                                                 lexicon={"ab", "ba", "c", "bc"}))


@pytest.mark.parametrize("delimiter", [None, 4])
def test_hotwords_add_their_bonus_to_words_equal_to_them(tmp_path, delimiter):
    bonus = {"ab": 3.0, "abc": 2.0, "c": -1.5}
    hot = ctcx.Hotwords(bonus, TOKENS, word_delimiter=delimiter)
    for seed in range(4):
        lp = random_log_probs(5, 2, 5, seed=200 + seed)
        check_against_brute_force(lp, 4, hotwords=hot, reference=dict(hotwords=bonus, delimiter=delimiter))


def test_hotwords_as_a_mapping_with_a_char_lm(tmp_path):
    path = random_arpa(tmp_path / "lm.arpa", ["a", "b", "c", "|"], 3, seed=9)
    lm = ctcx.NgramLM.from_arpa(path, TOKENS, word_delimiter=4)
    for seed in range(3):
        lp = random_log_probs(5, 2, 5, seed=300 + seed)
        check_against_brute_force(lp, 3, lm=lm, hotwords={"ba": 2.5}, lm_weight=0.6,
                                  reference=dict(lm=ArpaReference(str(path)), unit="char", delimiter=4,
                                                 hotwords={"ba": 2.5}))


def test_float32_and_length_limits(tmp_path):
    path = random_arpa(tmp_path / "lm.arpa", ["a", "b", "c", "|"], 3, seed=3)
    lm = ctcx.NgramLM.from_arpa(path, TOKENS)
    ref = ArpaReference(str(path))
    lp = random_log_probs(6, 3, 5, seed=77, dtype=torch.float32)
    check_against_brute_force(lp.double(), 3, lm=lm, lm_weight=0.8, max_length=3,
                              reference=dict(lm=ref, unit="char"))
    fast = ctcx.beam_search(lp, beam_width=1024, top_k=3, lm=lm, lm_weight=0.8, max_length=3)
    exact = ctcx.beam_search(lp.double(), beam_width=1024, top_k=3, lm=lm, lm_weight=0.8, max_length=3)
    assert fast.scores.dtype == torch.float32
    assert torch.equal(fast.tokens, exact.tokens)
    torch.testing.assert_close(fast.scores.double(), exact.scores, atol=1e-4, rtol=0)


def test_lm_weight_zero_is_the_plain_search(tmp_path):
    path = random_arpa(tmp_path / "lm.arpa", ["a", "b", "c", "|"], 3, seed=5)
    lm = ctcx.NgramLM.from_arpa(path, TOKENS)
    for beam_width in (1, 3, 16):
        lp = random_log_probs(12, 4, 5, seed=beam_width)
        plain = ctcx.beam_search(lp, beam_width=beam_width, top_k=1)
        fused = ctcx.beam_search(lp, beam_width=beam_width, top_k=1, lm=lm, lm_weight=0.0)
        # lm_scores differ (the LM still scores), everything the CTC ranks is the same
        assert torch.equal(plain.tokens, fused.tokens) and torch.equal(plain.timesteps, fused.timesteps)
        torch.testing.assert_close(plain.scores, fused.ctc_scores, rtol=0, atol=1e-12)
        torch.testing.assert_close(fused.scores, fused.ctc_scores, rtol=0, atol=0)


def test_without_fusion_nothing_changes():
    lp = random_log_probs(20, 3, 6, seed=1, dtype=torch.float32)
    plain = ctcx.beam_search(lp, beam_width=8, top_k=2)
    same = ctcx.beam_search(lp, beam_width=8, top_k=2, lm=None, lm_weight=0.9, insertion_bonus=0.0,
                            lexicon=None, hotwords=None)
    assert type(plain) is type(same) is ctcx.BeamSearchResult
    for a, b in zip(plain, same):
        assert torch.equal(a, b)


def test_each_sample_is_decoded_on_its_own(tmp_path):
    path = random_arpa(tmp_path / "lm.arpa", ["a", "b", "c", "|"], 4, seed=8)
    lm = ctcx.NgramLM.from_arpa(path, TOKENS)
    lp = random_log_probs(15, 6, 5, seed=4)
    lengths = [15, 0, 7, 15, 3, 11]
    batch = ctcx.beam_search(lp, lengths, beam_width=6, top_k=2, lm=lm, lm_weight=0.7, insertion_bonus=0.3)
    for n in range(6):
        one = ctcx.beam_search(lp[:lengths[n], n:n + 1], beam_width=6, top_k=2, lm=lm, lm_weight=0.7,
                               insertion_bonus=0.3)
        L = lengths[n]
        assert torch.equal(batch.tokens[n, :, :L], one.tokens[0])
        assert torch.equal(batch.scores[n], one.scores[0]) and torch.equal(batch.lm_scores[n], one.lm_scores[0])
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        single = ctcx.beam_search(lp, lengths, beam_width=6, top_k=2, lm=lm, lm_weight=0.7, insertion_bonus=0.3)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(batch, single):
        assert torch.equal(a, b)


def test_a_lexicon_that_nothing_satisfies_returns_no_hypothesis():
    lexicon = ctcx.Lexicon(["abcabc"], TOKENS)  # six tokens cannot fit three frames
    lp = random_log_probs(3, 1, 5, seed=0)
    res = ctcx.beam_search(lp, beam_width=16, top_k=2, lexicon=lexicon)
    assert res.lengths.tolist() == [[0, 0]]
    assert res.scores[0].tolist() == [float("-inf")] * 2


def test_bad_fusion_arguments_are_refused(tmp_path):
    path = random_arpa(tmp_path / "lm.arpa", ["a", "b", "c", "|"], 2, seed=1)
    lm = ctcx.NgramLM.from_arpa(path, TOKENS, word_delimiter=4)
    lp = random_log_probs(4, 1, 5, seed=0)
    cases = [
        (dict(lm="lm.arpa"), "lm must be a ctcx.NgramLM"),
        (dict(lm=lm, lm_weight=-1.0), "lm_weight = -1.0 must be >= 0"),
        (dict(lm=lm, lm_weight=float("nan")), "lm_weight must be a finite number"),
        (dict(insertion_bonus=float("inf")), "insertion_bonus must be a finite number"),
        (dict(lexicon=["ab"]), "lexicon must be a ctcx.Lexicon"),
        (dict(lm=lm, lexicon=ctcx.Lexicon(["ab"], TOKENS, word_delimiter=3)), "word delimiters disagree"),
        (dict(hotwords={"ab": 1.0}), "needs an lm or lexicon to spell its words"),
        (dict(hotwords=["ab"]), "hotwords must be a ctcx.Hotwords or a"),
        (dict(lexicon=ctcx.Lexicon(["ab"], TOKENS[:4])), r"made for 4 classes with blank 0; log_probs has C = 5"),
        (dict(beam_threshold=0.0), "beam_threshold = 0.0 must be None or a number > 0"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            ctcx.beam_search(lp, **kwargs)
    with pytest.raises(ValueError, match="word 'az' cannot be spelled"):
        ctcx.Lexicon(["az"], TOKENS)
    with pytest.raises(ValueError, match="words is empty"):
        ctcx.Lexicon([], TOKENS)
    with pytest.raises(ValueError, match="the bonus of 'ab' must be a finite number"):
        ctcx.Hotwords({"ab": float("nan")}, TOKENS)


def test_the_op_refuses_tables_that_would_be_read_out_of_bounds():
    lp = random_log_probs(4, 1, 5, seed=0).float()
    lengths = torch.tensor([4])
    lexicon = ctcx.Lexicon(["ab", "c"], TOKENS)
    good = lexicon.tensors(torch.device("cpu"))

    def call(lex):
        return torch.ops.ctcx.ctc_lm_beam_search(lp, lengths, 4, 1, 0, 0, 4, None, None, [], [], lex, [], -1,
                                                 0.5, 0.0, 0.0, None)

    call(good)
    with pytest.raises(ValueError, match="beam_threshold = -1"):
        torch.ops.ctcx.ctc_lm_beam_search(lp, lengths, 4, 1, 0, 0, 4, None, None, [], [], good, [], -1, 0.5, 0.0,
                                          0.0, -1.0)
    bad_node = [t.clone() for t in good]
    bad_node[2][0] = 99
    bad_token = [t.clone() for t in good]
    bad_token[1][0] = 5
    short_end = [t.clone() for t in good]
    short_end[3] = short_end[3][:-1]
    for lex, message in ((bad_node, "out of range"), (bad_token, "out of range"), (short_end, "one entry per node"),
                         (good[:3], "0 or 4 tensors")):
        with pytest.raises(ValueError, match=message):
            call(lex)
    with pytest.raises(ValueError, match="lm_weight = -1"):
        torch.ops.ctcx.ctc_lm_beam_search(lp, lengths, 4, 1, 0, 0, 4, None, None, [], [], [], [], -1, -1.0, 0.0, 0.0,
                                          None)


def test_beam_threshold_drops_only_prefixes_far_below_the_best(tmp_path):
    path = random_arpa(tmp_path / "lm.arpa", ["a", "b", "c", "|"], 3, seed=6)
    lm = ctcx.NgramLM.from_arpa(path, TOKENS)
    lp = random_log_probs(12, 4, 5, seed=12, scale=4.0)
    exact = ctcx.beam_search(lp, beam_width=64, top_k=1, lm=lm, lm_weight=0.5)
    loose = ctcx.beam_search(lp, beam_width=64, top_k=1, lm=lm, lm_weight=0.5, beam_threshold=1e6)
    for a, b in zip(exact, loose):  # a threshold nothing reaches changes nothing
        assert torch.equal(a, b)
    tight = ctcx.beam_search(lp, beam_width=64, top_k=1, lm=lm, lm_weight=0.5, beam_threshold=1e-3)
    # With a tiny threshold only the frame's best prefix survives: its score
    # misses the pruned alignments, a lower bound of an answer the exact search ranks below its own.
    assert (tight.scores <= exact.scores + 1e-9).all()
    plain = ctcx.beam_search(lp, beam_width=8, top_k=1)
    no_lm = ctcx.beam_search(lp, beam_width=8, top_k=1, beam_threshold=1e6)
    assert isinstance(no_lm, ctcx.FusedBeamSearchResult)
    assert torch.equal(plain.tokens, no_lm.tokens) and torch.equal(plain.scores, no_lm.ctc_scores)


@pytest.mark.parametrize("beam_width", [1, 2, 3, 5])
@pytest.mark.parametrize("kind", ["char", "word", "lexicon", "hotwords", "threshold"])
def test_narrow_beams_keep_what_the_unpruned_search_keeps(tmp_path, beam_width, kind):
    # The kernel's bound pruning and its per-prefix cache must not change the
    # beam: compare with the same search that scores every candidate.
    from ctcx._reference import FusionReference, lm_prefix_beam_search_reference

    if kind in ("char", "hotwords", "threshold"):
        path = random_arpa(tmp_path / "lm.arpa", ["a", "b", "c", "|"], 3, seed=beam_width)
        lm = ctcx.NgramLM.from_arpa(path, TOKENS, word_delimiter=4)
    else:
        path = random_arpa(tmp_path / "w.arpa", ["a", "ab", "ba", "cab"], 3, seed=beam_width)
        lm = ctcx.NgramLM.from_arpa(path, TOKENS, unit="word", word_delimiter=4)
    kwargs = dict(lm=lm, lm_weight=0.7, insertion_bonus=0.4)
    ref_kwargs = dict(kwargs, delimiter=4)
    if kind == "lexicon":
        words = ["ab", "ba", "cab", "b"]
        kwargs["lexicon"] = ctcx.Lexicon(words, TOKENS, word_delimiter=4)
        ref_kwargs["lexicon"] = set(words)
    if kind == "hotwords":
        kwargs["hotwords"] = ref_kwargs["hotwords"] = {"ab": 2.0, "cab": 3.0}
    threshold = 1.5 if kind == "threshold" else None
    fusion = FusionReference(TOKENS, **ref_kwargs)
    for seed in range(6):
        lp = random_log_probs(9, 1, 5, seed=1000 + seed, scale=1.5)
        lp[:, :, 4] += 0.5
        lp = lp.log_softmax(-1)
        expected = lm_prefix_beam_search_reference(lp[:, 0], beam_width, fusion,
                                                   beam_threshold=threshold or float("inf"))
        res = ctcx.beam_search(lp, beam_width=beam_width, top_k=beam_width, beam_threshold=threshold, **kwargs)
        got = [(tuple(res.tokens[0, k, :res.lengths[0, k]].tolist()), res.scores[0, k].item())
               for k in range(beam_width) if res.scores[0, k] > float("-inf")]
        assert [g[0] for g in got] == [e[0] for e in expected], (seed, got, expected)
        for (_, score), (_, fused, _) in zip(got, expected):
            assert score == pytest.approx(fused, abs=1e-9)


def test_opcheck(tmp_path):
    path = random_arpa(tmp_path / "lm.arpa", ["a", "b", "c", "|"], 3, seed=2)
    lm = ctcx.NgramLM.from_arpa(path, TOKENS)
    tables, info = lm.tensors(torch.device("cpu"))
    lexicon = ctcx.Lexicon(["ab", "cab"], TOKENS).tensors(torch.device("cpu"))
    lp = random_log_probs(6, 2, 5, seed=3).float()
    args = (lp, torch.tensor([6, 4]), 4, 2, 0, 0, 6, None, None, tables, info, lexicon, [], -1, 0.5, 0.2, 0.2, None)
    torch.library.opcheck(torch.ops.ctcx.ctc_lm_beam_search, args)


@pytest.mark.skipif(not (torch.cuda.is_available() and ctcx.cuda_available()),
                    reason="needs a GPU and ctcx built with its CUDA kernels")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_keeps_the_cpu_beams(tmp_path, dtype):
    path = random_arpa(tmp_path / "lm.arpa", ["a", "b", "c", "|"], 4, seed=31)
    lm = ctcx.NgramLM.from_arpa(path, TOKENS, word_delimiter=4)
    lexicon = ctcx.Lexicon(["ab", "ba", "cab", "c"], TOKENS, word_delimiter=4)
    lp = random_log_probs(30, 16, 5, seed=32, dtype=dtype)
    lengths = torch.randint(0, 31, (16,), generator=torch.Generator().manual_seed(3))
    for kwargs in (dict(lm=lm, lm_weight=0.6, insertion_bonus=0.5), dict(lexicon=lexicon, lm=lm),
                   dict(lm=lm, hotwords={"cab": 3.0}, beam_threshold=8.0)):
        cpu = ctcx.beam_search(lp, lengths, beam_width=8, top_k=3, **kwargs)
        gpu = ctcx.beam_search(lp.cuda(), lengths.cuda(), beam_width=8, top_k=3, **kwargs)
        for name, a, b in zip(cpu._fields, cpu, gpu):
            if a.dtype.is_floating_point:
                torch.testing.assert_close(b.cpu(), a, rtol=1e-5, atol=1e-5, msg=name)
            else:
                assert torch.equal(b.cpu(), a), name
