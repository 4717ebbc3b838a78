#!/usr/bin/env bash
# Refresh the README's demo figures from the outputs of `bash demo.sh` (runs/demo/): the loss curve, a
# prediction, an evaluation figure (the item ranked 23rd of 110 by cIoU), the cIoU histogram, the demo clip's
# heatmap video, strip and GIF (the video at 8 frames/s and 192 px, one shared palette), and a screenshot of
# app.py's page with the trained model after the demo clip (headless Chromium: apt-get install chromium).
#   bash demo.sh && bash images/update.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=runs/demo
if [ ! -f "$RUNS/trained/loss_curve.png" ] || [ ! -f "$RUNS/video/demo_video_heatmap.mp4" ]; then
  echo "error: $RUNS has no finished demo run: run 'bash demo.sh' first" >&2
  exit 1
fi
evaluation=("$RUNS"/eval_trained/figures/023_*.png)
cp "$RUNS/trained/loss_curve.png" images/demo_loss_curve.png
cp "$RUNS/predictions/demo_test_0001.png" images/demo_prediction.png
cp "${evaluation[0]}" images/demo_evaluation.png
cp "$RUNS/eval_trained/ciou_histogram.png" images/demo_ciou_histogram.png
cp "$RUNS/video/demo_video_heatmap.mp4" images/demo_video_heatmap.mp4
cp "$RUNS/video/demo_video_strip.png" images/demo_video_strip.png
ffmpeg -v error -y -i "$RUNS/video/demo_video_heatmap.mp4" \
  -vf "fps=8,scale=192:-1:flags=lanczos,split[frames][copy];[copy]palettegen[palette];[frames][palette]paletteuse" \
  images/demo_video.gif
.venv/bin/python tests/app_browser.py --checkpoint "$RUNS/trained/model.keras" --screenshot images/app_screenshot.png
.venv/bin/python tests/tensorboard_browser.py --logdir "$RUNS/trained/tensorboard" --screenshot images/tensorboard_heatmaps.png
echo "images/ refreshed from $RUNS"
