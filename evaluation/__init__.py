"""Scoring sound-source localisation the way the field scores it: ground truth, protocols, metrics and figures.

- annotations.py: the ground truth of VGG-SS and Flickr SoundNet, and their test lists.
- protocols.py: the LVS, EZ-VSL and SLAVC protocols, each one object (frame transform, audio window,
  upsampling, binarisation, confidence, OGL mixing); scoring an item is one call on it.
- metrics.py: cIoU, the success rate at 0.5 and AUC, the centred-box baseline.
- extended_metrics.py: AP, max-F1 and LocAcc of SLAVC's extended test sets (negatives included).
- extended_sets.py: SLAVC's extended test lists and their negative pairs.
- object_guidance.py: the ImageNet ResNet-18 object map of object-guided localisation (OGL).
- maps.py: a model's raw maps for every pair, read as a protocol says.
- scores.py: the per-item scores and their summaries (evaluate.py's rows).
- checks.py: what evaluate.py warns about (test items in the training set, cropped boxes, tiled audio).
- figures.py: the cIoU histogram, the precision-recall curve, overlays with the ground-truth boxes.

May import: pipeline, visualization, resnet18 (the object network of OGL).
"""
