"""Datasets on generated fixtures in the real on-disk layouts: pairing, normalisation, holes, splits,
exact stream resume, preparation, and clear errors for missing / corrupt files."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from minilib.data import images as D
from minilib.data.prepare import prepare_main
from minilib.data.fixtures import make_celeba, make_cityscapes, make_maps

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    t = tmp_path_factory.mktemp("data")
    return {
        "official": make_cityscapes(t / "cs", "official"),
        "pix2pix": make_cityscapes(t / "cs_p2p", "pix2pix"),
        "maps": make_maps(t / "maps"),
        "celeba": make_celeba(t / "celeba"),
    }


def test_fixture_layouts(roots):
    r = roots["official"]
    photos = sorted(r.glob("leftImg8bit/train/*/*_leftImg8bit.png"))
    assert len(photos) == 4 and {p.parent.name for p in photos} == {"aachen", "bochum"}
    for p in photos:
        assert (r / "gtFine/train" / p.parent.name / p.name.replace("leftImg8bit", "gtFine_color")).is_file()
    assert Image.open(next(r.glob("gtFine/val/*/*_gtFine_color.png"))).mode == "RGBA"
    assert len(list((roots["pix2pix"] / "val").glob("*.jpg"))) == 2
    lines = (roots["celeba"] / "list_eval_partition.txt").read_text().split("\n")
    assert lines[0] == "000001.jpg 0" and Image.open(roots["celeba"] / "img_align_celeba/000001.jpg").size == (18, 22)


def test_official_pairs_are_label_to_photo(roots):
    ds = D.PairedImages(roots["official"], "train", size=32, flip=False, stats=([0.0] * 3, [1.0] * 3))
    photo_path, label_path = ds.pairs[1]
    x, y = ds[1]
    label = D.to_tensor(Image.open(label_path).convert("RGB").resize((32, 32), Image.NEAREST))
    photo = D.to_tensor(Image.open(photo_path).convert("RGB").resize((32, 32), Image.BICUBIC))
    assert torch.equal(x, label) and torch.allclose(y, photo * 2 - 1)


def test_side_by_side_split(tmp_path):
    (tmp_path / "train").mkdir()
    img = np.zeros((8, 16, 3), np.uint8)
    img[:, :8] = (200, 10, 10)  # photo (A) on the left
    img[:, 8:] = (10, 10, 200)  # map / label (B) on the right
    Image.fromarray(img).save(tmp_path / "train" / "1.png")
    ds = D.PairedImages(tmp_path, "train", "maps", size=8, flip=False, stats=([0.0] * 3, [1.0] * 3))
    x, y = ds[0]
    assert torch.allclose(x[:, 0, 0], torch.tensor([10, 10, 200]) / 255.0)
    assert torch.allclose((y[:, 0, 0] + 1) / 2, torch.tensor([200, 10, 10]) / 255.0)


@pytest.mark.parametrize("which", ["official", "pix2pix", "maps"])
def test_input_normalisation_zero_mean_unit_variance(roots, which):
    ds = D.PairedImages(roots[which], "train", "maps" if which == "maps" else "cityscapes", size=16, flip=False)
    xs = torch.stack([ds[i][0] for i in range(len(ds))])  # [N, 3, S, S]
    flat = xs.transpose(0, 1).flatten(1)
    assert torch.allclose(flat.mean(1), torch.zeros(3), atol=1e-5)
    assert torch.allclose(flat.std(1), torch.ones(3), atol=1e-4)
    val = D.PairedImages(roots[which], "val", "maps" if which == "maps" else "cityscapes", size=16)
    assert torch.equal(val.mean, ds.mean)  # val uses the training statistics


def test_flip_is_seeded_and_joint(roots):
    ds = D.PairedImages(roots["official"], "train", size=16)
    x0, y0 = D.PairedImages(roots["official"], "train", size=16, flip=False)[0]
    seen = set()
    for s in range(12):
        x, y = ds.item(0, torch.Generator().manual_seed(s))
        x2, _ = ds.item(0, torch.Generator().manual_seed(s))
        assert torch.equal(x, x2)
        flipped = torch.equal(x, x0.flip(-1))
        assert flipped or torch.equal(x, x0)
        assert torch.equal(y, y0.flip(-1) if flipped else y0)
        seen.add(flipped)
    assert seen == {True, False}


def test_celeba_official_split(roots):
    n = {s: len(D.celeba_split(roots["celeba"], s)) for s in ("train", "val", "test")}
    assert n == {"train": 7, "val": 2, "test": 3}
    with pytest.raises(ValueError, match="split must be"):
        D.celeba_split(roots["celeba"], "dev")


def test_celeba_sr_pairs(roots):
    ds = D.CelebASR(roots["celeba"], "train", size=64, scale=4, flip=False)
    x, y = ds[2]
    assert x.shape == (3, 16, 16) and y.shape == (3, 64, 64)
    assert x.min() >= -1 and x.max() <= 1 and y.min() >= -1 and y.max() <= 1
    hr = Image.fromarray(((y + 1) / 2 * 255).round().byte().permute(1, 2, 0).numpy())
    assert torch.allclose(x, D.to_tensor(hr.resize((16, 16), Image.BICUBIC)) * 2 - 1)


def test_celeba_inpainting_hole(roots):
    ds = D.CelebAInpaint(roots["celeba"], "train", size=128)
    train_imgs = [ds.load(i) for i in range(len(ds))]
    assert torch.allclose(ds.mean_pixel.flatten(), torch.stack(train_imgs).mean((0, 2, 3)), atol=1e-5)
    sides = set()
    for i in range(len(ds)):
        for s in range(3):
            x, y = ds.item(i, torch.Generator().manual_seed(100 * i + s))
            assert x.shape == (4, 128, 128) and y.min() >= 0 and y.max() <= 1
            m = x[3]
            rows, cols = m.sum(1).nonzero().flatten(), m.sum(0).nonzero().flatten()
            side = len(rows)
            assert len(cols) == side and 48 <= side <= 64 and m.sum() == side * side  # a square
            sides.add(side)
            inside = m.bool().expand(3, -1, -1)
            assert torch.equal(x[:3][~inside], y[~inside])
            assert torch.allclose(x[:3][inside].view(3, -1), ds.mean_pixel.view(3, 1).expand(3, side * side))
    assert len(sides) > 3
    val = D.CelebAInpaint(roots["celeba"], "val", size=128)
    assert torch.equal(val.mean_pixel, ds.mean_pixel)  # the *training-set* mean


def test_stream_exact_resume_and_epochs(roots):
    ds = D.CelebAInpaint(roots["celeba"], "train", size=32, hole=(8, 12))
    a = D.DatasetStream(ds, seed=5)
    full = [a.next(3) for _ in range(6)]  # 18 items: crosses two epoch boundaries (7 items per epoch)
    b = D.DatasetStream(ds, seed=5)
    part = [b.next(3) for _ in range(2)]
    state = json.loads(json.dumps(b.state_dict()))
    c = D.DatasetStream(ds, seed=5)
    c.load_state_dict(state)
    rest = part + [c.next(3) for _ in range(4)]
    for (x1, y1), (x2, y2) in zip(full, rest):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    # every epoch visits each item once
    s = D.DatasetStream(D.CelebASR(roots["celeba"], "train", 16, flip=False), seed=1)
    ys = s.next(14)[1]
    first, second = ys[:7].flatten(1), ys[7:].flatten(1)
    assert len({tuple(r.tolist()) for r in first}) == 7
    assert {tuple(r.tolist()) for r in first} == {tuple(r.tolist()) for r in second}
    assert not torch.equal(first, second)  # a new permutation each epoch
    with pytest.raises(ValueError, match="seed"):
        D.DatasetStream(ds, seed=6).load_state_dict(state)
    with pytest.raises(ValueError, match="batch_size"):
        a.next(0)


def test_stream_prefetch_threads_give_identical_batches(roots):
    ds = D.CelebAInpaint(roots["celeba"], "train", size=32, hole=(8, 12))
    a, b = D.DatasetStream(ds, seed=2), D.DatasetStream(ds, seed=2, workers=2, prefetch=5)
    for n in (3, 5, 4, 7, 2):
        (xa, ya), (xb, yb) = a.next(n), b.next(n)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    c = D.DatasetStream(ds, seed=2, workers=2)
    c.load_state_dict(a.state_dict())
    assert torch.equal(c.next(4)[0], a.next(4)[0])


def test_stream_rank_shards_are_disjoint(roots):
    ds = D.CelebASR(roots["celeba"], "train", 16, flip=False)
    orders = [D.DatasetStream(ds, seed=3, rank=r, world_size=2)._order(0) for r in range(2)]
    assert not set(orders[0]) & set(orders[1]) and sorted(orders[0] + orders[1]) == list(range(7))


def test_missing_and_corrupt_files(tmp_path, roots):
    with pytest.raises(D.DataError, match=r"does not exist.*leftImg8bit.*data/README.md"):
        D.PairedImages(tmp_path / "nope")
    bad = make_cityscapes(tmp_path / "cs", "official", n_train=2, n_val=1)
    label = next((bad / "gtFine/train").glob("*/*_gtFine_color.png"))
    label.unlink()
    with pytest.raises(D.DataError, match=f"missing label file {label}"):
        D.PairedImages(bad, stats=([0.0] * 3, [1.0] * 3))
    cel = make_celeba(tmp_path / "celeba", n=5)
    f = cel / "img_align_celeba" / "000001.jpg"
    f.write_bytes(f.read_bytes()[:60])  # truncated JPEG
    ds = D.CelebASR(cel, "train", 16)
    with pytest.raises(D.DataError, match=r"corrupt image file .*000001\.jpg.*img_align_celeba.*data/README.md"):
        ds[0]
    (cel / "img_align_celeba" / "000002.jpg").unlink()
    with pytest.raises(D.DataError, match=r"missing image file .*000002\.jpg"):
        ds[1]
    (cel / "list_eval_partition.txt").write_text("000001.jpg train\n")
    with pytest.raises(D.DataError, match="malformed line 1"):
        D.CelebASR(cel)
    (cel / "list_eval_partition.txt").unlink()
    with pytest.raises(D.DataError, match="list_eval_partition.txt"):
        D.CelebAInpaint(cel)


def test_prepare_cityscapes_roundtrip(tmp_path, roots):
    assert prepare_main(["cityscapes", "--src", str(roots["official"]), "--dst", str(tmp_path / "out"), "--size", "16"]) == 0
    stats = json.loads((tmp_path / "out" / "stats.json").read_text())
    src = D.PairedImages(roots["official"], "train", size=16, flip=False, stats=([0.0] * 3, [1.0] * 3))
    prep = D.PairedImages(tmp_path / "out", "train", size=16, flip=False)
    assert len(prep) == len(src) == 4 and sorted(p.name for p in (tmp_path / "out/val").iterdir()) == ["00000.png", "00001.png"]
    for i in range(len(src)):
        x0, y0 = src.load(i)
        x1, y1 = prep.load(i)
        assert torch.equal(x0, x1)  # PNG keeps label colours exact
        assert (y0 - y1).abs().max() <= 1 / 255 + 1e-6
    assert np.allclose(stats["input_mean"], prep.mean.flatten().tolist())
    assert prepare_main(["maps", "--src", str(tmp_path / "none"), "--dst", str(tmp_path / "o2")]) == 2


def test_prepare_celeba(tmp_path, roots):
    assert prepare_main(["celeba", "--src", str(roots["celeba"]), "--dst", str(tmp_path / "c"), "--size", "32"]) == 0
    assert Image.open(tmp_path / "c/img_align_celeba/000005.jpg").size == (32, 32)
    stats = json.loads((tmp_path / "c" / "stats.json").read_text())
    ds = D.CelebAInpaint(tmp_path / "c", "train", size=32, hole=(8, 12))
    assert torch.allclose(ds.mean_pixel.flatten(), torch.tensor(stats["mean_pixel"], dtype=torch.float32))
    direct = torch.stack([ds.load(i) for i in range(len(ds))]).mean((0, 2, 3))
    assert torch.allclose(direct, ds.mean_pixel.flatten(), atol=0.01)  # jpeg re-encoding


def test_prepare_help(capsys):
    with pytest.raises(SystemExit) as e:
        prepare_main(["--help"])
    assert e.value.code == 0 and "data/README.md" in capsys.readouterr().out


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    """An I;16 photo (values up to 65535) becomes 8 bits by scaling: mid-grey stays mid-grey (PIL's convert("RGB")
    clips every value above 255 to white)."""
    ramp = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    path = tmp_path / "photo16.png"
    Image.fromarray(ramp).save(path)
    assert Image.open(path).mode.startswith("I")
    img = np.asarray(D.load_image(path))
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert (img == 255).mean() < 0.01  # not white
    assert np.abs(img[..., 0].astype(float) - ramp / 257.0).max() <= 0.51
    floats = tmp_path / "float.tiff"
    Image.fromarray(np.random.default_rng(0).random((8, 8)).astype(np.float32)).save(floats)
    with pytest.raises(D.DataError, match=r"float.tiff.*floating-point"):
        D.load_image(floats)


def test_decompression_bomb_is_a_data_error_naming_the_file(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("L", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 64 x 64 > 2 x 100: PIL refuses to decode it
    with pytest.raises(D.DataError, match=r"bomb\.png.*too large"):
        D.load_image(path)


def test_data_error_is_the_one_minilib_error():
    from minilib import errors

    assert D.DataError is errors.DataError
    assert issubclass(D.DataError, errors.MinilibError) and issubclass(D.DataError, FileNotFoundError)


@pytest.mark.parametrize("name", ["../outside.jpg", "img/../../outside.jpg", "ABSOLUTE"])
def test_celeba_list_cannot_name_files_outside_the_dataset(tmp_path, name, capsys):
    """prepare copied any listed file into its output: a list naming ../x.jpg or an absolute path is refused, and
    nothing is written."""
    src = make_celeba(tmp_path / "src", n=5)
    secret = tmp_path / "outside.jpg"
    secret.write_bytes((src / "img_align_celeba" / "000001.jpg").read_bytes())
    listed = str(secret) if name == "ABSOLUTE" else name
    lines = (src / "list_eval_partition.txt").read_text().splitlines()
    (src / "list_eval_partition.txt").write_text("\n".join(lines + [f"{listed} 0"]) + "\n")
    assert prepare_main(["celeba", "--src", str(src), "--dst", str(tmp_path / "dst"), "--size", "8"]) == 2
    err = capsys.readouterr().err
    assert "outside" in err and listed in err
    assert not (tmp_path / "dst").exists()
    with pytest.raises(D.DataError, match="outside"):
        D.celeba_split(src, "train")


def test_prepare_refuses_escaping_symlinks(tmp_path, capsys):
    src = make_celeba(tmp_path / "src", n=5)
    (tmp_path / "private").mkdir()
    target = tmp_path / "private" / "x.jpg"
    target.write_bytes((src / "img_align_celeba" / "000001.jpg").read_bytes())
    (src / "img_align_celeba" / "000001.jpg").unlink()
    (src / "img_align_celeba" / "000001.jpg").symlink_to(target)
    assert prepare_main(["celeba", "--src", str(src), "--dst", str(tmp_path / "dst"), "--size", "8"]) == 2
    assert "outside --src" in capsys.readouterr().err


@pytest.mark.parametrize("size", ["0", "-4", "x"])
def test_prepare_size_must_be_positive(tmp_path, roots, size, capsys):
    with pytest.raises(SystemExit) as e:
        prepare_main(["celeba", "--src", str(roots["celeba"]), "--dst", str(tmp_path / "d"), "--size", size])
    assert e.value.code == 2 and "--size" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_prepare_dst_may_not_be_or_lie_inside_src(tmp_path, capsys):
    src = make_celeba(tmp_path / "src", n=5)
    before = sorted(p.relative_to(src) for p in src.rglob("*"))
    for dst in (src, src / "out", src / "img_align_celeba"):
        assert prepare_main(["celeba", "--src", str(src), "--dst", str(dst), "--size", "8"]) == 2
        assert "--dst" in capsys.readouterr().err
    assert sorted(p.relative_to(src) for p in src.rglob("*")) == before
