"""What keeps a run from ending in a traceback, a hang or lost work: checked arguments, a locked run folder,
atomic writes and a watchdog.

- arguments.py: argparse value types that turn bad input into one usage line (positive_int, sample_rate, ...).
- atomic.py: write a file through a temporary name and os.replace, so an interrupted run never leaves half a file.
- run_folder.py: train.py's --out_dir: checked before any work, locked to one run, its checkpoints listed.
- watchdog.py: a thread that dumps every stack and exits when no step completes for too long.

May import: nothing of the project (the standard library only).
"""
