"""Tests of resnet18.py against torchvision's ResNet-18 (random weights, random BatchNorm statistics).

Run: python -m pytest tests/test_resnet18.py
"""

import hashlib
import re
import subprocess
import sys
from pathlib import Path

# torch's CUDA wheel ships triton, whose native library crashes (SIGSEGV) when loaded after TensorFlow; importing
# torchvision pulls it in through torch._dynamo. Everything here runs on the CPU, so keep triton from loading.
sys.modules.setdefault("triton", None)

import keras  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

import resnet18  # noqa: E402
from benchmarks.torch_reference import TorchLVS, random_official_state_dict  # noqa: E402

PROJECT_DIR = Path(__file__).resolve().parents[1]
METADATA_DIR = Path(__file__).resolve().parents[1] / "data" / "metadata"
TOLERANCE = 1e-4


def randomise_batch_norms(torch_model, generator):
    """Gives every BatchNorm2d random affine parameters and running statistics, so a swapped tensor shows."""
    for module in torch_model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            channels = module.num_features
            # gamma below 1 keeps activations O(1), so an absolute 1e-4 tolerance stays meaningful in float32
            module.weight.data = torch.rand(channels, generator=generator) * 0.7 + 0.5  # 0.5..1.2
            module.bias.data = torch.randn(channels, generator=generator) * 0.2
            module.running_mean.copy_(torch.randn(channels, generator=generator) * 0.2)
            module.running_var.copy_(torch.rand(channels, generator=generator) * 1.5 + 0.5)


def random_torchvision_resnet18(seed, layer4_stride=2, input_channels=3):
    """A torchvision resnet18 in eval mode with random weights and BN statistics, layer4 stride and input changed."""
    torch.manual_seed(seed)
    torch_model = torchvision.models.resnet18()
    if input_channels != 3:
        torch_model.conv1 = torch.nn.Conv2d(input_channels, 64, 7, stride=2, padding=3, bias=False)
    set_layer4_stride(torch_model, layer4_stride)
    randomise_batch_norms(torch_model, torch.Generator().manual_seed(seed + 1))
    return torch_model.eval()


def set_layer4_stride(torch_model, stride):
    """Sets the stride of layer4's first block (3x3 conv and 1x1 downsample), as the LVS code does."""
    torch_model.layer4[0].conv1.stride = (stride, stride)
    torch_model.layer4[0].downsample[0].stride = (stride, stride)


def torch_layer4(torch_model, inputs):
    """Runs a torchvision resnet up to layer4 (no pooling, no fc): B x C x H x W -> B x 512 x h x w."""
    with torch.no_grad():
        outputs = torch_model.maxpool(torch_model.relu(torch_model.bn1(torch_model.conv1(inputs))))
        for stage in (torch_model.layer1, torch_model.layer2, torch_model.layer3, torch_model.layer4):
            outputs = stage(outputs)
    return outputs


def keras_forward(keras_model, torch_inputs):
    """Runs a Keras model in inference mode on an NCHW torch tensor; returns NCHW (4-D) or B x N numpy."""
    outputs = keras.ops.convert_to_numpy(
        keras_model(torch_inputs.permute(0, 2, 3, 1).numpy(), training=False)  # NCHW -> NHWC
    )
    return outputs.transpose(0, 3, 1, 2) if outputs.ndim == 4 else outputs  # NHWC -> NCHW


def max_abs_difference(keras_outputs, torch_outputs):
    return float(np.abs(keras_outputs - torch_outputs.numpy()).max())


def test_layer_names_cover_torchvision_state_dict_exactly():
    torch_model = torchvision.models.resnet18()
    keras_model = resnet18.build_resnet18(3, layer4_stride=2, include_top=True)
    expected = {
        f"{resnet18.torch_module_path(layer_name)}.{parameter}"
        for layer_name, parameter in resnet18.loadable_variables(keras_model)
    }
    torch_keys = {key for key in torch_model.state_dict() if not key.endswith("num_batches_tracked")}
    assert expected == torch_keys
    assert keras_model.get_layer("layer2_0_downsample_0").kernel.shape == (1, 1, 64, 128)
    assert keras_model.get_layer("fc").kernel.shape == (512, 1000)


def test_random_torchvision_resnet18_matches_classifier_and_stride1_map():
    """Issue text: same classifier outputs and the same 14x14 layer4-stride-1 map as PyTorch, max abs <= 1e-4."""
    torch_model = random_torchvision_resnet18(seed=0, layer4_stride=2)
    inputs = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))

    classifier = resnet18.build_resnet18(3, layer4_stride=2, include_top=True)
    ignored = resnet18.load_torch_state_dict(classifier, torch_model.state_dict())
    assert ignored == []
    with torch.no_grad():
        torch_logits = torch_model(inputs)
    keras_logits = keras_forward(classifier, inputs)
    assert keras_logits.shape == (2, 1000)
    assert torch_logits.abs().max() > 1.0  # the comparison is not between near-zero outputs
    # and the logits depend on the input by far more than the tolerance
    assert (torch_logits[0] - torch_logits[1]).abs().max() > 100 * TOLERANCE
    assert max_abs_difference(keras_logits, torch_logits) <= TOLERANCE

    set_layer4_stride(torch_model, 1)
    trunk = resnet18.build_resnet18(3, layer4_stride=1, include_top=False)
    ignored = resnet18.load_torch_state_dict(trunk, torch_model.state_dict())
    assert ignored == ["fc.bias", "fc.weight"]
    torch_map = torch_layer4(torch_model, inputs)
    keras_map = keras_forward(trunk, inputs)
    assert keras_map.shape == (2, 512, 14, 14) == tuple(torch_map.shape)
    assert torch_map.abs().max() > 1.0
    assert max_abs_difference(keras_map, torch_map) <= TOLERANCE


@pytest.mark.parametrize("fused,dtype,tolerance", [(True, "float32", 1e-5), (False, "float32", 1e-5),
                                                    (True, "float64", 1e-12)])
def test_batch_norm_equals_torch_batch_norm_2d_in_training_and_eval(fused, dtype, tolerance):
    """Outputs, gradients and running statistics of two training steps, then eval, as torch.nn.BatchNorm2d.

    float64 has no fused kernel, so that case checks the fallback of separate ops (as synchronised BN uses).
    """
    import tensorflow as tf

    generator = np.random.default_rng(0)
    torch_layer = torch.nn.BatchNorm2d(3, eps=1e-5, momentum=0.1).to(getattr(torch, dtype))
    keras_layer = resnet18.BatchNormalization(fused=fused, epsilon=resnet18.BATCH_NORM_EPSILON,
                                              momentum=resnet18.BATCH_NORM_MOMENTUM, dtype=dtype)
    keras_layer.build((None, 5, 6, 3))
    gamma, beta = np.array([1.5, 0.5, -1.0]), np.array([0.1, 0.2, 0.3])
    torch_layer.weight.data, torch_layer.bias.data = torch.tensor(gamma).to(torch_layer.weight), torch.tensor(beta).to(
        torch_layer.bias)
    keras_layer.gamma.assign(gamma)
    keras_layer.beta.assign(beta)
    for step in range(2):
        inputs = (generator.normal(size=(4, 5, 6, 3)) * (2 + step) + 1).astype(dtype)  # B x H x W x C
        upstream = generator.normal(size=inputs.shape).astype(dtype)
        torch_inputs = torch.tensor(inputs.transpose(0, 3, 1, 2), requires_grad=True)  # -> B x C x H x W
        torch_layer.zero_grad()
        torch_outputs = torch_layer(torch_inputs)
        (torch_outputs * torch.tensor(upstream.transpose(0, 3, 1, 2))).sum().backward()
        keras_inputs = tf.constant(inputs)
        with tf.GradientTape() as tape:
            tape.watch(keras_inputs)
            keras_outputs = keras_layer(keras_inputs, training=True)
            total = tf.reduce_sum(keras_outputs * upstream)
        input_gradient, gamma_gradient, beta_gradient = tape.gradient(
            total, [keras_inputs, keras_layer.gamma, keras_layer.beta])
        assert keras_outputs.dtype == dtype
        np.testing.assert_allclose(keras_outputs.numpy(), torch_outputs.detach().numpy().transpose(0, 2, 3, 1),
                                   atol=tolerance, rtol=0)
        np.testing.assert_allclose(input_gradient.numpy(), torch_inputs.grad.numpy().transpose(0, 2, 3, 1),
                                   atol=tolerance, rtol=0)
        np.testing.assert_allclose(gamma_gradient.numpy(), torch_layer.weight.grad.numpy(), atol=10 * tolerance, rtol=0)
        np.testing.assert_allclose(beta_gradient.numpy(), torch_layer.bias.grad.numpy(), atol=10 * tolerance, rtol=0)
        # the running variance moves towards the unbiased batch variance (n / (n - 1) times the biased one)
        np.testing.assert_allclose(keras_layer.moving_mean.numpy(), torch_layer.running_mean.numpy(), atol=tolerance)
        np.testing.assert_allclose(keras_layer.moving_variance.numpy(), torch_layer.running_var.numpy(), atol=tolerance)
    biased = 0.9 + 0.1 * inputs.reshape(-1, 3).var(axis=0)  # what a biased update would give after one step
    assert np.abs(keras_layer.moving_variance.numpy() - biased).max() > 0.1  # the check above can tell them apart
    torch_layer.eval()
    with torch.no_grad():
        expected = torch_layer(torch.tensor(inputs.transpose(0, 3, 1, 2))).numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(keras_layer(inputs, training=False).numpy(), expected, atol=tolerance, rtol=0)


def test_trunk_in_training_mode_equals_torchvision_in_train_mode():
    """One training-mode forward and backward of the whole trunk (batch statistics) against torchvision's."""
    import tensorflow as tf

    torch_model = random_torchvision_resnet18(seed=3, layer4_stride=1).train()
    trunk = resnet18.build_resnet18(3, layer4_stride=1)
    resnet18.load_torch_state_dict(trunk, torch_model.state_dict())
    inputs = torch.randn(4, 3, 64, 48, generator=torch.Generator().manual_seed(4))
    projection = torch.randn(4, 512, 4, 3, generator=torch.Generator().manual_seed(5))
    torch_map = torch.nn.Sequential(*list(torch_model.children())[:-2])(inputs)  # all but avgpool and fc
    (torch_map * projection).sum().backward()
    keras_inputs = tf.constant(inputs.numpy().transpose(0, 2, 3, 1))  # B x C x H x W -> B x H x W x C
    with tf.GradientTape() as tape:
        keras_map = trunk(keras_inputs, training=True)  # B x 4 x 3 x 512
        total = tf.reduce_sum(keras_map * projection.numpy().transpose(0, 2, 3, 1))
    conv1_gradient = tape.gradient(total, trunk.get_layer("conv1").kernel)
    assert max_abs_difference(keras_map.numpy().transpose(0, 3, 1, 2), torch_map.detach()) <= TOLERANCE
    expected_gradient = torch_model.conv1.weight.grad.numpy().transpose(2, 3, 1, 0)  # OIHW -> HWIO
    scale = np.abs(expected_gradient).max()
    assert np.abs(conv1_gradient.numpy() - expected_gradient).max() <= 1e-3 * scale
    for name, module in (("bn1", torch_model.bn1), ("layer4_1_bn2", torch_model.layer4[1].bn2)):
        layer = trunk.get_layer(name)
        np.testing.assert_allclose(layer.moving_mean.numpy(), module.running_mean.numpy(), atol=TOLERANCE)
        np.testing.assert_allclose(layer.moving_variance.numpy(), module.running_var.numpy(), atol=TOLERANCE,
                                   rtol=1e-5)


@pytest.mark.parametrize("width", [37, 9])
def test_stock_keras_layers_compute_the_same_trunk(width):
    """bench.py's `_stock` towers (ZeroPadding2D layers, keras.layers.BatchNormalization) equal ours: same function.

    Width 9 makes layer3 and layer4 one pixel wide, where resnet18.Conv2D drops the kernel columns that only read
    padding: the outputs and the gradients of every kernel (zero in those columns) must still be the stock ones.
    """
    import tensorflow as tf

    torch_model = random_torchvision_resnet18(seed=6, layer4_stride=1)
    ours = resnet18.build_resnet18(1, layer4_stride=1)
    stock = resnet18.build_resnet18(1, layer4_stride=1, stock_layers=True)
    assert sum(isinstance(layer, keras.layers.ZeroPadding2D) for layer in stock.layers) == 18  # every padded conv + maxpool
    assert sum(isinstance(layer, keras.layers.ZeroPadding2D) for layer in ours.layers) == 4  # the stride-2 ones
    assert not any(isinstance(layer, (resnet18.BatchNormalization, resnet18.Conv2D)) for layer in stock.layers)
    state_dict = torch_model.state_dict()
    state_dict["conv1.weight"] = state_dict["conv1.weight"][:, :1]
    for trunk in (ours, stock):
        resnet18.load_torch_state_dict(trunk, state_dict)
    spectrograms = tf.random.stateless_normal((2, 65, width, 1), seed=(0, 1))  # odd sizes: asymmetric padding shows
    np.testing.assert_allclose(ours(spectrograms, training=False).numpy(),
                               stock(spectrograms, training=False).numpy(), atol=TOLERANCE, rtol=0)
    gradients = []
    for trunk in (ours, stock):
        with tf.GradientTape() as tape:
            outputs = trunk(spectrograms, training=True)  # 2 x h x w x 512
            total = tf.reduce_sum(outputs * tf.random.stateless_normal(outputs.shape, seed=(2, 3)))
        kernels = [layer.kernel for layer in trunk.layers if isinstance(layer, keras.layers.Conv2D)]
        gradients.append((outputs.numpy(), tape.gradient(total, kernels)))
    assert gradients[0][0].shape[2] == (1 if width == 9 else 3)
    np.testing.assert_allclose(gradients[0][0], gradients[1][0], atol=TOLERANCE, rtol=0)
    for ours_gradient, stock_gradient in zip(gradients[0][1], gradients[1][1]):
        scale = max(float(np.abs(stock_gradient.numpy()).max()), 1e-6)
        assert np.abs(ours_gradient.numpy() - stock_gradient.numpy()).max() <= 1e-4 * scale
    if width == 9:
        layer4_gradient = gradients[0][1][-1].numpy()  # layer4_1_conv2 at width 1: 3 x 3 x 512 x 512
        assert np.all(layer4_gradient[:, [0, 2]] == 0) and np.abs(layer4_gradient[:, 1]).max() > 0


def test_trunk_accepts_any_input_size():
    trunk = resnet18.build_resnet18(1, layer4_stride=1)
    assert trunk.input_shape == (None, None, None, 1)
    outputs = trunk(np.zeros((1, 257, 200, 1), dtype="float32"), training=False)
    # 257 -> 129 (conv1) -> 65 (maxpool) -> 33 -> 17; 200 -> 100 -> 50 -> 25 -> 13, as in PyTorch.
    assert tuple(outputs.shape) == (1, 17, 13, 512)


def test_official_lvs_checkpoint_layout_loads_both_towers(tmp_path):
    generator = torch.Generator().manual_seed(3)
    state_dict = random_official_state_dict(METADATA_DIR / "lvs_state_dict_keys.tsv", seed=3)
    reference = TorchLVS()
    reference.load_official_state_dict(state_dict)
    reference.eval()
    checkpoint_path = tmp_path / "lvs.pth.tar"
    torch.save({"model_state_dict": state_dict, "epoch": 7}, checkpoint_path)
    loaded = resnet18.read_torch_checkpoint(checkpoint_path)
    assert set(loaded) == set(state_dict)

    audio_trunk = resnet18.build_resnet18(1, layer4_stride=1)
    ignored = resnet18.load_torch_state_dict(
        audio_trunk, loaded, prefix="module.audnet.", first_conv="conv1_a"
    )
    assert ignored == sorted(
        f"module.audnet.{name}" for name in ("conv1.weight", "conv1_flow.weight", "fc.weight", "fc.bias")
    )
    spectrogram = torch.randn(1, 1, 257, 200, generator=generator)
    with torch.no_grad():
        torch_audio = reference.audnet(spectrogram)
    keras_audio = keras_forward(audio_trunk, spectrogram)
    assert keras_audio.shape == tuple(torch_audio.shape) == (1, 512, 17, 13)
    assert torch_audio.abs().max() > 1.0
    assert max_abs_difference(keras_audio, torch_audio) <= TOLERANCE

    vision_trunk = resnet18.build_resnet18(3, layer4_stride=1)
    ignored = resnet18.load_torch_state_dict(vision_trunk, loaded, prefix="module.imgnet.")
    assert ignored == sorted(
        f"module.imgnet.{name}" for name in ("conv1_a.weight", "conv1_flow.weight", "fc.weight", "fc.bias")
    )
    frame = torch.randn(1, 3, 224, 224, generator=generator)
    with torch.no_grad():
        torch_vision = reference.imgnet(frame)
    keras_vision = keras_forward(vision_trunk, frame)
    assert keras_vision.shape == tuple(torch_vision.shape) == (1, 512, 14, 14)
    assert torch_vision.abs().max() > 1.0
    assert max_abs_difference(keras_vision, torch_vision) <= TOLERANCE

    # The two towers got different tensors: the vision tower does not equal the audio tower's weights.
    assert not np.allclose(
        vision_trunk.get_layer("layer1_0_conv1").kernel.numpy(),
        audio_trunk.get_layer("layer1_0_conv1").kernel.numpy(),
    )


def test_missing_and_misshaped_tensors_are_all_named_and_nothing_is_loaded():
    state_dict = random_torchvision_resnet18(seed=4).state_dict()
    del state_dict["layer3.1.bn2.running_var"]
    del state_dict["conv1.weight"]
    state_dict["layer2.0.conv1.weight"] = torch.zeros(128, 64, 5, 5)
    state_dict["bn1.bias"] = torch.zeros(32)
    trunk = resnet18.build_resnet18(3, layer4_stride=1)
    before = [weight.numpy().copy() for weight in trunk.weights]
    with pytest.raises(ValueError) as raised:
        resnet18.load_torch_state_dict(trunk, state_dict)
    message = str(raised.value)
    for name in ("layer3.1.bn2.running_var", "conv1.weight", "layer2.0.conv1.weight", "bn1.bias"):
        assert name in message
    assert "4 problems" in message
    assert "got (128, 64, 5, 5), expected (128, 64, 3, 3)" in message
    assert all(np.array_equal(old, weight.numpy()) for old, weight in zip(before, trunk.weights))


def test_unexpected_tensor_for_a_known_layer_raises():
    state_dict = random_torchvision_resnet18(seed=5).state_dict()
    state_dict["layer1.0.conv1.bias"] = torch.zeros(64)  # torchvision convs have no bias
    with pytest.raises(ValueError, match=re.escape("layer1.0.conv1.bias")):
        resnet18.load_torch_state_dict(resnet18.build_resnet18(3), state_dict)


def test_wrong_prefix_raises():
    state_dict = random_torchvision_resnet18(seed=5).state_dict()
    with pytest.raises(ValueError, match="no key of the state dict starts with 'module.imgnet.'"):
        resnet18.load_torch_state_dict(resnet18.build_resnet18(3), state_dict, prefix="module.imgnet.")


def test_read_torch_checkpoint_rejects_unreadable_files(tmp_path):
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        resnet18.read_torch_checkpoint(garbage)
    with pytest.raises(ValueError, match="not found"):
        resnet18.read_torch_checkpoint(tmp_path / "missing.pth")


def test_convert_imagenet_rejects_wrong_sha256(tmp_path):
    fake = tmp_path / "resnet18-f37072fd.pth"
    fake.write_bytes(b"fake weights")
    got = hashlib.sha256(b"fake weights").hexdigest()
    output = tmp_path / "out.weights.h5"
    with pytest.raises(ValueError) as raised:
        resnet18.convert_imagenet(output, pth_path=fake)
    assert resnet18.IMAGENET_SHA256 in str(raised.value) and got in str(raised.value)
    assert not output.exists()


def test_convert_imagenet_end_to_end_and_any_stride_trunk_loads_it(tmp_path):
    torch_model = random_torchvision_resnet18(seed=6, layer4_stride=2)
    pth_path = tmp_path / "resnet18.pth"
    torch.save(torch_model.state_dict(), pth_path)
    output = tmp_path / "weights" / "resnet18_imagenet.weights.h5"
    written = resnet18.convert_imagenet(output, pth_path, expected_sha256=resnet18.file_sha256(pth_path))
    assert Path(written) == output and output.is_file()
    assert sorted(path.name for path in output.parent.iterdir()) == [output.name]  # no temp file left

    frame = torch.randn(1, 3, 160, 128, generator=torch.Generator().manual_seed(7))
    stride2_trunk = resnet18.build_resnet18(3, layer4_stride=2, name="vision")  # the model name does not matter
    resnet18.load_vision_weights(stride2_trunk, output)
    assert max_abs_difference(keras_forward(stride2_trunk, frame), torch_layer4(torch_model, frame)) <= TOLERANCE

    set_layer4_stride(torch_model, 1)
    stride1_trunk = resnet18.build_resnet18(3, layer4_stride=1)
    resnet18.load_vision_weights(stride1_trunk, output)
    torch_map = torch_layer4(torch_model, frame)
    assert tuple(torch_map.shape) == (1, 512, 10, 8)
    assert max_abs_difference(keras_forward(stride1_trunk, frame), torch_map) <= TOLERANCE


def test_load_vision_weights_rejects_a_file_that_does_not_fit(tmp_path):
    output = tmp_path / "vision.weights.h5"
    resnet18.build_resnet18(3).save_weights(output)
    with pytest.raises(ValueError, match="cannot load"):
        resnet18.load_vision_weights(resnet18.build_resnet18(1), output)  # 1-channel conv1
    with pytest.raises(ValueError, match="fc"):
        resnet18.load_vision_weights(resnet18.build_resnet18(3, include_top=True), output)  # no fc in the file
    with pytest.raises(ValueError, match="not found"):
        resnet18.load_vision_weights(resnet18.build_resnet18(3), tmp_path / "missing.weights.h5")


def run_cli(*arguments):
    return subprocess.run(
        [sys.executable, str(PROJECT_DIR / "resnet18.py"), *arguments],
        capture_output=True,
        text=True,
        cwd=PROJECT_DIR,
        timeout=120,
    )


def our_stderr_lines(stderr):
    """stderr without TensorFlow's native start-up log lines (which no Python setting silences)."""
    native_log = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl|To enable the following)")
    return [line for line in stderr.splitlines() if line.strip() and not native_log.match(line)]


def test_cli_help_and_errors(tmp_path):
    help_run = run_cli("--help")
    assert help_run.returncode == 0
    assert "--output" in help_run.stdout and "--pth" in help_run.stdout

    missing_run = run_cli("--output", str(tmp_path / "out.weights.h5"), "--pth", str(tmp_path / "missing.pth"))
    assert missing_run.returncode == 1
    assert "Traceback" not in missing_run.stderr
    lines = our_stderr_lines(missing_run.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:") and "missing.pth" in lines[0]

    fake = tmp_path / "fake.pth"
    fake.write_bytes(b"fake weights")
    wrong_run = run_cli("--output", str(tmp_path / "out.weights.h5"), "--pth", str(fake))
    assert wrong_run.returncode == 1
    assert "Traceback" not in wrong_run.stderr
    lines = our_stderr_lines(wrong_run.stderr)
    assert len(lines) == 1 and "sha256" in lines[0] and resnet18.IMAGENET_SHA256 in lines[0]

    suffix_run = run_cli("--output", str(tmp_path / "out.h5"), "--pth", str(fake))
    assert suffix_run.returncode == 2
    assert "Traceback" not in suffix_run.stderr
    assert "--output must end with .weights.h5" in suffix_run.stderr
    assert not (tmp_path / "out.weights.h5").exists()
