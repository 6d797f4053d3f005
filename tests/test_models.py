import numpy as np
import pytest
import torch

from generator.errors import AtlasError
from generator.models import imagenet_wnids, load_model

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
