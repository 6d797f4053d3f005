import numpy as np
import pytest
import torch

from generator.errors import AtlasError
from generator.models import check_layers, imagenet_wnids, load_model

from .conftest import SAMPLE, TESTS, TINY_SPEC


def test_user_module_with_metadata(tiny_model):
    assert tiny_model.input_size == 48
    assert tiny_model.default_layers == ("features.2", "features.4")
    assert tiny_model.layer_shapes()["features.4"] == (24, 6, 6)
    assert len(tiny_model.class_names) == 6


def test_unknown_layer_names_the_closest(tiny_model):
    with pytest.raises(AtlasError, match=r"unknown layer 'featurs\.4'.*closest: features\.4"):
        tiny_model.layer("featurs.4")


def test_checkpoint_and_labels_files(tmp_path, tiny_model):
    state = {k: torch.zeros_like(v) for k, v in tiny_model.net.state_dict().items()}
    ckpt = tmp_path / "zero.pt"
    torch.save(state, ckpt)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"thing {i}" for i in range(6)))
    model = load_model(TINY_SPEC, str(ckpt), str(labels))
    assert model.class_names[5] == "thing 5"
    assert all(float(v.abs().sum()) == 0 for v in model.net.state_dict().values())
    assert model.weights_id != load_model(TINY_SPEC).weights_id
    labels.write_text("only one")
    with pytest.raises(AtlasError, match="has 1 names but the model has 6 classes"):
        load_model(TINY_SPEC, labels=str(labels))


def test_check_layers_names_every_unknown_layer(tiny_model):
    check_layers(tiny_model, ["features.2", "features.4"])
    with pytest.raises(AtlasError) as err:
        check_layers(tiny_model, ["featurs.4", "features.2", "pool2"])
    assert str(err.value).splitlines() == [
        f"2 unknown layers for model {TINY_SPEC}:",
        "  'featurs.4': closest: features.4, features.5, features.3",
        "  'pool2': closest: pool",
    ]


def _user_module(tmp_path, text):
    path = tmp_path / "net.py"
    path.write_text(f"from tests.tiny_model import tiny\n{text}\n")
    return f"{path}:tiny"


def test_wrong_number_of_class_names_is_an_error(tmp_path):
    spec = _user_module(tmp_path, 'CLASS_NAMES = ["cat", "dog"]')
    with pytest.raises(AtlasError, match=f"CLASS_NAMES in {tmp_path / 'net.py'} has 2 names but the model's "
                                         "output has 6 classes"):
        load_model(spec)
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join("abcdef"))
    assert load_model(spec, labels=str(labels)).class_names == list("abcdef")  # the labels file wins


def test_model_metadata_as_numpy_values(tmp_path):
    spec = _user_module(tmp_path, "import numpy as np\nINPUT_SIZE = np.int64(40)\nMEAN = np.array([0.5, 0.5, 0.5])\n"
                                  "STD = [np.float32(0.25)] * 3")
    model = load_model(spec)
    assert model.input_size == 40 and model.mean == (0.5, 0.5, 0.5) and model.std == (0.25, 0.25, 0.25)


def test_bad_metadata_is_reported_before_the_factory_runs(tmp_path):
    spec = _user_module(tmp_path, 'STD = (0.5, 0.0, 0.5)\nCLASS_NAMES = "cat dog"\n'
                                  "def tiny():\n    raise RuntimeError('factory ran')")
    with pytest.raises(AtlasError) as err:
        load_model(spec)
    assert str(err.value).splitlines()[1:] == [
        "  STD = (0.5, 0.0, 0.5): must be 3 numbers, one per input channel "
        "(red, green, blue; set CHANNELS for a model of other inputs), each > 0",
        "  CLASS_NAMES = 'cat dog': must be a list of class names, one per output",
    ]


def test_a_model_that_cannot_take_its_images_says_so(tmp_path):
    path = tmp_path / "grey.py"
    path.write_text("import torch\nCHANNELS = 3\n"
                    "def grey():\n    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten())\n"
                    "def lazy():\n    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(2))\n")
    with pytest.raises(AtlasError, match=r"grey fails on a batch of 3-channel 224 x 224 images "
                                         r"\(set CHANNELS beside the factory if that is not its input's\): RuntimeError: "):
        load_model(f"{path}:grey")
    with pytest.raises(AtlasError, match=r"lazy\(\) returns a model with lazy modules"):
        load_model(f"{path}:lazy")


@pytest.mark.parametrize("spec", ["efficientnet_lite0", "torchvision:resnet18", "timm:resnet18"])
def test_checkpoint_only_for_a_model_file(tmp_path, spec):
    ckpt = tmp_path / "w.pt"
    torch.save({}, ckpt)
    with pytest.raises(AtlasError, match=f"checkpoint {ckpt} applies to a path/to/file.py:factory model, "
                                         f"not to {spec}"):
        load_model(spec, str(ckpt))


def test_a_file_that_is_not_a_state_dict(tmp_path, tiny_model):
    files = {"notes.txt": b"hello world\n", "random.bin": np.random.default_rng(0).bytes(2000), "empty.pt": b""}
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save(tiny_model.net, tmp_path / "whole.pt")
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    said = {
        "notes.txt": "torch said: KeyError: ", "random.bin": "torch said: UnpicklingError: ",
        "empty.pt": "torch said: EOFError", "tensor.pt": "holds a Tensor, not a PyTorch state dict",
        "whole.pt": "torch said: UnpicklingError: Unsupported global: GLOBAL torch.nn.modules.container.Sequential "
                    "was not an allowed global by default",
    }
    for name, words in said.items():
        with pytest.raises(AtlasError) as err:
            load_model(TINY_SPEC, str(tmp_path / name))
        message = str(err.value)
        assert "\n" not in message and len(message) < 400, message
        assert f"checkpoint {tmp_path / name} " in message and words in message, message
        assert "torch.save(model.state_dict(), path)" in message
    state = tiny_model.net.state_dict()
    state.pop("head.bias")
    torch.save(state, tmp_path / "partial.pt")
    with pytest.raises(AtlasError, match=r"does not load into tiny\(\): RuntimeError: Error\(s\) in loading "
                                         r"state_dict for Sequential: Missing key\(s\) in state_dict: \"head.bias\""):
        load_model(TINY_SPEC, str(tmp_path / "partial.pt"))


@pytest.mark.parametrize("spec, message", [
    ("resnet50", "unknown model"),
    ("torchvision:resnet5000", "unknown torchvision model"),
    ("timm:not_a_model_xyz", "unknown timm model"),
    ("missing/file.py:make", "not found"),
    (f"{TESTS / 'tiny_model.py'}:nope", "has no function 'nope'"),
])
def test_bad_model_specs_say_what_to_do(spec, message):
    with pytest.raises(AtlasError, match=message):
        load_model(spec)


def test_torchvision_architecture_without_weights():
    model = load_model("torchvision:resnet18")
    assert model.layer_shapes()["layer3"] == (256, 14, 14)
    assert model.class_names[0] == "tench"


def test_default_model_is_embedded_and_lists_imagenet_layers():
    model = load_model("efficientnet_lite0")
    shapes = model.layer_shapes()
    assert shapes["blocks.4"] == (112, 14, 14)
    assert model.default_layers == ("blocks.4", "blocks.5")
    assert model.class_names[281] == "tabby"


@pytest.mark.sample
@pytest.mark.skipif(not SAMPLE.is_dir(), reason="needs ../shared/data/imagenet-sample")
def test_default_model_top1_on_imagenet_sample():
    from generator.images import CropLoader, find_images, plan_samples

    model = load_model("efficientnet_lite0")
    wnids = imagenet_wnids()
    paths = find_images(SAMPLE)
    plan = plan_samples(paths, 1, seed=0)
    labels = np.array([wnids.index(p.name.split("_")[0]) for p in paths])
    loader = CropLoader(plan, model.input_size)
    correct = 0
    with torch.no_grad():
        for start in range(0, len(paths), 50):
            x = model.normalize(loader.load(range(start, min(start + 50, len(paths)))))
            correct += int((model.net(x).argmax(1).numpy() == labels[start:start + 50]).sum())
    accuracy = correct / len(paths)
    assert accuracy >= 0.85, accuracy
