"""optimizer.TorchAdam against torch.optim.Adam / AdamW on the same parameters and gradients, and the official
LVS initialisation of a tower trained from scratch (model.initialise_like_official)."""

import numpy as np
import pytest
import torch
import keras

from model import build_model
from training.optimizer import TORCH_EPSILON, TorchAdam


def torch_and_keras_steps(torch_class, keras_optimizer, torch_arguments, steps=3, seed=0):
    """Apply the same gradient sequence with both optimizers; return (torch parameters, Keras variables)."""
    rng = np.random.default_rng(seed)
    shapes = [(3, 3, 4, 5), (7,), (1,)]
    start = [rng.normal(size=shape).astype(np.float32) for shape in shapes]
    gradients = [[rng.normal(scale=scale, size=shape).astype(np.float32) for shape in shapes]
                 for scale in (1.0, 1e-3, 10.0)[:steps]]
    gradients[1][2][:] = 0.0  # a zero gradient: only the decay (and the moments) move the weight
    parameters = [torch.nn.Parameter(torch.tensor(value)) for value in start]
    reference = torch_class(parameters, **torch_arguments)
    variables = [keras.Variable(value) for value in start]
    for step_gradients in gradients:
        for parameter, gradient in zip(parameters, step_gradients):
            parameter.grad = torch.tensor(gradient)
        reference.step()
        keras_optimizer.apply([keras.ops.convert_to_tensor(gradient) for gradient in step_gradients], variables)
    return [parameter.detach().numpy() for parameter in parameters], [variable.numpy() for variable in variables], start


@pytest.mark.parametrize("weight_decay", [0.0, 1e-4, 0.5])
def test_weight_decay_is_torch_adams_l2_term(weight_decay):
    expected, got, start = torch_and_keras_steps(
        torch.optim.Adam, TorchAdam(learning_rate=1e-2, weight_decay=weight_decay),
        dict(lr=1e-2, weight_decay=weight_decay))
    for reference, value, initial in zip(expected, got, start):
        np.testing.assert_allclose(value, reference, rtol=1e-5, atol=1e-7)
        assert not np.allclose(value, initial)


def test_adamw_is_torch_adamw():
    expected, got, _ = torch_and_keras_steps(
        torch.optim.AdamW, TorchAdam(learning_rate=1e-2, weight_decay=0.3, decoupled=True),
        dict(lr=1e-2, weight_decay=0.3))
    for reference, value in zip(expected, got):
        np.testing.assert_allclose(value, reference, rtol=1e-5, atol=1e-7)
    # and it is not the L2 kind: the two differ on the same gradients
    l2, _, _ = torch_and_keras_steps(torch.optim.Adam, TorchAdam(learning_rate=1e-2), dict(lr=1e-2, weight_decay=0.3))
    assert not np.allclose(l2[0], expected[0])


def test_epsilon_is_torchs_where_it_matters_at_tiny_gradients():
    assert TORCH_EPSILON == torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]).defaults["eps"] == 1e-8
    gradient = np.array([1e-8, -3e-8, 1e-6], np.float32)  # comparable to eps: the step depends on where it sits
    parameter = torch.nn.Parameter(torch.zeros(3))
    parameter.grad = torch.tensor(gradient)
    torch.optim.Adam([parameter], lr=0.1).step()
    ours, stock = keras.Variable(np.zeros(3, np.float32)), keras.Variable(np.zeros(3, np.float32))
    TorchAdam(learning_rate=0.1).apply([keras.ops.convert_to_tensor(gradient)], [ours])
    keras.optimizers.Adam(learning_rate=0.1).apply([keras.ops.convert_to_tensor(gradient)], [stock])
    # torch's first step is -lr * g / (|g| + eps): -0.05 at g = eps
    np.testing.assert_allclose(parameter.detach().numpy(), -0.1 * gradient / (np.abs(gradient) + 1e-8), rtol=1e-5)
    np.testing.assert_allclose(ours.numpy(), parameter.detach().numpy(), rtol=1e-5)
    assert abs(stock.numpy()[0]) < 0.01  # Keras' Adam moves 15x less there


def test_decay_survives_a_config_round_trip_and_can_change():
    optimizer = TorchAdam.from_config(TorchAdam(learning_rate=3e-4, weight_decay=1e-4).get_config())
    assert optimizer.decay_value == pytest.approx(1e-4) and not optimizer.decoupled
    optimizer.set_weight_decay(2e-3)
    assert optimizer.l2_weight_decay == pytest.approx(2e-3) and optimizer.weight_decay is None
    decoupled = TorchAdam.from_config(TorchAdam(weight_decay=0.01, decoupled=True).get_config())
    assert decoupled.weight_decay == pytest.approx(0.01) and decoupled.l2_weight_decay == 0.0


def test_a_tower_trained_from_scratch_starts_like_the_official_model():
    keras.utils.set_random_seed(3)
    model = build_model(image_weights="none", image_size=64, sample_rate=8000, audio_seconds=0.65)
    for tower in (model.audio, model.vision):
        for layer_name in ("conv1", "layer2_0_conv1", "layer3_1_conv2", "layer4_0_downsample_0"):
            kernel = tower.get_layer(layer_name).kernel.numpy()  # kh x kw x in x out
            height, width, _, out_channels = kernel.shape
            expected = np.sqrt(2.0 / (out_channels * height * width))  # kaiming_normal_, fan_out, relu
            # the std of n normal draws has a relative standard error of 1 / sqrt(2 n): allow 5 of them
            tolerance = 5 / np.sqrt(2 * kernel.size)
            assert abs(kernel.std() / expected - 1) < tolerance, (tower.name, layer_name, kernel.std(), expected)
            assert abs(kernel.mean()) < 5 * expected / np.sqrt(kernel.size)
        gammas = np.concatenate([layer.gamma.numpy() for layer in model.batch_norm_layers() if layer in tower.layers])
        betas = np.concatenate([layer.beta.numpy() for layer in model.batch_norm_layers() if layer in tower.layers])
        assert abs(gammas.mean() - 1) < 5 * 0.02 / np.sqrt(gammas.size)
        assert abs(gammas.std() / 0.02 - 1) < 5 / np.sqrt(2 * gammas.size)
        assert np.all(betas == 0)
    torch_conv = torch.nn.Conv2d(64, 128, 3, bias=False)
    torch.nn.init.kaiming_normal_(torch_conv.weight, mode="fan_out", nonlinearity="relu")
    keras_kernel = model.audio.get_layer("layer2_0_conv1").kernel.numpy()
    # the same distribution as torch's own kaiming_normal_ on the same shape (1 / sqrt(2n) relative error each)
    assert abs(keras_kernel.std() / torch_conv.weight.std().item() - 1) < 10 / np.sqrt(2 * keras_kernel.size)
