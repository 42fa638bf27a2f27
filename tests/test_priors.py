import pytest
import torch

import sardfq
from sardfq.synthesis.priors import local_maxima


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("kind", ["gmm", "laplace"])
def test_mixture_priors_are_distributions_one_per_head(kind):
    grids, heads = {2: (8, 8), 3: (4, 6)}, {2: 3, 3: 2}
    priors = sardfq.draw_priors(kind, 5, heads, grids, generator=gen())
    assert set(priors) == {2, 3}
    assert priors[2].shape == (5, 3, 64) and priors[3].shape == (5, 2, 24)
    for p in priors.values():
        assert (p >= 0).all()
        torch.testing.assert_close(p.sum(-1), torch.ones(p.shape[:-1]))
        # every image and head has its own map
        assert not torch.allclose(p[:, 0], p[:, 1])
        assert not torch.allclose(p[0], p[1])


@pytest.mark.parametrize("kind", ["gmm", "laplace"])
def test_mixture_priors_are_multi_modal_and_single_component_is_not(kind):
    grid = (14, 14)
    many = sardfq.draw_priors(kind, 400, {0: 1}, {0: grid}, generator=gen(1), k_max=5)[0][:, 0]
    modes = local_maxima(many, grid)
    assert (modes >= 2).float().mean() > 0.25  # several separated bumps are common
    assert (modes >= 3).any()
    one = sardfq.draw_priors(kind, 200, {0: 1}, {0: grid}, generator=gen(2), k_max=1)[0][:, 0]
    assert (local_maxima(one, grid) == 1).all()


def test_gmm_component_widths_span_the_stated_range():
    # k_max=1: one isotropic Gaussian; its peak height tells its sigma (tall = 0.5 cells, flat = G/3)
    one = sardfq.draw_priors("gmm", 300, {0: 1}, {0: (12, 12)}, generator=gen(3), k_max=1)[0][:, 0]
    peak = one.max(-1).values
    assert peak.max() > 0.3  # sigma near 0.5 cell concentrates most mass in one cell
    assert peak.min() < 0.02  # sigma near 4 cells spreads it over many


def test_priors_are_reproducible_under_a_seed():
    args = ("gmm", 4, {0: 2}, {0: (8, 8)})
    a = sardfq.draw_priors(*args, generator=gen(7))[0]
    b = sardfq.draw_priors(*args, generator=gen(7))[0]
    c = sardfq.draw_priors(*args, generator=gen(8))[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_unknown_prior_kind_suggests_close_names():
    with pytest.raises(sardfq.UnknownNameError, match="gmm"):
        sardfq.draw_priors("gmmm", 2, {0: 1}, {0: (4, 4)}, generator=gen())
    assert set(sardfq.PRIORS.names()) >= {"gmm", "laplace", "real"}


def test_real_attention_priors_come_from_real_maps():
    torch.manual_seed(0)
    model, info = sardfq.load_model("deit_tiny_patch16_224", pretrained=False, img_size=32,
                                    patch_size=8, depth=2)
    images = torch.randn(6, 3, 32, 32)
    bank = sardfq.real_attention_bank(model, images, [0, 1], batch_size=4)
    assert bank[1].shape == (6, 3, 16)
    torch.testing.assert_close(bank[1].sum(-1), torch.ones(6, 3))
    priors = sardfq.draw_priors("real", 5, {0: 3, 1: 3}, {0: (4, 4), 1: (4, 4)}, generator=gen(),
                                bank=bank)
    for i in range(5):  # each synthetic image uses one real image for all of its blocks
        matches = [j for j in range(6) if torch.allclose(priors[0][i], bank[0][j])]
        assert len(matches) == 1
        torch.testing.assert_close(priors[1][i], bank[1][matches[0]])
    with pytest.raises(ValueError, match="bank"):
        sardfq.draw_priors("real", 2, {0: 3}, {0: (4, 4)}, generator=gen())


def test_priors_follow_the_jitter():
    grids = {0: (4, 4)}
    priors = sardfq.draw_priors("gmm", 2, {0: 1}, grids, generator=gen())
    maps = priors[0].view(2, 1, 4, 4)
    same = sardfq.transform_priors(priors, grids, 0, 32, False)[0]
    assert torch.equal(same, priors[0])
    flipped = sardfq.transform_priors(priors, grids, 0, 32, True)[0].view(2, 1, 4, 4)
    assert torch.equal(flipped, maps.flip(-1))
    rolled = sardfq.transform_priors(priors, grids, 8, 32, False)[0].view(2, 1, 4, 4)  # 8 px = 1 cell
    assert torch.equal(rolled, torch.roll(maps, (1, 1), (-2, -1)))


def test_local_maxima_counts_peaks():
    grid = torch.zeros(5, 5)
    grid[0, 0], grid[3, 3] = 1.0, 2.0
    assert local_maxima(grid.view(1, 25), (5, 5)).item() == 2


def test_narrower_prior_scale_gives_more_peaked_priors_and_the_default_is_a_third():
    grid = (14, 14)
    args = dict(batch=200, heads={0: 2}, grids={0: grid})
    default = sardfq.draw_priors("gmm", **args, generator=gen(5))[0]
    third = sardfq.draw_priors("gmm", **args, generator=gen(5), scale_max=1 / 3)[0]
    assert torch.equal(default, third)
    narrow = sardfq.draw_priors("gmm", **args, generator=gen(5), scale_max=0.1)[0]
    wide = sardfq.draw_priors("gmm", **args, generator=gen(5), scale_max=0.6)[0]

    def entropy(p):
        return float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean())

    assert entropy(narrow) < entropy(default) < entropy(wide)
    with pytest.raises(ValueError, match="scale_max"):
        sardfq.draw_priors("gmm", **args, generator=gen(5), scale_max=0)
