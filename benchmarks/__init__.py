"""What bench.py measures with, and the PyTorch reference network it measures (and the tests check) against.

- torch_reference.py: the LVS network and loss in PyTorch, in the official layout.
- steps.py: the train steps and forwards timed, ours and PyTorch's, each row in a fresh process.
- memory.py: peak memory of training runs, each in a guarded subprocess.
- host_memory.py: a cap on TensorFlow's host allocator, for capped memory runs.
- video_speed.py: how fast predict.py --video runs, next to the PyTorch forward.
- pipeline_speed.py: how fast the training input pipeline runs on vggss_dl.py's files, per core and on all cores,
  next to the official preprocessing in a PyTorch DataLoader.
- machine_load.py: how busy the machine was while it measured (load average, other processes' CPU time).
- checkpoint_cost.py: what a mid-epoch checkpoint of train.py costs at the paper's shapes, and --checkpoint_every's
  overhead.
- kernel_breakdown.py: where the float32 train step's time goes, oneDNN primitive by primitive, ours against
  PyTorch's, from oneDNN's verbose log.
- tables.py: BENCHMARKS.md from the measurements.

May import: pipeline, safeguards, training, visualization, loss, resnet18, model.
"""
