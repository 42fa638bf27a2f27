import math

import pytest
import torch
import torch.nn.functional as F

import sardfq


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_apa_blocks_are_the_deep_half():
    assert sardfq.apa_blocks(6) == [2, 3, 4, 5]  # 1-based l = 3..6
    assert sardfq.apa_blocks(12) == list(range(5, 12))  # l = 6..12
    assert sardfq.apa_blocks(2) == [0, 1]
    assert sardfq.apa_blocks(6, deep_only=False) == list(range(6))


def test_apa_loss_is_zero_at_the_prior_and_weights_depth():
    priors = sardfq.draw_priors("gmm", 3, {2: 2, 5: 2}, {2: (4, 4), 5: (4, 4)}, generator=gen())
    zero = sardfq.apa_loss({k: v.clone() for k, v in priors.items()}, priors, 6)
    assert zero.item() == 0.0
    uniform = {k: torch.full_like(v, 1 / 16) for k, v in priors.items()}
    mse = {k: ((uniform[k] - priors[k]) ** 2).mean(dim=(0, 2)).sum() for k in priors}
    weighted = sardfq.apa_loss(uniform, priors, 6)
    torch.testing.assert_close(weighted, 3 / 6 * mse[2] + 6 / 6 * mse[5])
    flat = sardfq.apa_loss(uniform, priors, 6, depth_weighting=False)
    torch.testing.assert_close(flat, mse[2] + mse[5])
    assert weighted > 0


def test_soft_targets_are_softmax_of_logits_in_range():
    relevant = torch.zeros(500, 10, dtype=torch.bool)
    relevant[torch.arange(500), torch.arange(500) % 10] = True
    relevant[:250, 3] = True  # some images have two relevant classes
    t = sardfq.soft_targets(relevant, generator=gen())
    torch.testing.assert_close(t.sum(-1), torch.ones(500))
    # log T_i - log T_j recovers Z_i - Z_j: relevant minus irrelevant in [5, 10], irrelevant ties
    logt = t.log()
    for row in range(0, 500, 7):
        rel, irr = logt[row][relevant[row]], logt[row][~relevant[row]]
        z = rel - irr[0]
        assert ((z >= 5 - 1e-4) & (z <= 10 + 1e-4)).all()
        torch.testing.assert_close(irr, irr[0].expand_as(irr))
    z_all = (logt.max(-1).values - logt.min(-1).values)
    assert z_all.min() < 5.5 and z_all.max() > 9.5  # the whole range is used
    single = t[250:].max(-1).values  # one relevant class among 10
    assert single.min() >= math.exp(5) / (math.exp(5) + 9) - 1e-6
    assert single.max() <= math.exp(10) / (math.exp(10) + 9) + 1e-6


def test_soft_cross_entropy_is_ce_for_one_hot():
    logits = torch.randn(7, 10)
    labels = torch.randint(0, 10, (7,))
    torch.testing.assert_close(sardfq.soft_cross_entropy(logits, F.one_hot(labels, 10).float()),
                               F.cross_entropy(logits, labels))


def test_tv_prior():
    assert sardfq.tv_l2(torch.ones(2, 3, 8, 8)).item() == 0.0
    x = torch.zeros(1, 1, 3, 3)
    x[0, 0, 1, 1] = 1.0  # each of the four difference maps has exactly two unit entries
    assert sardfq.tv_l2(x).item() == pytest.approx(4 * math.sqrt(2))
    for _ in range(5):
        v = sardfq.tv_target(32, 224, 224, generator=gen(_))
        assert 2500 <= v <= 3000
        small = sardfq.tv_target(32, 32, 32, generator=gen(_))
        assert small == pytest.approx(v * 32 / 224)  # sqrt of the pixel-count ratio
        assert sardfq.tv_target(8, 224, 224, generator=gen(_)) == pytest.approx(v / 2)
    assert sardfq.tv_loss(torch.ones(1, 1, 4, 4), 3.0).item() == 3.0


def slow_entropy(features, num_images, bandwidth=0.01, points=10):
    """The obvious computation with Python loops, for comparison."""
    groups = features.shape[0] // num_images
    sims = []
    for img in range(num_images):
        vals = []
        for g in range(groups):
            f = features[img * groups + g].double()
            for i in range(f.shape[0]):
                for j in range(f.shape[0]):
                    vals.append((f[i] @ f[j] / (f[i].norm() * f[j].norm())).item())
        sims.append(vals)
    lo, hi = min(min(v) for v in sims), max(max(v) for v in sims)
    xs = [lo + (hi - lo) * k / (points - 1) for k in range(points)]
    out = []
    for vals in sims:
        f = []
        for x in xs:
            pdf = sum(math.exp(-(x - s) ** 2 / (2 * bandwidth ** 2)) for s in vals) / len(vals)
            p = pdf / math.sqrt(2 * math.pi * bandwidth ** 2) + 1e-4
            f.append(-p * math.log(p))
        out.append(sum((xs[k + 1] - xs[k]) * (f[k] + f[k + 1]) / 2 for k in range(points - 1)))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("groups", [1, 3])  # 1: ViT; 3: Swin-like windows per image
def test_patch_similarity_entropy_matches_loops(groups):
    torch.manual_seed(0)
    features = torch.randn(4 * groups, 6, 5, dtype=torch.float64)
    fast = sardfq.patch_similarity_entropy(features, 4)
    torch.testing.assert_close(fast, slow_entropy(features, 4), rtol=1e-6, atol=1e-8)
    # near-duplicate patches: a peaked similarity distribution has lower entropy
    similar = features[:1].clone()
    similar[0, 1:] = similar[0, :1] + 0.3 * torch.randn(5, 5, dtype=torch.float64)
    both = torch.cat([features[:1], similar])
    h = sardfq.patch_similarity_entropy(both)
    torch.testing.assert_close(h, slow_entropy(both, 2), rtol=1e-6, atol=1e-8)


def test_patch_similarity_entropy_has_gradients():
    features = torch.randn(3, 9, 4, requires_grad=True)
    sardfq.patch_similarity_entropy(features).sum().backward()
    assert torch.isfinite(features.grad).all() and features.grad.abs().sum() > 0


def test_record_head_outputs_captures_attn_v_averaged_over_heads_and_cleans_up():
    torch.manual_seed(0)
    model, info = sardfq.load_model("deit_tiny_patch16_224", pretrained=False, img_size=32,
                                    patch_size=8, depth=2)
    x = torch.randn(2, 3, 32, 32)
    blk = model.blocks[1]
    expected = {}

    def manual(_m, inputs, out):
        # recompute attn @ v for block 1 the slow way
        y = inputs[0]
        b, n, c = y.shape
        qkv = blk.attn.qkv(y).reshape(b, n, 3, 3, c // 3).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attn = (q @ k.transpose(-2, -1) * blk.attn.scale).softmax(-1)
        expected["o"] = (attn @ v).mean(dim=1)[:, 1:]  # heads averaged, class token dropped

    h = blk.attn.register_forward_hook(manual)
    with sardfq.record_head_outputs(model) as captured:
        model(x)
    h.remove()
    assert set(captured) == {0, 1}
    assert captured[1].shape == (2, 16, 64)
    torch.testing.assert_close(captured[1], expected["o"], rtol=1e-4, atol=1e-5)
    assert all(len(b.attn.proj._forward_pre_hooks) == 0 for b in model.blocks)
