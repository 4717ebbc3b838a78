"""Rematerialisation of the ResNet-18 towers (train.py --remat): keep each residual block's input, recompute the rest.

Without it, a train step keeps every convolution's, BatchNorm's and ReLU's activations of both towers until the
backward pass: about 0.17 GiB per sample at the paper's shapes (224 px frames, 257 x 671 spectrograms), so the
paper's batch of 256 would need ~45 GiB. With it, the forward pass of each segment (the stem, then each of the
eight BasicBlocks of a trunk) runs under keras.remat (tf.recompute_grad): only the segment's input is kept, and the
backward pass runs the segment's forward again just before its gradient. Same arithmetic, same loss and gradients.
Recomputing all nine costs one more forward pass; LVSModel recomputes the first seven (the stem, layer1 to layer3:
44 % of the forward's FLOPs at the paper's shapes) and lets layer4 keep its small maps (model.LVSModel.remat_segments).

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


def call_in_segments(segments, inputs, training, rematerialised=None):
    """The trunk's forward, its first segments under keras.remat: their activations are recomputed in the backward.

    Args:
        segments: tower_segments(trunk).
        inputs: B x H x W x C tensor.
        training: BatchNorm in training mode.
        rematerialised: how many segments, from the first, run under keras.remat (None: all of them). The first
            ones hold the largest maps for the least compute: the stem alone (1) is most of the memory for 2 %
            of the work.

    Returns:
        The trunk's output, B x h x w x 512.
    """
    count = len(segments) if rematerialised is None else rematerialised
    outputs = inputs
    for index, segment in enumerate(segments):

        def forward(segment_inputs, segment=segment):
            return segment(segment_inputs, training=training)

        outputs = keras.remat(forward)(outputs) if index < count else forward(outputs)
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
