"""Object-guided localisation (OGL, EZ-VSL / SLAVC test.py): the object map that is mixed with the audio-visual map.

The object map comes from an ImageNet ResNet-18 (torchvision's layout, layer4 at its usual stride 2, so a 224 x 224
frame gives 7 x 7 x 512): the mean over channels of |layer4| (EZ-VSL's NormReducer), a 7 x 7 map. How it is
scored is the protocol's (protocols.py: Protocol.score_item with an object map): like the audio-visual map it is
upsampled by the protocol, then mixed by the protocol's rule (Protocol.mix_object):
- slavc / lvs ("ranges"): both maps scaled from fixed ranges ([-1, 1] for LVS's cosine map, [0, 2.5] for the
  object map, SLAVC test.py's obj_min, obj_max) and mixed: alpha * av + (1 - alpha) * obj;
- ezvsl ("min_max"): both maps min-max normalised (utils.normalize_img) and mixed the same way, then normalised again.
The mixed map is thresholded by the protocol's rule like any map. alpha = 0.4 in both papers.

Usage:
    from evaluation.object_guidance import ObjectMapper
    from evaluation.protocols import PROTOCOLS
    mapper = ObjectMapper("weights/resnet18_imagenet.weights.h5")
    object_maps = mapper(frames)                                             # batch x 7 x 7
    scores = PROTOCOLS["ezvsl"].score_item(similarity_map, ground_truth, (-1.0, 1.0), object_maps[0], alpha=0.4)
    mixed = PROTOCOLS["ezvsl"].mix_object(av_large, object_large, 0.4)       # 224 x 224, the rule alone
"""

import os

import numpy as np

import resnet18

DEFAULT_WEIGHTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "weights", "resnet18_imagenet.weights.h5")


class ObjectMapper:
    """The object saliency map of frames: mean over channels of |layer4| of an ImageNet ResNet-18.

    Args:
        weights_path: a .weights.h5 file written by resnet18.py (convert_imagenet).

    Raises:
        ValueError: if the file is missing or does not fit a ResNet-18 (one line, naming the file).
    """

    def __init__(self, weights_path=DEFAULT_WEIGHTS):
        if not os.path.isfile(weights_path):
            raise ValueError(f"ImageNet ResNet-18 weights not found: {weights_path} (make them with "
                             "`python resnet18.py --output weights/resnet18_imagenet.weights.h5`, or pass --image_weights)")
        self.trunk = resnet18.build_resnet18(3, layer4_stride=2, name="object_saliency")
        resnet18.load_vision_weights(self.trunk, weights_path)

    def __call__(self, frames):
        """frames: batch x S x S x 3 ImageNet-normalised -> batch x S/32 x S/32 object maps (float32 numpy)."""
        features = np.asarray(self.trunk(frames, training=False))  # batch x h x w x 512
        return np.abs(features).mean(axis=-1)  # NormReducer(dim=channels): batch x h x w
