import pytest
import torch

import sardfq


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_regions_are_distinct_quadrants_between_one_and_k():
    counts = torch.zeros(5, dtype=torch.long)
    g = gen()
    for _ in range(50):
        image_index, quadrant = sardfq.draw_regions(6, 4, generator=g)
        assert image_index.tolist() == sorted(image_index.tolist())
        for img in range(6):
            qs = quadrant[image_index == img].tolist()
            assert 1 <= len(qs) <= 4 and len(set(qs)) == len(qs)
            assert all(0 <= q < 4 for q in qs)
            counts[len(qs)] += 1
    assert (counts[1:] > 30).all()  # every m in 1..4 occurs
    image_index, _ = sardfq.draw_regions(6, 1, generator=g)
    assert image_index.tolist() == list(range(6))
    with pytest.raises(ValueError):
        sardfq.draw_regions(2, 5, generator=g)


def test_crop_gradient_stays_inside_its_region():
    images = torch.randn(3, 3, 16, 16, requires_grad=True)
    image_index, quadrant = torch.tensor([0, 0, 2]), torch.tensor([1, 2, 3])
    crops = sardfq.crop_regions(images, image_index, quadrant)
    assert crops.shape == (3, 3, 16, 16)
    masks = sardfq.quadrant_mask(image_index, quadrant, 3, 16, 16)
    for j in range(3):
        images.grad = None
        (crops[j] * torch.randn_like(crops[j])).sum().backward(retain_graph=True)
        own = sardfq.quadrant_mask(image_index[j:j + 1], quadrant[j:j + 1], 3, 16, 16)[image_index[j]]
        grad = images.grad[image_index[j]]
        assert (grad * ~own == 0).all()  # nothing outside the quadrant
        assert (grad * own != 0).any()
        assert (images.grad[[i for i in range(3) if i != image_index[j]]] == 0).all()
    assert masks[1].sum() == 0 and masks[0].sum() == 2 * 64


def test_crop_shows_its_quadrant_upscaled():
    images = torch.zeros(1, 1, 8, 8)
    images[0, 0, :4, 4:] = 1.0  # quadrant 1: top right
    crop = sardfq.crop_regions(images, torch.tensor([0, 0]), torch.tensor([1, 2]))
    assert torch.allclose(crop[0], torch.ones(1, 8, 8))
    assert torch.allclose(crop[1], torch.zeros(1, 8, 8))
    with pytest.raises(ValueError, match="even"):
        sardfq.crop_regions(torch.zeros(1, 1, 7, 8), torch.tensor([0]), torch.tensor([0]))
