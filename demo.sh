#!/usr/bin/env bash
# The whole job on the shipped demo set, on a CPU: create the environment, train LVS from scratch on
# data/demo/train, draw four-panel figures for held-out items and score cIoU/AUC for the untrained model,
# a centred-box baseline and the trained model, and draw the heatmap video of the demo clip. Takes about 3.5 minutes on 2 CPU cores once .venv is installed.
#   bash demo.sh                 (outputs in runs/demo/)
set -euo pipefail
cd "$(dirname "$0")"
bash setup.sh
PYTHON=.venv/bin/python
OUT=runs/demo
# Reduced sizes for a CPU: 112 px frames (7 x 7 maps), 0.5 s of 8 kHz audio, batch 32, no ImageNet weights.
SIZES=(--image_size 112 --sample_rate 8000 --audio_seconds 0.5 --image_weights none --seed 0 --deterministic)
EVALUATE=(--data_dir data/demo/test --annotations data/demo/test_annotations.json)

$PYTHON train.py --data_dir data/demo/train --out_dir "$OUT/untrained" --epochs 0 "${SIZES[@]}"
$PYTHON train.py --data_dir data/demo/train --out_dir "$OUT/trained" --epochs 8 --batch_size 32 --lr 5e-4 "${SIZES[@]}"
$PYTHON predict.py --checkpoint "$OUT/trained/model.keras" --data_dir data/demo/test --out_dir "$OUT/predictions" --limit 8
# The demo clip (data/make_demo_video.py): a heatmap video, a strip and how often the map follows the sounding object.
$PYTHON predict.py --checkpoint "$OUT/trained/model.keras" --video data/demo/demo_video.mp4 --out_dir "$OUT/video" --save_heatmaps
$PYTHON data/make_demo_video.py --score "$OUT/video/demo_video" > "$OUT/video_score.txt"
$PYTHON evaluate.py --checkpoint "$OUT/untrained/model.keras" "${EVALUATE[@]}" --out_dir "$OUT/eval_untrained" > "$OUT/eval_untrained.txt"
$PYTHON evaluate.py --baseline centre "${EVALUATE[@]}" --out_dir "$OUT/eval_centre" > "$OUT/eval_centre.txt"
$PYTHON evaluate.py --checkpoint "$OUT/trained/model.keras" "${EVALUATE[@]}" --out_dir "$OUT/eval_trained" --figures 6 > "$OUT/eval_trained.txt"

echo
echo "Held-out demo items (data/demo/test), the paper's protocol:"
printf '  %-18s %s\n' "untrained model" "$(tail -n 1 "$OUT/eval_untrained.txt")"
printf '  %-18s %s\n' "centred box" "$(tail -n 1 "$OUT/eval_centre.txt")"
printf '  %-18s %s\n' "trained model" "$(tail -n 1 "$OUT/eval_trained.txt")"
echo "Demo clip: $(cat "$OUT/video_score.txt")"
echo "Loss curve: $OUT/trained/loss_curve.png; figures: $OUT/predictions/ and $OUT/eval_trained/figures/"
echo "Heatmap video and strip: $OUT/video/demo_video_heatmap.mp4, $OUT/video/demo_video_strip.png"
echo "The web demo with this model (then open http://127.0.0.1:7860):"
echo "  $PYTHON app.py --checkpoint $OUT/trained/model.keras"
