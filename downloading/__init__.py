"""Building VGGSound / VGG-SS frame/wav pairs (vggss_dl.py): item lists, held-out test items, cutting, child processes.

- item_lists.py: names, the VGG-SS json, the published training lists, selection of items.
- held_out.py: the shipped test lists and which names of a training set are on them (train.py warns with it).
- clip_cutting.py: one frame/wav pair out of a clip, with ffprobe and ffmpeg.
- child_processes.py: ffmpeg / yt-dlp children that end in time and never outlive the run.

May import: pipeline, evaluation (annotations.py: the test sets' names).
"""
