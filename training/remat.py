"""Rematerialisation of the ResNet-18 towers (train.py --remat): keep each residual block's input, recompute the rest.

Without it, a train step keeps every convolution's, BatchNorm's and ReLU's activations of both towers until the
backward pass: about 0.17 GiB per sample at the paper's shapes (224 px frames, 257 x 671 spectrograms), so the
paper's batch of 256 would need ~45 GiB. With it, the forward pass of each segment (the stem, then each of the
eight BasicBlocks of a trunk) runs under keras.remat (tf.recompute_grad): only the segment's input is kept, and the
backward pass runs the segment's forward again just before its gradient. Same arithmetic, same loss and gradients.
Recomputing all nine costs one more forward pass; LVSModel recomputes the first seven (the stem, layer1 to layer3:
44 % of the forward's FLOPs at the paper's shapes) and lets layer4 keep its small maps (model.LVSModel.remat_segments).

The stem's maps are the largest (the audio stem's conv1 output is 10.6 MiB a sample at the paper's shapes), and
keras.remat recomputes a segment for the whole batch at once, so with the stem under keras.remat its backward pass
was the peak of a --remat step. With --remat the stems run in chunks of a few samples instead, forward and backward
(stem_in_chunks, model.LVSModel.remat_stem_chunk): the peak moves to layer1's blocks, about a fifth lower.

BatchNorm in training mode moves its running statistics in every forward call; the recomputation must not move
them a second time, so statistics_frozen() switches that off while the backward pass is built.

Usage (model.LVSModel(remat=True) does this inside its train step):

    segments = tower_segments(trunk)                          # trunk from resnet18.build_resnet18
    with tf.GradientTape() as tape:
        feature_map = call_in_segments(segments, frames, training=True)
        ...
    with statistics_frozen(batch_norm_layers):
        gradients = tape.gradient(loss, variables)
"""

import contextlib
import weakref

import keras
import tensorflow as tf

import resnet18

_SEGMENTS = weakref.WeakKeyDictionary()  # trunk -> its segments, built once, kept out of Keras' weight tracking


def segment_boundaries(network):
    """Names of the layers whose outputs end the segments: the stem's max pool, then every block's last ReLU."""
    names = ["maxpool"]
    for stage_name, _, _ in resnet18.STAGES:
        names += [f"{stage_name}_{index}_relu2" for index in range(resnet18.BLOCKS_PER_STAGE)]
    if network.get_layer(names[-1]).output is not network.outputs[0]:
        raise ValueError(f"{network.name}: rematerialisation needs a trunk without the classification top")
    return names


def tower_segments(network):
    """A resnet18.build_resnet18 trunk cut into its stem and its eight BasicBlocks.

    Args:
        network: a functional trunk of resnet18.build_resnet18 (include_top=False).

    Returns:
        A list of nine functional keras.Model, each from one boundary tensor to the next, sharing the trunk's
        layers and weights (nothing is copied): chaining them computes exactly the trunk.
    """
    if network not in _SEGMENTS:
        segments = []
        start = network.inputs[0]
        for name in segment_boundaries(network):
            end = network.get_layer(name).output
            segments.append(keras.Model(start, end, name=f"{network.name}_until_{name}"))
            start = end
        _SEGMENTS[network] = segments
    return _SEGMENTS[network]


def call_in_segments(segments, inputs, training, rematerialised=None, stem_chunk=None):
    """The trunk's forward, its first segments under keras.remat: their activations are recomputed in the backward.

    Args:
        segments: tower_segments(trunk).
        inputs: B x H x W x C tensor.
        training: BatchNorm in training mode.
        rematerialised: how many segments, from the first, run under keras.remat (None: all of them). The first
            ones hold the largest maps for the least compute: the stem alone (1) is most of the memory for 2 %
            of the work.
        stem_chunk: if set, a rematerialised stem runs stem_chunk samples at a time (stem_in_chunks) wherever
            chunked_stem_applies; otherwise under keras.remat like the other segments.

    Returns:
        The trunk's output, B x h x w x 512.
    """
    count = len(segments) if rematerialised is None else rematerialised
    outputs = inputs
    for index, segment in enumerate(segments):

        def forward(segment_inputs, segment=segment):
            return segment(segment_inputs, training=training)

        if index == 0 and count > 0 and stem_chunk and chunked_stem_applies(segment, inputs, training, stem_chunk):
            outputs = stem_in_chunks(segment, inputs, stem_chunk)
        else:
            outputs = keras.remat(forward)(outputs) if index < count else forward(outputs)
    return outputs


STEM_LAYERS = ("conv1_pad", "conv1", "bn1", "relu", "maxpool_pad", "maxpool")


def chunked_stem_applies(stem, inputs, training, chunk_size):
    """Whether stem_in_chunks can run this stem on these inputs and saves memory doing so.

    It needs a training call on a batch of known size larger than chunk_size, and a trainable bn1 of our own
    (resnet18.BatchNormalization) whose statistics come from this replica alone.
    """
    batch_norm = stem.get_layer("bn1")
    return (bool(training) and inputs.shape[0] is not None and inputs.shape[0] > chunk_size
            and isinstance(batch_norm, resnet18.BatchNormalization) and not batch_norm.synchronized
            and batch_norm.trainable and stem.get_layer("conv1").trainable)


def stem_in_chunks(stem, inputs, chunk_size):
    """The stem (conv1, bn1, relu, maxpool) in training mode, a few samples at a time, forward and backward.

    At the paper's shapes the audio stem's maps (64 x 129 x 336 a sample, 10.6 MiB in float32) are the largest of
    the network: keras.remat recomputes the stem for the whole batch in the backward pass, where its convolution,
    BatchNorm, ReLU and padded max-pool outputs and their gradients (~4 such maps a sample) are alive at once,
    the peak of a --remat step. Here no map larger than a chunk's ever exists. BatchNorm normalises with the whole
    batch's statistics, so the chunks are visited more than once:

        forward:  1. per chunk, conv1 -> its per-channel mean and variance, combined over chunks (Chan et al.);
                  2. per chunk, conv1 -> normalise -> relu -> max-pool, concatenated: the output;
        backward: 3. per chunk, recompute up to the max-pool, its gradient back to bn1's output (dy), summed
                     into sum(dy) and sum(dy * x_hat), the gradients of beta and gamma;
                  4. per chunk, recompute again, conv1's output gradient from BatchNorm's formula
                     dz = gamma / sqrt(var + eps) * (dy - sum(dy) / n - x_hat * sum(dy * x_hat) / n),
                     and conv1's kernel gradient from it, summed over chunks.

    Control dependencies chain the chunks, so the graph runs them one after another, and start the recomputation
    only once the output gradient exists. The same arithmetic as the layers (resnet18.Conv2D.convolution_op, the
    stem's padding, ReLU and max-pool layers, TensorFlow's gradients of them), BatchNorm's statistics in float32
    (float64 under a float64 policy) as the fused kernel keeps them; tests/test_remat.py checks the loss, every
    gradient and the running statistics against the plain step at float64. Costs two more conv1 passes than
    keras.remat (four and the kernel gradient, against two), about 1 % of a step at the paper's shapes.

    Args:
        stem: the trunk's first segment (tower_segments(trunk)[0]), with the layers named in STEM_LAYERS.
        inputs: B x H x W x C tensor with a known batch size B (the data: it gets no gradient).
        chunk_size: samples a chunk.

    Returns:
        The stem's output, B x H/4 x W/4 x 64 (what the segment returns), bn1's running statistics moved once.
    """
    padding, convolution, batch_norm, relu, pool_padding, pool = (stem.get_layer(name) for name in STEM_LAYERS)
    batch = inputs.shape[0]
    sizes = [min(chunk_size, batch - start) for start in range(0, batch, chunk_size)]
    compute_dtype = convolution.compute_dtype
    statistics_dtype = tf.float64 if compute_dtype == "float64" else tf.float32
    epsilon = batch_norm.epsilon

    def convolve(chunk, kernel):
        return convolution.convolution_op(padding(chunk), tf.cast(kernel, compute_dtype))  # c x h x w x 64

    def normalise(convolved, mean, inverse_deviation, gamma, beta):
        """(x_hat, bn1's output) in the statistics dtype, from conv1's output."""
        normalised_input = (tf.cast(convolved, statistics_dtype) - mean) * inverse_deviation
        return normalised_input, normalised_input * gamma + beta

    def pooled(normalised_output):
        return pool(pool_padding(relu(tf.cast(normalised_output, compute_dtype))))  # c x h/2 x w/2 x 64

    @tf.custom_gradient
    def stem_function(inputs, kernel, gamma, beta):
        chunks = tf.split(inputs, sizes)  # B x H x W x C -> chunks of c x H x W x C
        gamma, beta = tf.cast(gamma, statistics_dtype), tf.cast(beta, statistics_dtype)
        count = mean = squares = None  # samples x positions so far, their mean, sum of squared deviations
        dependencies = []
        for chunk in chunks:  # 1: statistics
            with tf.control_dependencies(dependencies):
                convolved = tf.cast(convolve(chunk, kernel), statistics_dtype)
            chunk_mean, chunk_variance = tf.nn.moments(convolved, axes=(0, 1, 2))
            chunk_count = tf.cast(tf.reduce_prod(tf.shape(convolved)[:3]), statistics_dtype)
            if mean is None:
                count, mean, squares = chunk_count, chunk_mean, chunk_variance * chunk_count
            else:
                total = count + chunk_count
                delta = chunk_mean - mean
                mean = mean + delta * chunk_count / total
                squares = squares + chunk_variance * chunk_count + delta * delta * count * chunk_count / total
                count = total
            dependencies = [mean, squares]
        variance = squares / count  # biased, what training normalises with
        inverse_deviation = tf.math.rsqrt(variance + epsilon)
        outputs = []
        for chunk in chunks:  # 2: the output
            with tf.control_dependencies(dependencies):
                _, normalised_output = normalise(convolve(chunk, kernel), mean, inverse_deviation, gamma, beta)
                outputs.append(pooled(normalised_output))
            dependencies = [outputs[-1]]
        unbiased_variance = variance * count / tf.maximum(count - 1, 1)

        def output_gradient_chunk(convolved, gradient_chunk):
            """(x_hat, dL/d bn1's output) of a chunk, recomputed from its conv1 output."""
            normalised_input, normalised_output = normalise(convolved, mean, inverse_deviation, gamma, beta)
            with tf.GradientTape() as tape:
                tape.watch(normalised_output)
                chunk_outputs = pooled(normalised_output)
            return normalised_input, tape.gradient(chunk_outputs, normalised_output, output_gradients=gradient_chunk)

        def gradient(output_gradient, *statistics_gradients):  # the statistics only move running averages
            gradient_chunks = tf.split(output_gradient, sizes)
            dependencies = [output_gradient]
            sum_dy = sum_dy_x_hat = 0
            for chunk, gradient_chunk in zip(chunks, gradient_chunks):  # 3: beta's and gamma's gradients
                with tf.control_dependencies(dependencies):
                    normalised_input, dy = output_gradient_chunk(convolve(chunk, kernel), gradient_chunk)
                    sum_dy += tf.reduce_sum(dy, axis=(0, 1, 2))
                    sum_dy_x_hat += tf.reduce_sum(dy * normalised_input, axis=(0, 1, 2))
                dependencies = [sum_dy, sum_dy_x_hat]
            kernel_gradient = 0
            for chunk, gradient_chunk in zip(chunks, gradient_chunks):  # 4: conv1's kernel gradient
                with tf.control_dependencies(dependencies):
                    with tf.GradientTape() as tape:
                        tape.watch(kernel)
                        convolved = convolve(chunk, kernel)
                    normalised_input, dy = output_gradient_chunk(convolved, gradient_chunk)
                    convolved_gradient = gamma * inverse_deviation * (dy - sum_dy / count
                                                                      - normalised_input * sum_dy_x_hat / count)
                    kernel_gradient += tape.gradient(convolved, kernel,
                                                     output_gradients=tf.cast(convolved_gradient, convolved.dtype))
                dependencies = [kernel_gradient]
            return (None, kernel_gradient, tf.cast(sum_dy_x_hat, batch_norm.gamma.dtype),
                    tf.cast(sum_dy, batch_norm.beta.dtype))

        return (tf.concat(outputs, axis=0), mean, unbiased_variance), gradient

    inputs = tf.cast(inputs, stem.inputs[0].dtype)  # as the functional segment does at its Input
    outputs, mean, unbiased_variance = stem_function(
        inputs, tf.convert_to_tensor(convolution.kernel), tf.convert_to_tensor(batch_norm.gamma),
        tf.convert_to_tensor(batch_norm.beta))
    if batch_norm.update_statistics:
        batch_norm.move_statistics(mean, unbiased_variance)
    return outputs


@contextlib.contextmanager
def statistics_frozen(batch_norm_layers):
    """While inside, training-mode BatchNorm calls leave the running statistics alone (see the module docstring).

    Args:
        batch_norm_layers: resnet18.BatchNormalization layers.
    """
    for layer in batch_norm_layers:
        if not isinstance(layer, resnet18.BatchNormalization):
            raise ValueError(f"{layer.name}: rematerialisation needs resnet18.BatchNormalization, not {type(layer)}")
        layer.update_statistics = False
    try:
        yield
    finally:
        for layer in batch_norm_layers:
            layer.update_statistics = True
