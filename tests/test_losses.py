import math

import pytest
import torch
import torch.nn.functional as F

from addressclip.losses import AddressCLIPLoss, geo_distance_matrix, geo_loss, info_nce


def _unit(*rows):
    return F.normalize(torch.tensor(rows, dtype=torch.float64), dim=1)


def test_info_nce_matches_hand_computation():
    img = _unit([1.0, 0.0], [0.0, 1.0])
    txt = _unit([1.0, 0.0], [1.0, 1.0])
    scale = torch.tensor(math.log(2.0), dtype=torch.float64)  # exp -> 2
    s = 1 / math.sqrt(2)
    logits = [[2 * 1.0, 2 * s], [2 * 0.0, 2 * s]]
    # image->text rows, text->image columns, by hand
    i2t = -(logits[0][0] - math.log(math.exp(logits[0][0]) + math.exp(logits[0][1])))
    i2t += -(logits[1][1] - math.log(math.exp(logits[1][0]) + math.exp(logits[1][1])))
    t2i = -(logits[0][0] - math.log(math.exp(logits[0][0]) + math.exp(logits[1][0])))
    t2i += -(logits[1][1] - math.log(math.exp(logits[0][1]) + math.exp(logits[1][1])))
    expected = (i2t / 2 + t2i / 2) / 2
    assert info_nce(img, txt, scale).item() == pytest.approx(expected, abs=1e-12)


def test_label_aware_is_cross_entropy_over_distinct_addresses():
    # images 0 and 1 share an address (identical texts); image 2 has its own
    img = _unit([1.0, 0.2], [0.9, 0.1], [0.0, 1.0])
    txt = _unit([1.0, 0.0], [1.0, 0.0], [0.0, 1.0])
    scale = torch.tensor(0.0, dtype=torch.float64)
    labels = torch.tensor([7, 7, 3])
    distinct = txt[[2, 0]]                      # classes sorted by label: 3, 7
    logits = img @ distinct.T                   # [3 images, 2 addresses]
    i2t = F.cross_entropy(logits, torch.tensor([1, 1, 0]))
    p = logits.T.softmax(1)                     # each address over the 3 images
    t2i = (-(p[0, 2]).log() - (p[1, 0] + p[1, 1]).log()) / 2
    got = info_nce(img, txt, scale, labels)
    assert got.item() == pytest.approx(((i2t + t2i) / 2).item(), abs=1e-12)
    # plain InfoNCE treats the same-address image as a negative, so it is larger here
    assert info_nce(img, txt, scale).item() > got.item()
    # without repeated addresses, label-aware equals plain InfoNCE
    assert info_nce(img, txt[[0, 2, 1]] * 0 + _unit([1, 0], [0, 1], [1, 1]), scale, torch.tensor([0, 1, 2])).item() == \
        pytest.approx(info_nce(img, _unit([1, 0], [0, 1], [1, 1]), scale).item(), abs=1e-12)


def test_geo_distance_matrix_is_normalised_manhattan():
    coords = torch.tensor([[100.0, 1000.0], [300.0, 1000.0], [100.0, 1400.0]], dtype=torch.float64)
    d = geo_distance_matrix(coords)
    # x range 200, y range 400: (0,0), (1,0), (0,1)
    expected = torch.tensor([[0, 1, 1], [1, 0, 2], [1, 2, 0]], dtype=torch.float32)
    assert torch.allclose(d, expected)


def test_geo_loss_values_both_forms():
    feats = _unit([1.0, 0.0], [0.0, 1.0])
    coords = torch.tensor([[0.0, 0.0], [10.0, 10.0]], dtype=torch.float64)
    # S = [[1,0],[0,1]], D = [[0,2],[2,0]]
    literal = ((1 - 0) ** 2 * 2 + (0 - 2) ** 2 * 2) / 4
    similarity = ((1 - 1) ** 2 * 2 + (0 - (1 - 2)) ** 2 * 2) / 4
    assert geo_loss(feats.float(), coords, "literal").item() == pytest.approx(literal)
    assert geo_loss(feats.float(), coords, "similarity").item() == pytest.approx(similarity)
    with pytest.raises(ValueError, match="valid: similarity, literal"):
        geo_loss(feats.float(), coords, "nope")


def test_geo_loss_gradient_direction():
    # images 0 and 1 are 1 m apart, image 2 is far; features start orthogonal
    coords = torch.tensor([[0.0, 0.0], [1.0, 1.0], [500.0, 500.0]], dtype=torch.float64)
    raw = torch.eye(3)

    def step(form):
        x = raw.clone().requires_grad_(True)
        geo_loss(F.normalize(x, dim=1), coords, form).backward()
        y = F.normalize(x.detach() - 0.1 * x.grad, dim=1)
        return (y[0] @ y[1]).item(), (y[0] @ y[2]).item()

    near, far = step("similarity")
    assert near > 0.01 and far < -0.01           # close images pulled together, far ones pushed apart
    near, far = step("literal")
    assert far > near                             # the literal form pulls far images together more


def test_combined_loss_weights_and_ablation_keys():
    torch.manual_seed(0)
    img, addr, cap = (F.normalize(torch.randn(4, 8), dim=1) for _ in range(3))
    ids, coords = torch.tensor([0, 0, 1, 2]), torch.rand(4, 2, dtype=torch.float64) * 100
    scale = torch.tensor(math.log(10.0))
    out = AddressCLIPLoss()(img, scale, addr, cap, ids, coords)
    assert set(out) == {"address_loss", "caption_loss", "geo_loss"}
    assert out["caption_loss"].item() == pytest.approx(0.2 * info_nce(img, cap, scale).item(), rel=1e-6)
    assert out["geo_loss"].item() == pytest.approx(0.8 * geo_loss(img, coords).item(), rel=1e-6)
    only = AddressCLIPLoss({"caption": 0, "geography": 0})(img, scale, addr, None, ids, coords)
    assert set(only) == {"address_loss"}
    with pytest.raises(ValueError, match="unknown loss terms"):
        AddressCLIPLoss({"adress": 1.0})
