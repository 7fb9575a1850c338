"""FlexMatch: per-class thresholds from the learning effect, with the warm-up and the convex map."""
import pytest
import torch

from metassl.methods import Batch

N = 10  # unlabeled examples; the training set has 4 labeled ones before them


def make(make_method, *overrides):
    method, _ = make_method("flexmatch", *overrides, num_train=N + 4, num_unlabeled=N)
    return method


def batch(idx):
    idx = torch.tensor(idx)
    return Batch(x=torch.zeros(len(idx), 1, 8, 8), raw=None, idx=idx)


def confident(classes, conf=0.97):
    """One row per class, ``conf`` on it and the rest spread evenly."""
    q = torch.full((len(classes), 4), (1 - conf) / 3)
    q[torch.arange(len(classes)), torch.tensor(classes)] = conf
    return q


def M(x):  # noqa: N802
    return x / (2 - x)


def test_thresholds_start_at_zero_and_follow_the_learning_effect_with_warm_up(make_method):
    method = make(make_method)
    assert torch.equal(method.class_thresholds(), torch.zeros(4))
    # σ = (2, 1, 0, 0): 7 of the 10 unlabeled examples were never confident, so β = σ / 7.
    method.pseudo_targets(confident([0, 0, 1]), batch([4, 5, 6]), step=0)
    expected = torch.tensor([M(2 / 7), M(1 / 7), 0.0, 0.0]) * 0.95
    assert torch.allclose(method.class_thresholds(), expected)
    # σ = (5, 2, 1, 0): 2 left unseen, so the most learned class sets the scale, β(0) = 1, T(0) = τ.
    method.pseudo_targets(confident([0, 0, 0, 1, 2]), batch([7, 8, 9, 10, 11]), step=1)
    expected = torch.tensor([M(1.0), M(2 / 5), M(1 / 5), 0.0]) * 0.95
    assert torch.allclose(method.class_thresholds(), expected)


def test_without_warm_up_the_most_learned_class_sets_the_scale(make_method):
    method = make(make_method, "threshold_warmup=false")
    method.pseudo_targets(confident([0, 0, 1]), batch([4, 5, 6]), step=0)
    assert torch.allclose(method.class_thresholds(), torch.tensor([M(1.0), M(0.5), 0.0, 0.0]) * 0.95)


def test_the_mask_uses_the_thresholds_before_the_batch_and_the_memory_keeps_the_last_confident_class(make_method):
    method = make(make_method)
    method.pseudo_targets(confident([0, 0, 0, 1]), batch([4, 5, 6, 7]), step=0)
    before = method.class_thresholds()  # T(0) = M(3/6)·0.95 ≈ 0.32, T(1) = M(1/6)·0.95 ≈ 0.086
    q = torch.tensor([[0.30, 0.30, 0.20, 0.20],    # class 0 below T(0): out
                      [0.25, 0.35, 0.20, 0.20],    # class 1 above T(1): in
                      [0.10, 0.10, 0.10, 0.70],    # class 3, T = 0: in, not confident enough to count
                      [0.01, 0.97, 0.01, 0.01]])   # example 4 is now confidently class 1
    targets, mask, logs = method.pseudo_targets(q, batch([8, 9, 10, 4]), step=1)
    assert torch.equal(targets, torch.tensor([0, 1, 3, 1]))
    assert torch.equal(mask, torch.tensor([0.0, 1.0, 1.0, 1.0]))
    assert before[0] > 0.3 and logs["mask"] == 0.75
    assert method.selected.tolist() == [-1] * 4 + [1, 0, 0, 1] + [-1] * 6


def test_the_memory_survives_a_state_dict_round_trip(make_method):
    method = make(make_method)
    method.pseudo_targets(confident([2, 3, 3]), batch([4, 9, 13]), step=0)
    fresh = make(make_method)
    fresh.load_state_dict(method.state_dict())
    assert torch.equal(fresh.selected, method.selected)
    assert torch.equal(fresh.class_thresholds(), method.class_thresholds())


def test_flexmatch_needs_the_training_set_size_and_the_indices(make_method):
    with pytest.raises(ValueError, match="num_train"):
        make_method("flexmatch")
    method = make(make_method)
    with pytest.raises(ValueError, match="Batch.idx"):
        method.pseudo_targets(confident([0]), Batch(x=torch.zeros(1, 1, 8, 8), raw=None), step=0)
