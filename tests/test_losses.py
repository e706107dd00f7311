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


def _batch(n=16, d=32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    img, addr, cap = (F.normalize(torch.randn(n, d, generator=gen), dim=1) for _ in range(3))
    ids = torch.randint(0, 5, (n,), generator=gen)
    coords = torch.rand(n, 2, generator=gen, dtype=torch.float64) * 500
    return img, addr, cap, ids, coords


TIGHT = {"rtol": 1e-6, "atol": 1e-7}


@pytest.mark.parametrize("label_aware", [False, True])
def test_loss_is_fp32_under_bf16_autocast(label_aware):
    img, addr, cap, ids, coords = _batch()
    scale = torch.tensor(math.log(100.0))  # CLIP's trained temperature: large logits show bf16 rounding
    loss = AddressCLIPLoss(label_aware=label_aware)
    reference = loss(img, scale, addr, cap, ids, coords)          # no autocast, fp32 throughout
    with torch.autocast("cpu", dtype=torch.bfloat16):
        # the guard is needed: without it a matmul here runs in bf16, and so do the unguarded terms
        assert (img @ addr.T).dtype == torch.bfloat16
        assert geo_loss(img, coords).dtype == torch.bfloat16
        unguarded = {"address_loss": info_nce(img, addr, scale, ids if label_aware else None),
                     "caption_loss": 0.2 * info_nce(img, cap, scale), "geo_loss": 0.8 * geo_loss(img, coords)}
        got = loss(img, scale, addr, cap, ids, coords)
    assert set(got) == set(reference) == {"address_loss", "caption_loss", "geo_loss"}
    for name, value in got.items():
        assert value.dtype == torch.float32, name
        torch.testing.assert_close(value, reference[name], **TIGHT)
        assert not torch.allclose(unguarded[name].float(), reference[name], **TIGHT), f"{name}: test has no teeth"


def test_bf16_features_are_cast_up_and_still_get_gradients():
    img, addr, cap, ids, coords = _batch(seed=1)
    img16, addr16, cap16 = (t.bfloat16().requires_grad_(True) for t in (img, addr, cap))
    scale16 = torch.tensor(math.log(100.0), dtype=torch.bfloat16)
    loss = AddressCLIPLoss()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(img16, scale16, addr16, cap16, ids, coords)
    # the same bf16 values, upcast by hand and computed in fp32 without autocast
    expected = loss(img16.detach().float(), scale16.float(), addr16.detach().float(), cap16.detach().float(), ids, coords)
    for name, value in got.items():
        assert value.dtype == torch.float32, name
        torch.testing.assert_close(value, expected[name], **TIGHT)
    sum(got.values()).backward()
    assert img16.grad is not None and img16.grad.dtype == torch.bfloat16 and img16.grad.abs().sum() > 0


@pytest.mark.parametrize("form", ["similarity", "literal"])
def test_geo_loss_across_cities_matches_within_each_city(form):
    """Joint multi-city training: each city normalised on its own, pairs of two cities left out. The loss is then
    the pair-weighted mean of each city's own loss, wherever the cities lie (two UTM zones, 300 km apart)."""
    torch.manual_seed(0)
    feats = torch.nn.functional.normalize(torch.randn(7, 4), dim=-1)
    a = torch.tensor([[583000.0, 4474000.0], [583400.0, 4474100.0], [584000.0, 4475000.0], [583100.0, 4474900.0]],
                     dtype=torch.float64)
    b = torch.tensor([[551000.0, 4180000.0], [551500.0, 4180200.0], [552000.0, 4181000.0]], dtype=torch.float64)
    cities = torch.tensor([0, 1, 0, 1, 0, 0, 1])  # shuffled, as batches are
    coords = torch.empty(7, 2, dtype=torch.float64)
    coords[cities == 0], coords[cities == 1] = a, b
    own = {c: geo_loss(feats[cities == c], coords[cities == c], form) for c in (0, 1)}
    expected = (16 * own[0] + 9 * own[1]) / 25
    assert geo_loss(feats, coords, form, cities).item() == pytest.approx(expected.item(), rel=1e-6)
    coords[cities == 1] += torch.tensor([300000.0, -300000.0], dtype=torch.float64)
    assert geo_loss(feats, coords, form, cities).item() == pytest.approx(expected.item(), rel=1e-6)
    # one city: the same bits as without cities (single-city runs do not move)
    assert torch.equal(geo_loss(feats, coords, form, torch.zeros(7, dtype=torch.long)), geo_loss(feats, coords, form))
    # without cities, the two cities' distance squashes each city's own: another, larger loss
    assert geo_loss(feats, coords, form).item() != pytest.approx(expected.item(), rel=1e-3)


def test_joined_tables_say_which_city_each_row_comes_from(tiny_dataset):
    from addressclip.data import SplitTable
    from addressclip.datasets import load_dataset

    one = SplitTable.from_dataset(load_dataset(tiny_dataset), "train")
    assert torch.equal(one.cities, torch.zeros(len(one.paths), dtype=torch.long))
    two = SplitTable.concat([one, SplitTable.from_dataset(load_dataset(tiny_dataset), "val")])
    n = len(one.paths)
    assert two.cities.tolist() == [0] * n + [1] * (len(two.paths) - n)
