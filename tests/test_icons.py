import copy

import numpy as np
import pytest
import torch

from generator.collect import capture
from generator.icons import IconSpec, fidelity, render_icons
from generator.speedups import network
from generator.icons import render as render_module
from generator.icons.param import FourierImage
from generator.icons.transform import _grids, random_views, resample, robust_transform


# The renderer's tests run on every device at hand: the CUDA path takes the same checks as the CPU's.
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                  reason="needs a CUDA GPU"))]


def _real_directions(model, layer, image_dir, count=4):
    """Mean activations of real images at the layer's centre: directions a network actually produces."""
    from generator.images import CropLoader, find_images, plan_samples

    plan = plan_samples(find_images(image_dir), 1, 0)
    x = model.normalize(CropLoader(plan, model.input_size).load(range(count)))
    with torch.no_grad():
        acts = capture(model.net, {layer: model.layer(layer)}, x)[layer]
    _, _, h, w = acts.shape
    return acts[:, :, h // 2, w // 2].numpy()


def test_param_and_transform_shapes_and_range():
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        image = FourierImage(3, 32, g)()
    assert image.shape == (3, 3, 32, 32)
    assert 0 < image.min().item() and image.max().item() < 1
    view = robust_transform(image, g)
    assert view.shape == image.shape
    assert not torch.equal(view, image)


def test_random_views_come_with_their_inverse_maps():
    yy, xx = torch.meshgrid(torch.linspace(0, 4, 64), torch.linspace(0, 4, 64), indexing="ij")
    smooth = torch.stack([torch.sin(xx + 2 * yy), torch.cos(xx - yy), torch.sin(yy)])[None].repeat(6, 1, 1, 1)
    grid, inverse = random_views(6, 64, torch.Generator().manual_seed(0))
    view = resample(smooth, grid, inverse)
    assert (view - smooth).abs().mean() > 0.05  # the views move the image
    back = resample(view, inverse, grid)
    assert (back - smooth)[..., 16:48, 16:48].abs().max() < 0.02  # and the inverse maps move it back


def test_the_resample_passes_gradients_back_through_the_inverse_map():
    # For a shift by whole pixels, resampling by the inverse map is exactly the gradient; inside the
    # image, it must match autograd's own gradient of grid_sample.
    shifts = torch.tensor([[4 / 32, -6 / 32], [-2 / 32, 0.0]])
    identity = torch.eye(2).repeat(2, 1, 1)
    grid, inverse = _grids(identity, shifts, 32), _grids(identity, -shifts, 32)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), requires_grad=True)
    weights = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    (ours,) = torch.autograd.grad((resample(images, grid, inverse) * weights).sum(), images)
    view = torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    (exact,) = torch.autograd.grad((view * weights).sum(), images)
    torch.testing.assert_close(ours[..., 4:28, 4:28], exact[..., 4:28, 4:28])
    assert ours.abs().sum() > 0


@pytest.mark.parametrize("device", DEVICES)
def test_icons_for_real_directions_beat_noise_by_a_clear_margin(tiny_model, image_dir, device):
    layer = "features.2"  # before its ReLU: random images point anywhere, not along the positive cone
    directions = _real_directions(tiny_model, layer, image_dir)
    settings = IconSpec(size_px=32, steps=48, batch_size=8, learning_rate=0.05)
    icons, fid, objective, mask = render_icons(tiny_model, layer, directions, settings, seed=0, device=device)
    assert mask is None  # kept only where the spec asks for it (test_masks.py)
    assert (objective > 0).all()
    assert icons.shape == (4, 32, 32, 3) and icons.dtype == np.uint8
    assert icons.std() > 5  # not a flat image
    noise = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    noise_fid = fidelity(tiny_model, layer, noise, torch.from_numpy(directions))
    assert fid.mean() > noise_fid.mean().item() + 0.25
    assert fid.min() > 0.4
    icon_tensor = torch.from_numpy(icons).permute(0, 3, 1, 2).float() / 255
    recomputed = fidelity(tiny_model, layer, icon_tensor, torch.from_numpy(directions))
    np.testing.assert_allclose(recomputed.numpy(), fid, atol=0.05)  # stored fidelity matches the saved icon


@pytest.mark.parametrize("device", DEVICES)
def test_same_seed_gives_the_same_icons(tiny_model, image_dir, device):
    directions = _real_directions(tiny_model, "features.2", image_dir, 3)
    settings = IconSpec(size_px=24, steps=6, batch_size=8)
    a, b, c = (render_icons(tiny_model, "features.2", directions, settings, seed=seed, device=device)
               for seed in (5, 5, 6))
    if device == "cpu":
        assert a[0].tobytes() == b[0].tobytes()
    else:
        # Bit-identical only on the CPU: CUDA's resample and convolution gradients add atomically.
        assert np.abs(a[0].astype(int) - b[0].astype(int)).mean() < 1
    assert np.abs(a[0].astype(int) - c[0].astype(int)).mean() > 2


@pytest.mark.parametrize("device", DEVICES)
def test_cache_renders_each_batch_once(tmp_path, tiny_model, image_dir, monkeypatch, device):
    directions = _real_directions(tiny_model, "features.2", image_dir, 4)
    settings = IconSpec(size_px=24, steps=3, batch_size=2)
    calls = []
    original = render_module._render_batch
    monkeypatch.setattr(render_module, "_render_batch", lambda *a, **k: calls.append(1) or original(*a, **k))

    def render(dirs, s):
        return render_icons(tiny_model, "features.2", dirs, s, cache_dir=tmp_path, device=device)

    first = render(directions, settings)
    assert len(calls) == 2
    again = render(directions, settings)
    assert len(calls) == 2  # nothing re-rendered
    assert first[0].tobytes() == again[0].tobytes()
    # Adding directions renders only the new batch; changing a setting renders all again.
    render(np.concatenate([directions, directions[:2] * 2]), settings)
    assert len(calls) == 3
    render(directions, IconSpec(24, 4, batch_size=2))
    assert len(calls) == 5


def test_folding_batch_norms_keeps_the_layer_output():
    from torch import nn

    from generator.collect import capture
    from generator.speedups.fold import fold_batchnorm

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, groups=8, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 4, 1), nn.BatchNorm2d(4))
    for bn in (net[1], net[4], net[7]):
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.uniform_(-1, 1)
    net.eval()
    x = torch.randn(2, 3, 12, 12)
    folded = fold_batchnorm(net, "6", x)
    assert isinstance(folded[1], nn.Identity) and isinstance(folded[4], nn.Identity)
    assert isinstance(net[1], nn.BatchNorm2d)  # the original is untouched
    with torch.no_grad():
        torch.testing.assert_close(capture(folded, {"6": folded[6]}, x)["6"], capture(net, {"6": net[6]}, x)["6"],
                                   rtol=1e-4, atol=1e-5)
    # A conv output that also feeds something else cannot be folded: the check falls back.
    class Branch(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.bn, self.out = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3), nn.Identity()

        def forward(self, x):
            h = self.conv(x)
            return self.out(self.bn(h) + h)

    branch = Branch().eval()
    branch.bn.running_mean.fill_(3.0)
    assert fold_batchnorm(branch, "out", x) is branch


def test_default_model_folds():
    from generator.speedups.fold import fold_batchnorm
    from generator.models import load_model

    model = load_model("efficientnet_lite0")
    x = model.normalize(torch.rand(1, 3, 64, 64))
    folded = fold_batchnorm(model.net, "blocks.4", x)
    assert folded is not model.net
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.blocks[:5].modules())


def test_starting_from_a_parent_icon_gets_there_sooner(tmp_path, tiny_model, image_dir, monkeypatch):
    layer = "features.2"
    directions = _real_directions(tiny_model, layer, image_dir)
    good = render_icons(tiny_model, layer, directions, IconSpec(size_px=32, steps=48), seed=0)
    few = IconSpec(size_px=32, steps=6, warm_fraction=1.0)
    cold = render_icons(tiny_model, layer, directions, few, seed=1)
    has = np.array([True, True, False, True])
    warm = render_icons(tiny_model, layer, directions, few, seed=1, start=good.icons, has_start=has,
                        cache_dir=tmp_path)
    assert warm.fidelity[has].mean() > cold.fidelity[has].mean() + 0.05
    # The cache tells starts apart: another start renders again, the same start does not.
    calls = []
    original = render_module._render_batch

    def counting(*args):
        calls.append(1)
        return original(*args)

    monkeypatch.setattr(render_module, "_render_batch", counting)
    render_icons(tiny_model, layer, directions, few, seed=1, start=good.icons, has_start=has, cache_dir=tmp_path)
    assert calls == []
    render_icons(tiny_model, layer, directions, few, seed=1, start=good.icons[::-1].copy(), has_start=has,
                 cache_dir=tmp_path)
    assert calls == [1]


def test_batch_size_follows_the_device_memory(tiny_model, monkeypatch):
    from generator.speedups import memory
    from generator.speedups.network import build_forward

    device = torch.device("cpu")
    forward = build_forward(tiny_model, "features.2", device)
    per_icon = memory.bytes_per_icon(forward, 32, device)
    # The probe counts at least the input and the layer's output of one icon.
    assert per_icon > 4 * 3 * 32 * 32
    assert memory.bytes_per_icon(forward, 64, device) > 3 * per_icon
    assert memory.auto_batch_size(forward, 32, 1, device) == memory.CAPS["cpu"]  # plenty of memory here
    monkeypatch.setattr(memory, "total_memory", lambda d: int(per_icon * 10 / memory.MEMORY_SHARE))
    assert memory.auto_batch_size(forward, 32, 1, device) == 10
    assert memory.auto_batch_size(forward, 32, 2, device) == 5  # each try is an image in the batch
    monkeypatch.setattr(memory, "total_memory", lambda d: 1)
    assert memory.auto_batch_size(forward, 32, 1, device) == 1


def test_auto_batch_renders_like_an_explicit_one(tiny_model, image_dir):
    from generator.speedups.memory import CAPS

    directions = _real_directions(tiny_model, "features.2", image_dir, 3)
    auto = render_icons(tiny_model, "features.2", directions, IconSpec(24, 4, batch_size=0), seed=1)
    fixed = render_icons(tiny_model, "features.2", directions, IconSpec(24, 4, batch_size=CAPS["cpu"]), seed=1)
    assert auto.icons.tobytes() == fixed.icons.tobytes()


def test_whitening_inverts_the_second_moments_and_changes_the_aim_not_the_measure(tiny_model, image_dir):
    from generator.icons.objectives import whitening

    rng = np.random.default_rng(0)
    vectors = (rng.normal(size=(500, 6)) * [5, 1, 1, 1, 1, 0.2]).astype(np.float16)
    s = whitening(vectors, ridge=0.1, chunk=128)
    moment = vectors.astype(np.float64).T @ vectors.astype(np.float64) / 500
    moment += 0.1 * np.trace(moment) / 6 * np.eye(6)
    np.testing.assert_allclose(s @ moment, np.eye(6), atol=1e-4)

    directions = _real_directions(tiny_model, "features.2", image_dir, 3)
    settings = IconSpec(24, 6, batch_size=8)
    device = torch.device("cpu")
    forward = network.build_forward(tiny_model, "features.2", device)

    def batch(whiten):
        return render_module._render_batch(forward, tiny_model, "features.2", torch.from_numpy(directions),
                                           settings, 2, device, whiten=whiten)

    channels = directions.shape[1]
    plain = batch(None)
    assert batch(np.eye(channels, dtype=np.float32))[0].tobytes() == plain[0].tobytes()  # the identity aims at v
    icons, fid, _ = batch(np.diag(np.linspace(0.2, 5, channels)).astype(np.float32))
    assert icons.tobytes() != plain[0].tobytes()
    icon_tensor = torch.from_numpy(icons).permute(0, 3, 1, 2).float() / 255
    measured = fidelity(tiny_model, "features.2", icon_tensor, torch.from_numpy(directions))
    np.testing.assert_allclose(measured.numpy(), fid, atol=0.05)  # read against the cell's own direction
    # A whitened build keys its cache apart from a plain one.
    cached = render_icons(tiny_model, "features.2", directions, settings, seed=2, whiten=np.eye(channels, dtype=np.float32))
    assert cached.icons.tobytes() != render_icons(tiny_model, "features.2", directions, settings, seed=2).icons.tobytes()


def _clip_net():
    """Conv -> ReLU6, a strided depthwise conv -> ReLU, and a ReLU module called twice (once after an add)."""
    from torch import nn

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.a_act = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6()
            self.b, self.b_act = nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=8), nn.ReLU()
            self.c, self.shared = nn.Conv2d(8, 8, 1), nn.ReLU()
            self.out = nn.Conv2d(8, 4, 1)

        def forward(self, x):
            h = self.b_act(self.b(self.a_act(self.a(x))))
            h = self.shared(self.shared(self.c(h)) + h)
            return self.out(h)

    torch.manual_seed(0)
    net = Net().eval()
    with torch.no_grad():
        net.a.weight.mul_(4)  # push some outputs past 6, so ReLU6's upper clip matters
    for p in net.parameters():
        p.requires_grad_(False)
    return net


@pytest.mark.skipif(not network.fusable(torch.device("cpu")), reason="needs oneDNN")
def test_fusing_conv_and_clip_keeps_outputs_and_gradients():
    from generator.speedups.fuse import ConvClip, fuse_convolutions

    net = _clip_net()
    x = torch.randn(2, 3, 16, 16)
    fused = fuse_convolutions(net, "out", x)
    assert isinstance(fused.a, ConvClip) and isinstance(fused.b, ConvClip)
    assert isinstance(fused.a_act, torch.nn.Identity) and isinstance(fused.b_act, torch.nn.Identity)
    assert isinstance(fused.c, ConvClip) and fused.c.clip is None  # its ReLU is called twice: left alone
    assert type(fused.shared) is torch.nn.ReLU
    assert type(net.a) is torch.nn.Conv2d  # the original is untouched
    outputs = []
    for model in (net, fused):
        image = x.clone().requires_grad_(True)
        y = capture(model, {"out": model.out}, image)["out"]
        (grad,) = torch.autograd.grad((y[:, :, 4, 4] ** 2).sum(), image)
        outputs.append((y.detach(), grad))
    assert (outputs[0][0] > 0).any() and (net.a(x) > 6).any()
    torch.testing.assert_close(outputs[1][0], outputs[0][0])
    torch.testing.assert_close(outputs[1][1], outputs[0][1])
    again = copy.deepcopy(fused)  # after a run, with oneDNN's reordered kernels inside
    torch.testing.assert_close(capture(again, {"out": again.out}, x)["out"], outputs[1][0])
    # The layer a user named keeps its own output: a conv named as the layer is not fused.
    assert type(fuse_convolutions(net, "a", x).a) is torch.nn.Conv2d


@pytest.mark.skipif(not network.fusable(torch.device("cpu")), reason="needs oneDNN")
def test_default_model_renders_through_fused_convolutions_with_the_same_gradients():
    from generator.models import load_model

    model = load_model("efficientnet_lite0")
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    def activations_and_gradient(fuse=True):
        forward = network.build_forward(model, "blocks.4", torch.device("cpu"), network.SpeedOptions(fuse=fuse))
        image = images.clone().requires_grad_(True)
        acts = forward(image)
        (grad,) = torch.autograd.grad(acts[:, :, 2, 2].sum(), image)
        return acts.detach(), grad

    fused = activations_and_gradient()
    unfused = activations_and_gradient(fuse=False)
    torch.testing.assert_close(fused[0], unfused[0], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(fused[1], unfused[1], rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not network.fusable(torch.device("cpu")), reason="needs oneDNN")
def test_default_model_runs_as_one_tape_and_renders_the_same_icons_as_module_by_module():
    from generator.models import load_model

    model = load_model("efficientnet_lite0")
    forward = network.build_forward(model, "blocks.4", torch.device("cpu"), reads="centre")
    assert forward.tape is not None  # up to blocks.4, nothing but fused convolutions and sums
    assert len(forward.tape.steps) == 39
    images = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    assert forward.tape_matches(model.normalize(images))  # activations and input gradient, bit for bit

    # The renderer's objective reads the centre only: at 80 px, the last block's 5 x 5 convolution runs
    # on its window and what follows it on one pixel, with the same numbers.
    x = model.normalize(torch.rand(3, 3, 80, 80, generator=torch.Generator().manual_seed(4)))
    x = x.contiguous(memory_format=torch.channels_last)
    centre = forward.tape.centre(x)
    assert centre.shape == (3, 112, 1, 1)
    assert [t for t in forward.tape._centred.values() if t is not None]
    assert torch.equal(centre, forward.tape(x)[:, :, 2:3, 2:3])

    targets = torch.nn.functional.normalize(torch.randn(3, 112, generator=torch.Generator().manual_seed(3)), dim=1)
    settings = IconSpec(size_px=80, steps=3, batch_size=3)
    icons = {}
    for name, tape in (("tape", forward.tape), ("modules", None)):
        forward.tape = tape
        icons[name], _ = render_module.optimize_spec(forward, targets, settings, torch.Generator().manual_seed(0),
                                                     torch.device("cpu"))
    assert torch.equal(icons["tape"], icons["modules"])


@pytest.mark.skipif(not torch.ops.mkldnn._is_mkldnn_bf16_supported(), reason="needs a CPU with bfloat16 support")
def test_bfloat16_renders_as_well_as_float32_and_is_cached_apart(tmp_path, tiny_model, image_dir):
    # Eight icons: the mean of four swings by 0.05 from seed to seed in either precision.
    directions = _real_directions(tiny_model, "features.4", image_dir, count=8)
    settings = IconSpec(size_px=32, steps=48, batch_size=8)
    runs = {p: render_icons(tiny_model, "features.4", directions, settings.with_(precision=p), cache_dir=tmp_path)
            for p in ("float32", "bfloat16")}
    assert runs["float32"].icons.tobytes() != runs["bfloat16"].icons.tobytes()  # two cache entries, not one
    assert len(list(tmp_path.glob("*.npz"))) == 2
    assert runs["bfloat16"].fidelity.mean() > runs["float32"].fidelity.mean() - 0.05
    # Fidelity is read in float32 whatever the precision of the optimization.
    icon_tensor = torch.from_numpy(runs["bfloat16"].icons).permute(0, 3, 1, 2).float() / 255
    measured = fidelity(tiny_model, "features.4", icon_tensor, torch.from_numpy(directions))
    np.testing.assert_allclose(measured.numpy(), runs["bfloat16"].fidelity, atol=0.02)
    again = render_icons(tiny_model, "features.4", directions, settings.with_(precision="bfloat16"),
                         cache_dir=tmp_path)
    assert again.icons.tobytes() == runs["bfloat16"].icons.tobytes()


def test_auto_precision_is_bfloat16_only_on_a_cpu_with_amx(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert network.pick_precision("float32", cpu) == "float32"
    assert network.pick_precision("bfloat16", cpu) == "bfloat16"
    assert network.pick_precision("auto", cuda) == "float32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert network.pick_precision("auto", cpu) == "float32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    assert network.pick_precision("auto", cpu) == ("bfloat16" if torch.backends.mkldnn.is_available() else "float32")


@pytest.mark.skipif(not network.fusable(torch.device("cpu")), reason="needs oneDNN")
@pytest.mark.parametrize("groups,kernel,stride,padding,same", [
    (g, k, st, p, same) for g, k, st, p in [
        (8, 3, 1, 1), (8, 5, 1, 2), (8, 3, 2, 1), (8, 5, 2, 2), (8, 3, 2, 0), (1, 3, 2, 1), (1, 1, 1, 0), (2, 3, 3, 2),
        (1, 5, 3, 1), (1, (1, 7), (2, 1), (0, 3)), (4, (3, 5), (1, 2), (1, 2))]
    for same in (False, True) if not (same and p)])  # a "SAME" convolution has no padding of its own
def test_convolution_with_forward_kernels_matches_pytorch(groups, kernel, stride, padding, same):
    """ConvClip's input gradient (a forward convolution of the spread-out gradient) is the gradient."""
    from timm.layers.conv2d_same import Conv2dSame

    from generator.speedups.fuse import ConvClip

    torch.manual_seed(0)
    conv = (Conv2dSame if same else torch.nn.Conv2d)(8, 16 if groups == 2 else 8, kernel, stride,
                                                      **({} if same else {"padding": padding}), groups=groups)
    for size in (5, 8, 11, 20):
        x = (torch.randn(2, 8, size, size) * 3).contiguous(memory_format=torch.channels_last)
        results = []
        for module in (torch.nn.Sequential(conv, torch.nn.ReLU6()), ConvClip(conv, torch.nn.ReLU6(), same)):
            image = x.clone().requires_grad_(True)
            y = module(image)
            (grad,) = torch.autograd.grad((y * torch.linspace(-1, 1, y.numel()).view(y.shape)).sum(), image)
            results.append((y.detach(), grad))
        torch.testing.assert_close(results[1][0], results[0][0])
        torch.testing.assert_close(results[1][1], results[0][1])


@pytest.mark.parametrize("kernel,size", [(3, 40), (5, 20), (5, 5), (3, 7)])
def test_same_padding_in_one_pass_matches_timm(kernel, size):
    from timm.layers.conv2d_same import Conv2dSame

    from generator.speedups.padding import SamePadConv

    torch.manual_seed(0)
    conv = Conv2dSame(8, 8, kernel, stride=2, groups=8).eval()
    x = torch.randn(2, 8, size, size).contiguous(memory_format=torch.channels_last)
    results = []
    for module in (conv, SamePadConv(conv)):
        image = x.clone().requires_grad_(True)
        y = module(image)
        (grad,) = torch.autograd.grad((y ** 2).sum(), image)
        results.append((y.detach(), grad))
    assert torch.equal(results[0][0], results[1][0])
    torch.testing.assert_close(results[1][1], results[0][1])
    assert results[1][1].is_contiguous(memory_format=torch.channels_last)
    # In a bfloat16 network, the convolution can run in float32: cast in the same pass as the padding.
    same = SamePadConv(conv)
    same.compute_dtype = torch.float32
    low = same(x.to(torch.bfloat16))
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), results[0][0], rtol=0.02, atol=0.05)


@pytest.mark.skipif(not network.fusable(torch.device("cpu")), reason="needs oneDNN")
def test_only_an_objective_that_reads_the_centre_gets_the_centre_alone():
    from generator.icons.objectives import OBJECTIVES
    from generator.models import load_model

    model = load_model("efficientnet_lite0")
    cpu = torch.device("cpu")
    signed = torch.rand(2, 3, 80, 80, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert OBJECTIVES["direction"](2.0).reads == "centre" and OBJECTIVES["mean_direction"](2.0).reads == "all"
    centre = network.build_forward(model, "blocks.4", cpu, reads="centre")
    whole = network.build_forward(model, "blocks.4", cpu, reads="all")
    assert centre.signed(signed).shape == (2, 112, 1, 1)
    assert whole.signed(signed).shape == (2, 112, 5, 5)
    assert torch.equal(whole.signed(signed)[:, :, 2:3, 2:3], centre.signed(signed))
    # An objective over the whole layer, through the tape, takes the module path's steps exactly.
    targets = torch.nn.functional.normalize(torch.randn(2, 112, generator=torch.Generator().manual_seed(1)), dim=1)
    spec = IconSpec(size_px=80, steps=2, batch_size=2, objective="mean_direction", precision="float32")
    forward = network.build_forward(model, "blocks.4", cpu, reads="all")
    assert forward.tape is not None
    runs = []
    for tape in (forward.tape, None):
        forward.tape = tape
        runs.append(render_module.optimize_spec(forward, targets, spec, torch.Generator().manual_seed(0), cpu))
    assert torch.equal(runs[0][0], runs[1][0])
    # The render loop builds the network for the objective it was given: the whole layer for this one.
    forward, _, _ = render_module.prepare(model, "blocks.4", cpu, spec)
    assert not forward.centre_only and forward.signed(signed).shape == (2, 112, 5, 5)


def test_the_spec_defaults_are_the_configs_and_every_field_reaches_the_cache_key(tmp_path, tiny_model, image_dir,
                                                                                  monkeypatch):
    import dataclasses

    from generator.config import load_config
    from generator.icons import param, transform

    assert IconSpec.from_config(load_config(None).icons) == IconSpec()
    # A parameterization and transforms registered under new names: the same parts, keyed apart.
    monkeypatch.setitem(param.PARAMS, "fourier-again", param.PARAMS["fourier"])
    monkeypatch.setitem(transform.TRANSFORMS, "lucid-again", transform.TRANSFORMS["lucid"])
    directions = _real_directions(tiny_model, "features.2", image_dir, 2)
    base = IconSpec(size_px=24, steps=2, batch_size=2, precision="float32")
    other = {"size_px": 28, "steps": 3, "tries": 2, "learning_rate": 0.04, "cossim_power": 1.0, "batch_size": 1,
             "precision": "bfloat16", "param": "fourier-again", "objective": "mean_direction",
             "transforms": "lucid-again", "warm_fraction": 0.5, "mask": True}
    assert set(other) == {f.name for f in dataclasses.fields(IconSpec)}

    def files():
        return set(tmp_path.glob("*.npz"))

    render_icons(tiny_model, "features.2", directions, base, cache_dir=tmp_path)
    seen = files()
    for name, value in other.items():
        if name == "precision" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
            continue
        render_icons(tiny_model, "features.2", directions, dataclasses.replace(base, **{name: value}), cache_dir=tmp_path)
        assert files() - seen, f"{name} does not reach the cache key"
        seen = files()


def _natural(image_dir, size):
    from generator.images import CropLoader, find_images, plan_samples
    from generator.icons.param import natural_amplitude

    plan = plan_samples(find_images(image_dir), 2, 0)
    return natural_amplitude(CropLoader(plan, 64).load(range(len(plan.crops))), size)


def test_maco_keeps_the_natural_amplitude_and_optimizes_only_the_phase(image_dir):
    from generator.icons.param import PARAMS, MacoImage

    amplitude = _natural(image_dir, 32)
    assert amplitude.shape == (3, 32, 17) and (amplitude >= 0).all()
    image = PARAMS["maco"](4, 32, torch.Generator().manual_seed(0), amplitude)
    assert [name for name, _ in image.named_parameters()] == ["phase"]
    with torch.no_grad():
        pixels, signed = image(), image.signed()
    assert pixels.shape == (4, 3, 32, 32) and 0 < pixels.min() and pixels.max() < 1
    torch.testing.assert_close(signed, pixels * 2 - 1, atol=1e-5, rtol=0)
    # Taken back to the decorrelated basis, every image has the natural amplitude's shape, whatever its phase:
    # its spectrum is the amplitude times one factor per image (the standardization). Away from the mean and
    # the Nyquist frequencies, whose phases a real image cannot take freely.
    logits = torch.logit(pixels.double())
    spatial = torch.einsum("ndhw,cd->nchw", logits, torch.linalg.inv(image.color.double()))
    inner = (slice(None), slice(None), [i for i in range(1, 32) if i != 16], slice(1, 16))
    ratio = torch.fft.rfft2(spatial).abs()[inner] / amplitude.double()[None][inner]
    assert (ratio.flatten(1).std(1) / ratio.flatten(1).mean(1)).max() < 1e-3
    # A warm start gives an image the phase of the one it starts from, and so the image, but for the Nyquist
    # frequencies, which come back at the full natural amplitude.
    other = MacoImage(2, 32, torch.Generator().manual_seed(1), amplitude)
    with torch.no_grad():
        before = (other() - pixels[:2]).abs().mean()
        other.start_from(torch.tensor([0, 1]), pixels[:2])
        after = (other() - pixels[:2]).abs()
    assert after.mean() < before / 10 and after.max() < 0.15
    with pytest.raises(ValueError, match="amplitude"):
        PARAMS["maco"](1, 32, torch.Generator(), None)


def test_maco_icons_point_along_their_directions_and_are_keyed_by_the_amplitude(tmp_path, tiny_model, image_dir):
    layer = "features.2"
    directions = _real_directions(tiny_model, layer, image_dir)
    amplitude = _natural(image_dir, 32).numpy()
    spec = IconSpec(size_px=32, steps=48, batch_size=8, param="maco", precision="float32")
    icons, fid, objective, _ = render_icons(tiny_model, layer, directions, spec, seed=0, amplitude=amplitude,
                                            cache_dir=tmp_path)
    noise = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert fid.mean() > fidelity(tiny_model, layer, noise, torch.from_numpy(directions)).mean().item() + 0.25
    assert icons.std() > 5
    render_icons(tiny_model, layer, directions, spec, seed=0, amplitude=amplitude * 2, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2  # another amplitude, other icons
    with pytest.raises(ValueError, match="amplitude"):
        render_icons(tiny_model, layer, directions, spec)
