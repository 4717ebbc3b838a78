"""Write files atomically: to a temporary name in the same folder, then os.replace onto the real name.

An interrupted run leaves either the old file or the new one, never a truncated one.

Usage:
    from safeguards.atomic import atomic_path
    with atomic_path("runs/demo/loss_curve.png") as temporary:
        figure.savefig(temporary, format="png")
"""

import contextlib
import os


@contextlib.contextmanager
def atomic_path(path):
    """A temporary path to write in place of `path`; renamed onto it when the block ends without error.

    The temporary name keeps the file's extension (Keras and matplotlib read it), e.g. a.partial-123.keras.

    Args:
        path: the final file path; its folder is created if missing.

    Yields:
        The temporary path to write to.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    stem, extension = os.path.splitext(os.path.basename(path))
    if stem.endswith(".weights"):  # keep Keras' double extension .weights.h5
        stem, extension = stem[: -len(".weights")], ".weights" + extension
    temporary = os.path.join(folder, f".{stem}.partial-{os.getpid()}{extension}")
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text(path, text):
    """Write a text file atomically.

    Args:
        path: the final file path.
        text: its whole content.
    """
    with atomic_path(path) as temporary:
        with open(temporary, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
