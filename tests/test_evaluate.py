import pytest
import torch
from torch.utils.data import TensorDataset

import sardfq


class Fixed(torch.nn.Module):
    """Returns preset logits, one row per call position."""

    def __init__(self, logits):
        super().__init__()
        self.logits = logits

    def forward(self, x):
        return self.logits[x[:, 0].long()]


def test_top1_top5_and_agreement_are_counted_exactly():
    logits = torch.tensor([[9., 8, 7, 6, 5, 4], [0, 9, 1, 2, 3, 4], [1, 2, 3, 4, 5, 9]])
    index = torch.arange(3).float().view(3, 1)
    labels = torch.tensor([0, 5, 0])  # hit top-1, hit top-5 only, miss both
    data = TensorDataset(index, labels)
    result = sardfq.evaluate(Fixed(logits), data, batch_size=2, progress=False,
                             reference=Fixed(torch.flip(logits, dims=[0])))
    assert result.top1 == 1 / 3 and result.top5 == 2 / 3 and result.n_images == 3
    assert result.agreement == 1 / 3  # only the middle row is its own mirror
    assert set(result.to_dict()) >= {"model", "top1", "top5", "n_images", "seconds"}


@pytest.mark.slow
def test_teacher_on_a_spread_of_test_images(cifar_root, teacher):
    model, info = teacher
    data = sardfq.eval_dataset(info, model, cifar_root, limit=500)
    result = sardfq.evaluate(model, data, progress=False, reference=model)
    assert result.n_images == 500 and result.agreement == 1.0
    assert 0.65 < result.top1 < 0.82 and result.top5 > result.top1


def test_reference_logits_give_the_same_outcomes_as_the_reference_model(one_torch_thread):
    import sardfq
    from sardfq.evaluate import reference_outputs

    model, info = sardfq.load_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2, num_classes=10)
    other, _ = sardfq.load_model("vit_tiny_patch16_224", pretrained=False, img_size=32, depth=2, num_classes=10)
    g = torch.Generator().manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(70, 3, 32, 32, generator=g), torch.randint(0, 10, (70,), generator=g))
    direct = sardfq.evaluate(other, data, batch_size=16, reference=model, progress=False)
    cached = sardfq.evaluate(other, data, batch_size=16, reference_logits=reference_outputs(model, data, batch_size=16),
                             progress=False)
    assert (direct.per_image.agree == cached.per_image.agree).all() and direct.agreement == cached.agreement
    assert (direct.per_image.kl == cached.per_image.kl).all() and direct.kl == cached.kl
    assert direct.agreement < 1  # two random models disagree somewhere: the test can fail
    with pytest.raises(sardfq.ConfigError, match="rows"):
        sardfq.evaluate(other, data, reference_logits=torch.zeros(3, 10), progress=False)
