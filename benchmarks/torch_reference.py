"""The LVS network and loss in PyTorch, in the official layout (NCHW, layer4 stride 1, max-pooled audio).

It is the reference the Keras model is checked against (tests) and timed against (bench.py). The towers are
torchvision ResNet-18s; the audio tower's first conv takes 1 channel (the official checkpoint calls it
conv1_a). The loss follows the paper's equations (loss.py) with the j == i easy negative excluded outright, like loss.py.

Import it before TensorFlow (torchvision segfaults when imported after TensorFlow in one process).

Usage:
    from benchmarks.torch_reference import TorchLVS, torch_lvs_loss
    network = TorchLVS()
    frame_features, audio_features = network(frames_nchw, spectrograms_nchw)
    loss = torch_lvs_loss(frame_features, audio_features)
"""

import torch
import torch.nn.functional as functional
import torch.utils.checkpoint
import torchvision


def torch_resnet18_trunk(input_channels=3, layer4_stride=1, checkpoint=0):
    """torchvision's ResNet-18 up to layer4, with `input_channels` inputs and layer4's first block at `layer4_stride`.

    Args:
        input_channels: 3 for frames, 1 for spectrograms.
        layer4_stride: 1 (LVS) or 2 (torchvision).
        checkpoint: while gradients are recorded, run this many segments (the stem, then the eight BasicBlocks:
            training/remat.py's segments), from the first, under torch.utils.checkpoint: only each one's input is kept, its
            forward runs again in the backward pass (BatchNorm's running statistics then move in both runs, as
            torch.utils.checkpoint does).

    Returns:
        The torchvision ResNet-18 module (its forward is replaced by the trunk's: no pooling, no fc).
    """
    network = torchvision.models.resnet18(weights=None)
    if input_channels != 3:
        network.conv1 = torch.nn.Conv2d(input_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    network.layer4[0].conv1.stride = (layer4_stride, layer4_stride)
    network.layer4[0].downsample[0].stride = (layer4_stride, layer4_stride)

    def stem(inputs):
        return network.maxpool(network.relu(network.bn1(network.conv1(inputs))))

    segments = [stem] + [block for layer in (network.layer1, network.layer2, network.layer3, network.layer4)
                         for block in layer]

    def trunk_forward(inputs):
        outputs = inputs
        for index, segment in enumerate(segments):
            if index < checkpoint and torch.is_grad_enabled():
                outputs = torch.utils.checkpoint.checkpoint(segment, outputs, use_reentrant=False)
            else:
                outputs = segment(outputs)
        return outputs

    network.forward = trunk_forward
    return network


class TorchLVS(torch.nn.Module):
    """The two towers with L2-normalised outputs (the official AVENet without its loss).

    Args:
        layer4_stride: the vision tower's layer4 stride.
        checkpoint: segments of each tower run under torch.utils.checkpoint (torch_resnet18_trunk).
    """

    def __init__(self, layer4_stride=1, checkpoint=0):
        super().__init__()
        self.imgnet = torch_resnet18_trunk(3, layer4_stride, checkpoint)
        self.audnet = torch_resnet18_trunk(1, 1, checkpoint)

    def forward(self, frames, spectrograms):
        """frames B x 3 x H x W, spectrograms B x 1 x 257 x T -> (B x 512 x h x w, B x 512), both L2-normalised."""
        frame_features = functional.normalize(self.imgnet(frames), dim=1)
        audio_maps = self.audnet(spectrograms)  # B x 512 x f x t
        audio_features = functional.adaptive_max_pool2d(audio_maps, 1).flatten(1)  # B x 512
        return frame_features, functional.normalize(audio_features, dim=1)

    def load_official_state_dict(self, state_dict):
        """Load an official LVS checkpoint's tensors ('module.imgnet.*', 'module.audnet.*', conv1_a for audio)."""
        for tower_name, first_conv in (("imgnet", "conv1"), ("audnet", "conv1_a")):
            tower = getattr(self, tower_name)
            wanted = set(tower.state_dict())
            tensors = {}
            for key, value in state_dict.items():
                key = key[len("module."):] if key.startswith("module.") else key
                if not key.startswith(tower_name + "."):
                    continue
                key = key[len(tower_name) + 1:]
                if key.startswith(first_conv + "."):
                    key = "conv1." + key[len(first_conv) + 1:]
                elif key.split(".")[0] in ("conv1", "conv1_a", "conv1_flow", "fc"):
                    continue
                tensors[key] = value
            tower.load_state_dict({key: value for key, value in tensors.items() if key in wanted}, strict=False)
            missing = wanted - set(tensors) - {key for key in wanted if key.startswith("fc.")}
            if missing:
                raise ValueError(f"{tower_name}: missing {sorted(missing)}")


def torch_lvs_loss(frame_features, audio_features, eps_pos=0.65, eps_neg=0.4, tau=0.03, temperature=0.07):
    """The LVS loss in PyTorch with the hard negative and the trimap, j == i excluded outright.

    Args:
        frame_features: B x C x h x w, L2-normalised.
        audio_features: B x C, L2-normalised.

    Returns:
        The scalar mean cross-entropy with the positive at index 0.
    """
    batch = frame_features.shape[0]
    all_maps = torch.einsum("nchw,mc->nmhw", frame_features, audio_features)  # B x B x h x w
    own_maps = torch.einsum("nchw,nc->nhw", frame_features, audio_features)  # B x h x w
    positive_mask = torch.sigmoid((own_maps - eps_pos) / tau)
    hard_mask = 1 - torch.sigmoid((own_maps - eps_neg) / tau)
    easy_masks = torch.sigmoid((all_maps - eps_pos) / tau)
    positive = (positive_mask * own_maps).flatten(1).sum(1) / positive_mask.flatten(1).sum(1)  # B
    hard = (hard_mask * own_maps).flatten(1).sum(1) / hard_mask.flatten(1).sum(1)  # B
    easy = (easy_masks * all_maps).flatten(2).sum(2) / easy_masks.flatten(2).sum(2)  # B x B
    off_diagonal = ~torch.eye(batch, dtype=torch.bool, device=easy.device)
    easy = easy[off_diagonal].view(batch, batch - 1)  # B x (B - 1)
    logits = torch.cat([positive[:, None], easy, hard[:, None]], dim=1) / temperature
    return functional.cross_entropy(logits, torch.zeros(batch, dtype=torch.long, device=logits.device))


def random_official_state_dict(layout_path, seed=0):
    """Random tensors in the exact layout of an official LVS checkpoint (for tests: no real one is reachable).

    Args:
        layout_path: lvs_state_dict_keys.tsv (key, shape as AxBxC, dtype; num_batches_tracked is a scalar).
        seed: torch generator seed.

    Returns:
        A dict key -> tensor. Conv weights are He-scaled and BatchNorm scales below 1, so activations keep their
        size through the network and an absolute tolerance of 1e-4 stays meaningful; variances are positive.
    """
    generator = torch.Generator().manual_seed(seed)
    state_dict = {}
    with open(layout_path) as handle:
        header = next(handle).rstrip("\n").split("\t")
        if header != ["key", "shape", "dtype"]:
            raise ValueError(f"{layout_path}: unexpected header {header}")
        for line in handle:
            key, shape_text, dtype = line.rstrip("\n").split("\t")
            shape = tuple(int(size) for size in shape_text.split("x")) if shape_text else ()
            if dtype == "int64":
                state_dict[key] = torch.tensor(1000, dtype=torch.int64)
            elif key.endswith("running_var"):
                state_dict[key] = torch.rand(shape, generator=generator) * 1.5 + 0.5
            elif key.endswith(("running_mean", "bias")):
                state_dict[key] = torch.randn(shape, generator=generator) * 0.2
            elif len(shape) == 1:  # BatchNorm scale
                state_dict[key] = torch.rand(shape, generator=generator) * 0.5 + 0.25
            else:  # conv or fc weight
                fan_in = 1
                for size in shape[1:]:
                    fan_in *= size
                state_dict[key] = torch.randn(shape, generator=generator) * (2.0 / fan_in) ** 0.5
    return state_dict
