"""Drawing the model's heatmaps: the forward pass for drawing, four-panel figures, overlays and heatmap videos.

- heatmaps.py: the forward pass, frames as the model sees them, the four-panel figure, overlays (predict.py,
  evaluate.py's figures).
- prediction.py: what predict.py and app.py share: a checkpoint with its settings, one pair checked, the maps and
  four-panel figures of pairs.
- video_prediction.py: predict.py --video and app.py's videos: a heatmap video with its audio, a strip, saved maps.

May import: pipeline, safeguards, model (prediction.py loads checkpoints).
"""
