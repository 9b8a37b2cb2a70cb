"""What a run holds per sample: packed token masks, and the cal+test scores merged
into place (one copy) from the pass-2 chunks (issue 14, item 4)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from superact_lens.data import make_synthetic_dataset, token_masks
from superact_lens.run_masks import PackedMasks, text_masks
from superact_lens.run_passes import merge_pass2, sample_range
from superact_lens.runstate import RunState
from superact_lens.scores import TokenScores
from superact_lens.stats import ScoreRows, save_state

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "_timing.py"
_spec = importlib.util.spec_from_file_location("_bench_timing_run_memory", _PATH)
timing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(timing)


def random_scores(n: int, seed: int, n_layers: int = 3, n_cols: int = 4) -> TokenScores:
    """Samples of 0..39 tokens (lengths depend on ``n`` only: every kind of a run
    scores the same tokens), random scores from ``seed``."""
    lengths = torch.randint(0, 40, (n,), generator=torch.Generator().manual_seed(n))
    gen = torch.Generator().manual_seed(seed)
    offsets = torch.zeros(n + 1, dtype=torch.long)
    offsets[1:] = torch.cumsum(lengths, 0)
    return TokenScores(
        layers=list(range(n_layers)),
        concepts=[f"c{i}" for i in range(n_cols)],
        tokens=torch.randn(n_layers, int(offsets[-1]), n_cols, generator=gen),
        offsets=offsets,
        cls=torch.randn(n_layers, n, n_cols, generator=gen),
        metadata={"kind": "test"},
    )


def write_chunks(state: RunState, scores: dict[str, TokenScores], n: int, seed: int) -> int:
    """Cut samples 0..n-1, shuffled, into uneven chunks; commit each as stream_pass2 does."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen)
    cuts = sorted(torch.randint(1, n, (6,), generator=gen).unique().tolist())
    parts = torch.tensor_split(order, cuts)
    state.pass2.mkdir(parents=True, exist_ok=True)
    for j, ids in enumerate(parts):
        save_state(
            state.chunk_path(state.pass2, j),
            {
                kind: ScoreRows(s.layers, s.concepts, s.metadata)
                .add(ids, s.select_samples(ids))
                .state_dict()
                for kind, s in scores.items()
            },
        )
    return len(parts)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merged_scores_equal_the_one_pass_scores_and_splits_are_views(tmp_path, seed):
    n = 300
    scores = {"a": random_scores(n, seed), "b": random_scores(n, seed + 10, n_cols=2)}
    state = RunState(tmp_path)
    n_chunks = write_chunks(state, scores, n, seed)
    merged, masks = merge_pass2(state, ["a", "b"], n_chunks, n)
    assert masks is None  # these chunks hold scores only
    for kind, want in scores.items():
        got = merged[kind]
        assert torch.equal(got.tokens, want.tokens) and torch.equal(got.offsets, want.offsets)
        assert torch.equal(got.cls, want.cls) and got.metadata == want.metadata
        assert (got.layers, got.concepts) == (want.layers, want.concepts)
        part = sample_range(got, 100, 250)
        ref = want.select_samples(torch.arange(100, 250))
        assert torch.equal(part.tokens, ref.tokens) and torch.equal(part.offsets, ref.offsets)
        assert torch.equal(part.cls, ref.cls)
        assert part.tokens.untyped_storage().data_ptr() == got.tokens.untyped_storage().data_ptr()


def test_merging_holds_one_copy_of_the_scores(tmp_path):
    """Peak of new tensor memory while merging: the merged scores plus about a chunk
    (concatenating the chunks then reordering them held three copies)."""
    n = 2000
    scores = {"a": random_scores(n, 0, n_cols=8)}
    state = RunState(tmp_path)
    n_chunks = write_chunks(state, scores, n, 0)
    size = scores["a"].tokens.nbytes + scores["a"].cls.nbytes
    peak = timing.peak_new_bytes(lambda: merge_pass2(state, ["a"], n_chunks, n))
    assert size <= peak < 1.6 * size


def test_a_missing_chunk_is_an_error(tmp_path):
    n = 50
    state = RunState(tmp_path)
    n_chunks = write_chunks(state, {"a": random_scores(n, 3)}, n, 3)
    with pytest.raises(RuntimeError, match="incomplete"):
        merge_pass2(state, ["a"], n_chunks - 1, n)


def test_packed_masks_equal_the_per_sample_masks(minilm_lens):
    ds = make_synthetic_dataset(n=40, seed=2)
    want = token_masks(ds, minilm_lens.content_offsets(ds.texts))
    packed = text_masks(minilm_lens, ds)
    assert len(packed) == len(want)
    assert all(torch.equal(a, b) for a, b in zip(packed, want, strict=True))
    rows = [5, 0, 39, 17, 17]
    assert torch.equal(packed.stack(rows), torch.cat([want[i] for i in rows]))
    sub = PackedMasks.from_rows(packed, rows)
    assert all(torch.equal(sub[k], want[i]) for k, i in enumerate(rows))
    again = PackedMasks.from_list(want, ds.n_concepts)
    assert torch.equal(again.data, packed.data) and torch.equal(again.offsets, packed.offsets)


@settings(max_examples=60, deadline=None)
@given(
    lengths=st.lists(st.integers(0, 5), min_size=1, max_size=12),
    picks=st.lists(st.integers(0, 10**6), max_size=15),
    block=st.integers(1, 4),
)
def test_from_rows_gathered_block_by_block_equals_the_rows_concatenated(lengths, picks, block):
    """Any rows (repeats, any order), whatever the block size: sample k of the result
    is sample rows[k] of the source."""
    gen = torch.Generator().manual_seed(len(lengths))
    masks = [torch.rand(n, 3, generator=gen) < 0.5 for n in lengths]
    packed = PackedMasks.from_list(masks, 3)
    rows = [p % len(lengths) for p in picks]
    with mock.patch("superact_lens.run_masks._BLOCK", block):
        sub = PackedMasks.from_rows(packed, rows)
    assert len(sub) == len(rows)
    assert all(torch.equal(sub[k], masks[i]) for k, i in enumerate(rows))
    want = torch.cat([masks[i] for i in rows]) if rows else torch.zeros(0, 3, dtype=torch.bool)
    assert torch.equal(sub.data, want)


def test_cls_concepts_are_fitted_on_the_capped_sample_subset(tmp_path_factory, minilm_folder):
    """With caps below the train split's counts, the run keeps only the embeddings of
    ``sample_subset``'s samples, and its CLS-level bank is the estimator fitted on them."""
    from superact_lens.concepts import make_estimator
    from superact_lens.pipeline import RunConfig, run_experiment
    from superact_lens.sinks import SampleEmbeddingSink, sample_subset
    from tests.run_helpers import tiny_text_inputs

    model, data = tiny_text_inputs(tmp_path_factory, minilm_folder)
    config = RunConfig(
        model=str(model), dataset=str(data), concepts=("mean",), batch_size=2,
        n_bootstrap=20, cap_in=4, cap_neg=6, methods=("cls",), progress=False,
    )  # fmt: skip
    exp = run_experiment(config)
    train = exp.dataset.subset("train")
    labels = torch.as_tensor(train.labels)
    rows = sample_subset(labels, 4, 6, config.seed)
    assert 0 < len(rows) < len(train)  # the caps bite
    sink = SampleEmbeddingSink()
    exp.lens.stream(train.texts, [sink], layers=exp.layers, batch_size=2)
    emb = sink.result()
    est = make_estimator("mean", seed=config.seed)
    names = list(train.concepts)
    want = est.fit_cls(emb[:, rows], labels[rows], exp.layers, exp.normalizer, names).bank_
    torch.testing.assert_close(exp.cls_banks["mean"].vectors, want.vectors)
    everything = est.fit_cls(emb, labels, exp.layers, exp.normalizer, names).bank_
    assert not torch.allclose(everything.vectors, want.vectors)  # so the test can fail


def test_text_masks_are_made_chunk_by_chunk_and_read_back_from_the_chunks(
    tmp_path_factory, minilm_folder, monkeypatch
):
    """A run asks for the token masks of one chunk at a time (never the whole dataset),
    each sample's once; the masks it serves afterwards (figures, notebooks) and the
    parts separability reads equal the masks of the split made in one go."""
    import superact_lens.run_prepare as run_prepare
    from superact_lens.pipeline import RunConfig, run_experiment
    from superact_lens.runstate import CHUNK_BATCHES
    from tests.run_helpers import tiny_text_inputs

    asked: list[list[int]] = []
    real = run_prepare.text_masks

    def recording(lens, dataset, rows=None):
        asked.append(list(range(len(dataset))) if rows is None else [int(r) for r in rows])
        return real(lens, dataset, rows)

    monkeypatch.setattr(run_prepare, "text_masks", recording)
    model, data = tiny_text_inputs(tmp_path_factory, minilm_folder)
    config = RunConfig(
        model=str(model), dataset=str(data), concepts=("mean",), batch_size=2,
        n_bootstrap=20, methods=("superact",), progress=False,
    )  # fmt: skip
    exp = run_experiment(config, state_dir=tmp_path_factory.mktemp("state"))  # parts() reads it
    ds = exp.dataset
    assert max(len(a) for a in asked) <= 2 * CHUNK_BATCHES < len(ds)
    assert sorted(r for a in asked for r in a) == list(range(len(ds)))
    for split in ("cal", "test"):
        rows = ds.split_indices(split)
        want = real(exp.lens, ds, rows)
        whole = exp.__dict__[split]["mean"]
        assert torch.equal(whole.masks, want.data)
        # parts come chunk by chunk (not in split order): match samples by their scores
        by_scores = {whole.scores.sample(i).numpy().tobytes(): want[i] for i in range(len(rows))}
        n_seen = 0
        for scores, _, masks in whole.parts():
            for i in range(scores.n_samples):
                a, b = int(scores.offsets[i]), int(scores.offsets[i + 1])
                assert torch.equal(masks[a:b], by_scores[scores.sample(i).numpy().tobytes()])
                n_seen += 1
        assert n_seen == len(rows) == len(by_scores)
