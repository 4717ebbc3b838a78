"""model.load_checkpoint refuses what it cannot use, in one line: non-finite weights, another model, a truncated
archive, a folder."""

import numpy as np
import pytest
import keras

from model import build_model, load_checkpoint


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    keras.utils.set_random_seed(0)
    model = build_model(image_weights="none", image_size=32, sample_rate=8000, audio_seconds=0.1)
    path = folder / "good.keras"
    model.save(path)
    return model, path


@pytest.mark.parametrize("variable_name,value", [("layer3_1_conv2", np.nan), ("bn1", np.inf)])
def test_a_planted_non_finite_weight_is_refused_by_name(saved_model, tmp_path, variable_name, value):
    model, _ = saved_model
    layer = model.audio.get_layer(variable_name)
    variable = layer.kernel if variable_name.endswith("conv2") else layer.moving_variance  # also BN statistics
    original = variable.numpy()
    planted = original.copy()
    planted.flat[5] = value
    variable.assign(planted)
    try:
        model.save(tmp_path / "bad.keras")
    finally:
        variable.assign(original)
    with pytest.raises(ValueError, match="non-finite") as caught:
        load_checkpoint(str(tmp_path / "bad.keras"))
    assert variable.path in str(caught.value) and "\n" not in str(caught.value)


def test_good_checkpoint_still_loads(saved_model):
    model, path = saved_model
    loaded = load_checkpoint(str(path))
    np.testing.assert_array_equal(loaded.audio.get_layer("conv1").kernel.numpy(),
                                  model.audio.get_layer("conv1").kernel.numpy())


def test_a_foreign_keras_model_is_named(tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    other.save(tmp_path / "other.keras")
    with pytest.raises(ValueError, match="holds a Sequential model, not an LVS model"):
        load_checkpoint(str(tmp_path / "other.keras"))


def test_a_truncated_archive_is_not_reported_as_missing(saved_model, tmp_path):
    _, path = saved_model
    data = path.read_bytes()
    (tmp_path / "cut.keras").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.keras").write_text("not a model")
    for name in ("cut.keras", "text.keras"):
        with pytest.raises(ValueError, match="truncated or not a Keras archive"):
            load_checkpoint(str(tmp_path / name))
    with pytest.raises(ValueError, match="not found"):
        load_checkpoint(str(tmp_path / "missing.keras"))
    (tmp_path / "folder.keras").mkdir()
    with pytest.raises(ValueError, match="not a file"):
        load_checkpoint(str(tmp_path / "folder.keras"))


def test_an_official_checkpoint_with_a_nan_is_refused(tmp_path, metadata_dir):
    import torch

    from benchmarks.torch_reference import random_official_state_dict

    state_dict = random_official_state_dict(metadata_dir / "lvs_state_dict_keys.tsv", seed=1)
    key = next(name for name in state_dict if name.endswith("audnet.layer1.0.bn1.running_var"))
    state_dict[key][3] = float("nan")
    torch.save({"model_state_dict": state_dict}, tmp_path / "lvs.pth.tar")
    with pytest.raises(ValueError, match="non-finite values .* in audio/layer1_0_bn1/moving_variance"):
        load_checkpoint(str(tmp_path / "lvs.pth.tar"))
