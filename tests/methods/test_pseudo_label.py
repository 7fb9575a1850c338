import pytest
import torch

from metassl.methods.pseudo import confident_argmax, masked_cross_entropy


def test_confidence_mask_drops_low_confidence_rows():
    probs = torch.tensor([[0.97, 0.01, 0.01, 0.01],
                          [0.50, 0.30, 0.10, 0.10],
                          [0.02, 0.95, 0.02, 0.01],
                          [0.25, 0.25, 0.25, 0.25]])
    labels, mask = confident_argmax(probs, 0.95)
    assert labels[[0, 2]].tolist() == [0, 1]
    assert mask.tolist() == [1.0, 0.0, 1.0, 0.0]
    logits = torch.randn(4, 4, requires_grad=True)
    loss = masked_cross_entropy(logits, labels, mask)
    per_row = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    assert torch.allclose(loss, (per_row[0] + per_row[2]) / 4)  # dropped rows count in the mean
    loss.backward()
    assert logits.grad[[1, 3]].abs().max() == 0 and logits.grad[[0, 2]].abs().max() > 0


def test_alpha_is_zero_until_t1_then_linear_to_alpha_f_at_t2(make_method):
    method, _ = make_method("pseudo_label", "alpha_f=3.0", "t1_fraction=0.1", "t2_fraction=0.6", total_steps=1000)
    assert [method.alpha(s) for s in (0, 99, 100, 350, 600, 999)] == pytest.approx([0, 0, 0, 1.5, 3, 3])


def test_unlabeled_loss_is_cross_entropy_against_the_models_own_argmax(make_method):
    method, batches = make_method("pseudo_label", "threshold=0.0")
    labeled, unlabeled = batches()
    with torch.no_grad():
        logits_u = method.model(torch.cat([labeled.x, unlabeled.x]))[labeled.x.shape[0]:]
    out = method.train_step(labeled, unlabeled, step=0)
    expected = torch.nn.functional.cross_entropy(logits_u, logits_u.argmax(1))
    assert out["mask"] == 1.0 and torch.allclose(out["loss_u"], expected, atol=1e-5)
    method, batches = make_method("pseudo_label", "threshold=1.0")
    out = method.train_step(*batches(), step=99)
    assert out["mask"] == 0.0 and out["loss_u"] == 0.0

