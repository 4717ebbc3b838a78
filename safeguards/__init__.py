"""What the scripts run with so that a run behaves: checked arguments, a quiet start, a locked run folder, atomic
writes and a watchdog (no traceback for bad input, no noise, no hang, no lost work).

- arguments.py: argparse value types that turn bad input into one usage line (positive_int, sample_rate, ...).
- atomic.py: write a file through a temporary name and os.replace, so an interrupted run never leaves half a file.
- interruption.py: SIGTERM / SIGINT recorded as a request to finish the step, save and exit (code 75).
- cpu_features.py: what the CPU computes natively (/proc/cpuinfo): its class for the benchmark tables, native
  bfloat16 (train.py --mixed_precision), whether TensorFlow should run on oneDNN.
- quiet_tensorflow.py: imports TensorFlow with its C++ start-up lines (absl, oneDNN, CUDA probing, CPU features)
  kept off the terminal and every other line passed on, and oneDNN on where it is faster; each script that uses
  TensorFlow imports it first.
- run_folder.py: train.py's --out_dir: checked before any work, locked to one run, its checkpoints (epoch ends and
  mid-epoch positions) named and listed.
- watchdog.py: a thread that dumps every stack and exits when no step completes for too long.

May import: nothing of the project (the standard library only; quiet_tensorflow.py also tensorflow).
"""
