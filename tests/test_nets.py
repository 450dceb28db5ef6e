"""Image networks: shapes, the noise is wired in (every noise map changes the output), predictor heads
and clamping, the GLCIC paste / local crop, PatchGAN receptive field, bad inputs."""
import pytest
import torch

from minilib.nets.dcgan import DCGANDiscriminator, DCGANGenerator
from minilib.nets.glcic import GLCICDiscriminator, GLCICGenerator, GLCICPredictor, hole_boxes
from minilib.nets.pix2pix import PatchDiscriminator, Pix2PixGenerator, Pix2PixPredictor
from minilib.nets.srgan import SRGANDiscriminator, SRGANGenerator, SRGANPredictor

torch.set_num_threads(1)


def _glcic_x(b=2, s=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, 4, s, s, generator=g)
    x[:, 3] = 0
    x[0, 3, 2:8, 3:9] = 1
    x[1, 3, 9:15, 8:14] = 1
    return x


TINY = {
    "pix2pix": (lambda: Pix2PixGenerator(3, 3, image_size=32, n_down=5, ngf=4, noise_channels=2),
                lambda: Pix2PixPredictor(3, 3, image_size=32, n_down=5, ngf=4),
                lambda: PatchDiscriminator(3, 3, ndf=4), lambda b: torch.randn(b, 3, 32, 32), (3, 32, 32)),
    "srgan": (lambda: SRGANGenerator(lr_size=8, width=8, n_blocks=2, noise_channels=2),
              lambda: SRGANPredictor(lr_size=8, width=8, n_blocks=2),
              lambda: SRGANDiscriminator(width=4), lambda b: torch.rand(b, 3, 8, 8) * 2 - 1, (3, 32, 32)),
    "glcic": (lambda: GLCICGenerator(image_size=16, width=4, noise_channels=2),
              lambda: GLCICPredictor(image_size=16, width=4),
              lambda: GLCICDiscriminator(image_size=16, width=4), lambda b: _glcic_x(b), (3, 16, 16)),
}


@pytest.mark.parametrize("task", list(TINY))
def test_shapes_and_contract(task):
    mk_g, mk_p, mk_d, mk_x, event = TINY[task]
    torch.manual_seed(0)
    G, P, D = mk_g(), mk_p(), mk_d()
    x = mk_x(2)
    z = G.noise(2)
    assert isinstance(z, tuple) and all(t.shape[0] == 2 for t in z)
    y = G(x, z)
    assert y.shape == (2, *event)
    c, ld = P(x)
    assert c.shape == ld.shape == (2, *event)
    logits = D(x, y)
    assert logits.shape[0] == 2 and torch.isfinite(logits).all()
    # generator= gives reproducible noise
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert all(torch.equal(a, b) for a, b in zip(G.noise(2, generator=g1), G.noise(2, generator=g2)))


@pytest.mark.parametrize("task", list(TINY))
def test_every_noise_map_changes_output(task):
    mk_g, _, _, mk_x, _ = TINY[task]
    torch.manual_seed(0)
    G = mk_g()  # train mode: BatchNorm keeps activations O(1) at init
    x = mk_x(2)
    z = G.noise(2, generator=torch.Generator().manual_seed(1))
    y = G(x, z)
    for i in range(len(z)):
        z2 = list(z)
        z2[i] = torch.randn_like(z[i])
        y2 = G(x, tuple(z2))
        assert (y2 - y).abs().max() > 1e-4, f"noise map {i} does not reach the output"
    zr = tuple(t.clone().requires_grad_(True) for t in z)
    G(x, zr).sum().backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in zr)


@pytest.mark.parametrize("task", list(TINY))
def test_predictor_heads_are_clamped(task):
    _, mk_p, _, mk_x, _ = TINY[task]
    P = mk_p().eval()
    x = mk_x(2)
    last = {"pix2pix": lambda: P.net.up[0][1], "srgan": lambda: P.net.tail, "glcic": lambda: P.net.dec[-1]}[task]()
    inside = x[:, 3:4].expand(-1, 3, -1, -1) > 0.5 if task == "glcic" else torch.ones(2, *P(x)[1].shape[1:], dtype=torch.bool)
    for bias, expected in ((100.0, 0.0), (-100.0, -6.0)):
        with torch.no_grad():
            last.bias.fill_(bias)
        c, ld = P(x)
        assert torch.allclose(ld[inside], torch.tensor(expected))
        lo = 0.0 if task == "glcic" else -1.0
        assert c.min() >= lo and c.max() <= 1.0
    with torch.no_grad():
        last.bias.fill_(-3.0)
        last.weight.zero_()
    c, ld = P(x)
    if task == "glcic":  # inside the hole the raw head; outside the known pixels have dispersion exp(-6)
        mask = x[:, 3:4].expand_as(ld) > 0.5
        assert torch.allclose(ld[mask], torch.tensor(-3.0)) and torch.allclose(ld[~mask], torch.tensor(-6.0))
    else:
        assert torch.allclose(ld, torch.tensor(-3.0)) and torch.allclose(c, torch.tanh(torch.tensor(-3.0)).expand_as(c))


def test_pix2pix_paper_sizes():
    G = Pix2PixGenerator()
    assert G.net.noise_shapes() == [(32, 1, 1), (32, 2, 2), (32, 4, 4)]
    assert len(G.net.down) == 8
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in G.net.down.modules()) == 6
    G.eval()
    with torch.no_grad():
        y = G(torch.randn(1, 3, 256, 256), G.noise(1))
    assert y.shape == (1, 3, 256, 256)
    d = PatchDiscriminator(ndf=8).eval()
    assert d(torch.randn(1, 3, 256, 256), y).shape == (1, 30, 30)


def test_pix2pix_parameter_counts_match_reference():
    """pytorch-CycleGAN-and-pix2pix prints 54.414 M for unet_256 and 2.769 M for the basic PatchGAN."""
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    noise_extra = 3 * 32 * 512 * 4 * 4  # 32 extra input channels of the three innermost ConvTranspose(4x4, 512 out)
    assert round((n(Pix2PixGenerator()) - noise_extra) / 1e6, 3) == 54.414
    assert round(n(PatchDiscriminator()) / 1e6, 3) == 2.769


def test_patchgan_receptive_field_is_70():
    D = PatchDiscriminator(1, 1, ndf=2).eval()
    x = torch.zeros(1, 1, 128, 128, requires_grad=True)
    y = torch.zeros(1, 1, 128, 128)
    out = D(x, y)
    i = out.shape[1] // 2
    out[0, i, i].backward()
    rows = x.grad[0, 0].abs().sum(1).nonzero()
    cols = x.grad[0, 0].abs().sum(0).nonzero()
    assert rows.max() - rows.min() + 1 == 70 and cols.max() - cols.min() + 1 == 70


def test_srgan_paper_sizes():
    G = SRGANGenerator()
    assert G.net.noise_shapes() == [(16, 16, 16)] * 16
    G.eval()
    with torch.no_grad():
        y = G(torch.rand(1, 3, 16, 16) * 2 - 1, G.noise(1))
    assert y.shape == (1, 3, 64, 64) and y.abs().max() <= 1
    assert SRGANDiscriminator(conditional=True, width=4)(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 64, 64)).shape == (2,)


def test_glcic_paper_sizes_and_dilations():
    G = GLCICGenerator()
    assert G.net.noise_shapes() == [(32, 32, 32)] * 3
    dil = [m.dilation[0] for m in G.net.mid.modules() if isinstance(m, torch.nn.Conv2d)]
    assert dil == [1, 2, 4, 8, 16, 1, 1]
    ins = [m.in_channels for m in G.net.mid.modules() if isinstance(m, torch.nn.Conv2d)]
    assert ins == [256 + 32, 256 + 32, 256 + 32, 256, 256, 256, 256]
    x = torch.rand(1, 4, 128, 128)
    x[0, 3] = 0
    x[0, 3, 30:90, 40:100] = 1
    with torch.no_grad():
        y = G.eval()(x, G.noise(1))
        assert y.shape == (1, 3, 128, 128)
        assert GLCICDiscriminator(width=8).eval()(x, y).shape == (1,)


def test_glcic_pastes_into_hole_only():
    G = GLCICGenerator(image_size=16, width=4, noise_channels=2)
    x = _glcic_x()
    y1, y2 = G(x, G.noise(2)), G(x, G.noise(2))
    out = x[:, 3:4].expand(-1, 3, -1, -1) < 0.5
    assert torch.equal(y1[out], x[:, :3][out]) and torch.equal(y2[out], x[:, :3][out])
    assert (y1 - y2)[~out].abs().max() > 1e-4


def test_glcic_local_crop():
    x = torch.zeros(3, 4, 32, 32)
    x[0, 3, 4:10, 6:12] = 1  # centre (7, 9) -> top-left (-1, 1) clamped to (0, 1)
    x[1, 3, 20:30, 22:32] = 1  # centre (25, 27) -> (17, 19) clamped to (16, 16)
    top, left = hole_boxes(x[:, 3:4], 16)  # image 2: no hole -> centred window
    assert top.tolist() == [0, 16, 8] and left.tolist() == [1, 16, 8]
    D = GLCICDiscriminator(image_size=32, width=2)
    y = torch.randn(3, 3, 32, 32, requires_grad=True)
    crop = D.crop_local(x, y)
    assert torch.equal(crop[0], y[0, :, 0:16, 1:17]) and torch.equal(crop[1], y[1, :, 16:32, 16:32])
    crop.sum().backward()
    assert y.grad.sum() == 3 * 3 * 16 * 16
    assert D(x, y).shape == (3,)


def test_dcgan():
    G, D = DCGANGenerator(nz=8, ngf=4), DCGANDiscriminator(ndf=4)
    z = G.noise(2)
    y = G(torch.zeros(2, 0), z)
    assert y.shape == (2, 3, 64, 64) and D(torch.zeros(2, 0), y).shape == (2,)
    assert (G(torch.zeros(2, 0), G.noise(2)) - y).abs().max() > 1e-4
    with pytest.raises(ValueError, match="image_size"):
        DCGANGenerator(image_size=48)


def test_bad_inputs():
    G = Pix2PixGenerator(image_size=32, n_down=5, ngf=4)
    with pytest.raises(ValueError, match="x must have shape"):
        G(torch.randn(2, 1, 32, 32), G.noise(2))
    with pytest.raises(ValueError, match="32x32"):
        G(torch.randn(2, 3, 64, 64), G.noise(2))
    with pytest.raises(ValueError, match="z must hold 3"):
        G(torch.randn(2, 3, 32, 32), G.noise(2)[:2])
    with pytest.raises(ValueError, match=r"z\[0\] must have shape"):
        G(torch.randn(2, 3, 32, 32), G.noise(3))
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        G([[0.0]], G.noise(2))
    with pytest.raises(ValueError, match="multiple of"):
        Pix2PixGenerator(image_size=48, n_down=5)
    with pytest.raises(ValueError, match="noise"):
        SRGANGenerator(noise_channels=0)
    with pytest.raises(ValueError, match="n must be"):
        G.noise(0)
    D = GLCICDiscriminator(image_size=16, width=2)
    with pytest.raises(ValueError, match="x must have shape"):
        D(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16))


@pytest.mark.parametrize("train_mode", [True, False])
def test_pix2pix_encodes_each_input_once_with_the_same_samples_and_gradients(train_mode):
    """G(x, z, repeat=K) equals G(x repeated K times, z), values and gradients, in train and eval mode; sample_k
    uses it, so the encoder's first layer sees B inputs, not B·K."""
    from minilib.train import sample_k

    torch.manual_seed(0)
    G = Pix2PixGenerator(1, 3, image_size=32, n_down=5, ngf=8, noise_channels=4, noise_levels=2)
    G.train(train_mode)
    x = torch.randn(3, 1, 32, 32)
    z = G.noise(3 * 4, generator=torch.Generator().manual_seed(1))
    y_rep = G(x, z, repeat=4)
    (y_rep ** 2).mean().backward()
    g_rep = [p.grad.clone() for p in G.parameters()]
    G.zero_grad()
    y_full = G(x.repeat_interleave(4, dim=0), z)
    (y_full ** 2).mean().backward()
    assert y_rep.shape == (12, 3, 32, 32)
    torch.testing.assert_close(y_rep, y_full, rtol=1e-5, atol=1e-5)
    for a, b in zip(g_rep, (p.grad for p in G.parameters())):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    seen = []
    hook = G.net.down[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    samples, _ = sample_k(G, x, 4)
    hook.remove()
    assert seen == [3] and samples.shape == (3, 4, 3, 32, 32)
    with pytest.raises(ValueError, match="repeat"):
        G(x, z, repeat=0)
    with pytest.raises(ValueError, match="z\\[0\\] must have shape"):
        G(x, z, repeat=2)  # noise for 12 samples, 6 asked
