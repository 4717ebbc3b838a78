"""Drawing the model's heatmaps: the forward pass for drawing, four-panel figures, overlays and heatmap videos.

- heatmaps.py: the forward pass, frames as the model sees them, the four-panel figure, overlays (predict.py,
  evaluate.py's figures).
- video_prediction.py: predict.py --video: a heatmap video with its audio, a strip, saved maps.

May import: pipeline, safeguards.
"""
