import io

import numpy as np
import pytest
from PIL import Image

from generator.errors import AtlasError
from generator.images import CropLoader, default_photos, find_images, open_rgb, plan_samples


@pytest.fixture
def odd_images(tmp_path):
    """One image of every awkward kind, plus files that are not images at all."""
    rng = np.random.default_rng(1)
    rgb = Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8))
    rgb.convert("L").save(tmp_path / "grey.png")
    rgb.convert("P").save(tmp_path / "palette.gif")
    rgb.convert("RGBA").save(tmp_path / "alpha.png")
    rgb.convert("CMYK").save(tmp_path / "cmyk.jpg")
    Image.fromarray(rng.integers(0, 65535, (40, 50), dtype=np.uint16)).save(tmp_path / "deep.png")
    rgb.save(tmp_path / "plain.webp")
    rgb.save(tmp_path / "plain.bmp")
    rgb.save(tmp_path / "plain.tiff")
    buffer = io.BytesIO()
    rgb.save(buffer, "JPEG")
    (tmp_path / "truncated.jpg").write_bytes(buffer.getvalue()[:300])
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "readme.txt").write_text("ignored: not an image suffix")
    return tmp_path


def test_awkward_images_convert_and_bad_files_are_counted(odd_images):
    paths = find_images(odd_images)
    assert len(paths) == 10
    plan = plan_samples(paths, crops_per_image=1, seed=0)
    assert plan.skipped == 2
    assert len(plan.images) == 8
    for path in plan.images:
        assert open_rgb(path).mode == "RGB"
    crops = CropLoader(plan, 32).load(range(len(plan.crops)))
    assert crops.shape == (8, 3, 32, 32)
    assert 0.0 <= float(crops.min()) and float(crops.max()) <= 1.0


def test_no_usable_image_is_a_clear_error(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(AtlasError, match=r"no usable image among 1 files \(1 unreadable\)"):
        plan_samples(find_images(tmp_path), 1, 0)


def test_missing_folder(tmp_path):
    with pytest.raises(AtlasError, match="not found"):
        find_images(tmp_path / "absent")


def test_random_crops_stay_inside_and_repeat_with_the_seed(image_dir):
    paths = find_images(image_dir)
    plan = plan_samples(paths, crops_per_image=5, seed=7)
    assert len(plan.crops) == 5 * len(paths)
    for index, left, top, right, bottom in plan.crops:
        width, height = plan.sizes[index]
        assert 0 <= left < right <= width and 0 <= top < bottom <= height
        assert right - left == bottom - top
    assert plan == plan_samples(paths, crops_per_image=5, seed=7)
    assert plan != plan_samples(paths, crops_per_image=5, seed=8)


def test_embedded_photographs_ship_with_packages():
    photos = default_photos()
    assert len(photos) >= 10
    assert all(open_rgb(p).mode == "RGB" for p in photos)


@pytest.mark.parametrize("orientation, quarter_turns", [
    (6, -1),  # the camera was turned a quarter anticlockwise: the picture is turned a quarter clockwise
    (8, 1),
    (3, 2),
])
def test_photos_are_read_upright_as_their_exif_orientation_says(tmp_path, orientation, quarter_turns):
    stored = np.zeros((40, 60, 3), dtype=np.uint8)  # 60 wide, 40 high: red, green and blue bands, left to right
    for band in range(3):
        stored[:, band * 20:(band + 1) * 20, band] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation  # the Orientation tag
    Image.fromarray(stored).save(tmp_path / "photo.jpg", exif=exif.tobytes(), quality=95, subsampling=0)
    upright = np.rot90(stored, quarter_turns)
    assert np.abs(np.asarray(open_rgb(tmp_path / "photo.jpg"), dtype=int) - upright).mean() < 10  # JPEG error
    plan = plan_samples([tmp_path / "photo.jpg"], crops_per_image=1, seed=0)
    assert plan.sizes == [(upright.shape[1], upright.shape[0])]
    _, left, top, right, bottom = plan.crops[0]
    assert right - left == bottom - top == 35  # the centre square of the upright image
    crop = CropLoader(plan, 35).load([0])[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(crop - upright[top:bottom, left:right]).mean() < 20
