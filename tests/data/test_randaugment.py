import pytest
import torch

from metassl.data import randaugment as ra
from metassl.data.augment import Augmenter


def images(n=8, c=3, size=12, seed=0):
    """Low-contrast images with structure, so that every op has something to change."""
    g = torch.Generator().manual_seed(seed)
    x = 0.3 + 0.4 * torch.rand(n, c, size, size, generator=g)
    x[:, :, 3:9, 5:7] = 0.65  # a bar off the centre: geometric ops move it
    return (x * 255).round() / 255


MAGNITUDE_FREE = {"identity", "autocontrast", "equalize"}


@pytest.mark.parametrize("name", ra.OPS)
def test_every_op_keeps_shape_and_range_and_changes_images(name):
    x = images()
    for m in (torch.ones(8), -torch.ones(8), torch.rand(8) * 2 - 1):
        out = ra.apply_op(name, x, m)
        assert out.shape == x.shape and out.dtype == x.dtype
        assert out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    out = ra.apply_op(name, x, torch.ones(8))
    if name == "identity":
        assert torch.equal(out, x)
    else:
        assert (out - x).abs().amax(dim=(1, 2, 3)).min() > 0.02, name


@pytest.mark.parametrize("name", [n for n in ra.OPS if n not in MAGNITUDE_FREE])
def test_zero_magnitude_is_the_identity(name):
    x = images()
    assert torch.allclose(ra.apply_op(name, x, torch.zeros(8)), x, atol=1e-5), name


def test_color_is_a_no_op_on_one_channel_and_geometric_ops_move_content():
    x = images(c=1)
    assert torch.allclose(ra.apply_op("color", x, torch.ones(8)), x)
    square = torch.zeros(1, 1, 20, 20)
    square[:, :, 8:12, 8:12] = 1.0

    def centre(img):
        rows, cols = torch.nonzero(img[0, 0] > 0.9, as_tuple=True)
        return rows.float().mean().item(), cols.float().mean().item()

    r0, c0 = centre(square)
    r, c = centre(ra.apply_op("translate_x", square, torch.ones(1)))
    assert abs(c - c0) == pytest.approx(0.3 * 20, abs=0.5) and r == pytest.approx(r0)
    r, c = centre(ra.apply_op("translate_y", square, -torch.ones(1)))
    assert abs(r - r0) == pytest.approx(0.3 * 20, abs=0.5) and c == pytest.approx(c0)
    # a rotation about the centre keeps the centred square where it is but turns its corners out
    turned = ra.apply_op("rotate", square, torch.ones(1))
    assert centre(turned) == pytest.approx((r0, c0), abs=0.3) and not torch.allclose(turned, square)


def test_equalize_spreads_a_narrow_histogram():
    x = images(c=1, size=16)
    out = ra.equalize(x, torch.zeros(8))
    assert out.amin(dim=(1, 2, 3)).max() == 0.0 and torch.allclose(out.amax(dim=(1, 2, 3)), torch.ones(8))
    # equalised levels have a flat cumulative histogram: the median pixel sits near 0.5
    assert (out.flatten(1).median(dim=1).values - 0.5).abs().max() < 0.1
    flat = torch.full((2, 1, 4, 4), 0.4)
    assert torch.equal(ra.equalize(flat, torch.zeros(2)), flat)


def test_rand_augment_chooses_ops_per_sample():
    torch.manual_seed(0)
    x = images(n=1).expand(64, -1, -1, -1).contiguous()
    out = ra.rand_augment(x, num_ops=2)
    assert out.shape == x.shape and out.min() >= 0.0 and out.max() <= 1.0 + 1e-6
    distinct = {tuple(o.flatten()[:40].mul(1000).round().tolist()) for o in out}
    assert len(distinct) > 32  # the same image comes out many different ways
    changed = (out - x).abs().amax(dim=(1, 2, 3)) > 1e-3
    assert changed.float().mean() > 0.7


def test_cutout_fills_one_square_of_grey():
    torch.manual_seed(0)
    x = torch.zeros(256, 1, 20, 20)
    out = ra.cutout(x, 0.5)
    filled = out == ra.FILL
    assert torch.equal(filled | (out == 0), torch.ones_like(filled))
    area = filled.flatten(1).sum(1)
    assert area.max() <= 100 and (area > 0).float().mean() > 0.8
    for i in range(0, 256, 17):  # the filled pixels form one axis-aligned rectangle
        rows, cols = filled[i, 0].any(1), filled[i, 0].any(0)
        assert area[i] == rows.sum() * cols.sum()


def test_strong_view_is_normalised_and_adds_rand_augment_and_cutout():
    torch.manual_seed(0)
    aug = Augmenter((0.5,), (0.25,), flip=False, translate=0, noise=0.0, device="cpu")
    raw = (images(n=32, c=1) * 255).to(torch.uint8)
    clean, strong = aug.normalize(raw), aug.strong(raw)
    assert torch.equal(aug(raw), clean)  # no weak op enabled, so only the strong ops remain
    assert strong.shape == clean.shape and strong.dtype == torch.float32
    assert strong.min() >= -2.0 - 1e-5 and strong.max() <= 2.0 + 1e-5  # (0 - .5)/.25 .. (1 - .5)/.25
    changed = (strong - clean).abs().amax(dim=(1, 2, 3)) > 0.1
    assert changed.float().mean() > 0.8
