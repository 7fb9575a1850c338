import pytest
import torch

from metassl.data.augment import Augmenter, random_flip, random_translate
from metassl.data.stream import IndexStream


def test_translate_is_a_shift_of_the_padded_image():
    torch.manual_seed(0)
    x = torch.rand(16, 2, 9, 9)
    out = random_translate(x, 2)
    assert out.shape == x.shape
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")
    for i in range(16):
        windows = [padded[i, :, dy:dy + 9, dx:dx + 9] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(out[i], w) for w in windows)
    assert any(not torch.equal(out[i], x[i]) for i in range(16))
    assert torch.equal(random_translate(x, 0), x)


def test_flip_flips_some_and_keeps_others():
    torch.manual_seed(0)
    x = torch.rand(64, 1, 4, 4)
    out = random_flip(x)
    flipped = [torch.equal(out[i], x[i].flip(2)) for i in range(64)]
    kept = [torch.equal(out[i], x[i]) for i in range(64)]
    assert all(f or k for f, k in zip(flipped, kept))
    assert 10 < sum(flipped) < 54


def test_normalize_uses_mean_and_std():
    aug = Augmenter((0.5,), (0.25,), flip=False, translate=0, noise=0.0, device="cpu")
    x = torch.full((2, 1, 3, 3), 255, dtype=torch.uint8)
    assert torch.allclose(aug.normalize(x), torch.full((2, 1, 3, 3), 2.0))
    assert torch.allclose(aug(x), aug.normalize(x))  # no random op enabled


def test_stream_covers_epochs_and_resumes_exactly():
    idx = torch.arange(10, 20)
    s = IndexStream(idx, 4, seed=0, device="cpu")
    first_epoch = torch.cat([s.next(), s.next()])
    assert len(set(first_epoch.tolist())) == 8 and set(first_epoch.tolist()) <= set(range(10, 20))
    state = s.state_dict()
    ahead = [s.next() for _ in range(5)]
    t = IndexStream(idx, 4, seed=123, device="cpu")
    t.load_state_dict(state)
    assert all(torch.equal(a, t.next()) for a in ahead)


def test_stream_smaller_than_batch_and_ranks():
    s = IndexStream(torch.arange(3), 5, seed=0, device="cpu")
    assert len(s.next()) == 5
    r0 = IndexStream(torch.arange(100), 8, seed=0, device="cpu", rank=0, world_size=2)
    r1 = IndexStream(torch.arange(100), 8, seed=0, device="cpu", rank=1, world_size=2)
    a, b = r0.next(), r1.next()
    assert not set(a.tolist()) & set(b.tolist())


def test_feature_vector_views_differ_leave_the_padding_and_the_strong_view_is_stronger():
    import torch

    from metassl.data.augment import VECTOR_STD, Augmenter

    torch.manual_seed(0)
    features, side = 40, 8
    x = torch.randint(60, 200, (256, 1, side, side), dtype=torch.uint8)
    x.view(256, -1)[:, features:] = 0
    aug = Augmenter((0.5,), (0.25,), flip=True, translate=2, noise=0.0, device="cpu",
                    vector_features=features, vector_noise=0.2, vector_dropout=0.1)
    plain = aug.normalize(x).view(256, -1)
    first, second = aug(x).view(256, -1), aug(x).view(256, -1)
    assert not torch.allclose(first[:, :features], second[:, :features])
    assert torch.equal(first[:, features:], plain[:, features:])      # padding is never moved
    weak_dev = (first - plain)[:, :features].std()
    strong_dev = (aug.strong(x).view(256, -1) - plain)[:, :features].std()
    assert strong_dev > 1.5 * weak_dev
    # Noise is 0.2 feature standard deviations (VECTOR_STD of the 0..1 range, over std 0.25) ...
    noise_only = Augmenter((0.5,), (0.25,), flip=False, translate=0, noise=0.0, device="cpu",
                           vector_features=features, vector_noise=0.2)
    shift = (noise_only(x).view(256, -1) - plain)[:, :features]
    assert shift.std().item() == pytest.approx(0.2 * VECTOR_STD / 0.25, rel=0.05)
    # ... and dropout sets a tenth of the features to their mean (0.5 before normalisation).
    dropout_only = Augmenter((0.5,), (0.25,), flip=False, translate=0, noise=0.0, device="cpu",
                             vector_features=features, vector_dropout=0.1)
    dropped = (dropout_only(x).view(256, -1)[:, :features] == 0.0).float().mean().item()
    assert dropped == pytest.approx(0.1, abs=0.02)


def test_signals_runs_take_the_vector_views(tmp_path):
    from metassl import config
    from metassl.engine.trainer import Trainer

    cfg = config.load_config(None, ["dataset=signals", "model=mlp", "steps=2", "eval_every=2",
                                    "tensorboard=false", "method=fixmatch", "batch_size=8"])
    trainer = Trainer(cfg, tmp_path)
    assert trainer.s.augmenter.vector_features == 40
    assert trainer.s.augmenter.translate == 0 and not trainer.s.augmenter.flip
    trainer.fit()
    import json

    assert len(json.loads((tmp_path / "data_info.json").read_text())["vectors"]["mean"]) == 40
