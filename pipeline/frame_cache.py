"""A folder of training frames already decoded and resized (train.py --cache DIR): later epochs and later runs read
them instead of decoding the JPEG again.

What is kept is the augmentation's fixed part, frames.training_resized (the frame decoded, at a reduced DCT scale
where it applies, and resized to the training size: 246 pixels on the shorter side at 224), as an uncompressed .npy
of uint8 (about 180 KB a 512 x 512 frame at 224, 26 GB for VGGSound's 144k). The random crop and flip are drawn
after it as without the cache, so a run with the cache reads the same pixels as one without, bit for bit.

A file is named by a hash of the frame's absolute path, size, modification time, image_size and resize mode, so
an edited frame, or other settings, make a new entry instead of reading a stale one. Entries are written to a
temporary file and renamed, so parallel readers and interrupted runs never see half a file. An entry that cannot be
read (truncated, damaged, of the wrong shape) is made again from the frame and rewritten; a folder that cannot be
written (read-only, disk full) is reported once and the run goes on without writing to it. Nothing is ever
deleted: remove the folder to free its space.

Usage:
    from pipeline.frame_cache import FrameCache
    from pipeline.frames import augmented_frame
    cache = FrameCache("/scratch/lvs_frames")
    pixels = augmented_frame("clip.jpg", 224, rng, cache=cache)   # 224 x 224 x 3 uint8
"""

import hashlib
import os
import sys
import tempfile
import threading

import numpy as np

ENTRY_VERSION = 1  # part of every entry's name: a change to what training_resized gives must raise it


class FrameCache:
    """Decoded, pre-resized training frames in a folder (see the module docstring).

    Args:
        folder: where the entries go; made if missing.

    Raises:
        ValueError (one line) when folder exists and is not a folder, or cannot be made.
    """

    def __init__(self, folder):
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise ValueError(f"--cache is a file, not a folder: {folder}")
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise ValueError(f"cannot make the cache folder {folder} ({error.strerror or error})") from None
        self.folder = folder
        self.write_failed = None  # the first reason a write failed; later entries are not written
        self._lock = threading.Lock()

    def entry_path(self, path, image_size, resize):
        """Where the entry of a frame at these settings is (a .npy under the folder, two-level by hash)."""
        status = os.stat(path)
        key = f"{ENTRY_VERSION}\0{os.path.abspath(path)}\0{status.st_size}\0{status.st_mtime_ns}\0{image_size}\0{resize}"
        digest = hashlib.sha1(key.encode("utf-8", "surrogateescape")).hexdigest()
        return os.path.join(self.folder, digest[:2], digest + ".npy")

    def get(self, path, image_size, resize, make):
        """The entry of a frame, made with make(path, image_size, resize) and written if missing or unreadable.

        Args:
            path: the frame file.
            image_size: the crop's side (part of the key).
            resize: "crop" or "squash" (part of the key).
            make: the function that decodes and resizes the frame (frames.training_resized).

        Returns:
            height x width x 3 uint8, both sides at least image_size.
        """
        entry = self.entry_path(path, image_size, resize)
        try:
            # mapped, not read: a damaged header that claims a huge shape fails here (the file is shorter than it
            # says) instead of allocating what it claims
            pixels = np.load(entry, mmap_mode="r", allow_pickle=False)
            if pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3 \
                    and min(pixels.shape[:2]) >= image_size:
                return np.array(pixels)  # a copy of what the file holds, the mapping closed
        except (OSError, ValueError, EOFError):  # missing, truncated or damaged: made again below
            pass
        pixels = make(path, image_size, resize)
        self._write(entry, pixels)
        return pixels

    def _write(self, entry, pixels):
        """Write an entry atomically; the first failure is reported once and turns writing off."""
        if self.write_failed is not None:
            return
        try:
            os.makedirs(os.path.dirname(entry), exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=os.path.dirname(entry), suffix=".partial")
            try:
                with os.fdopen(handle, "wb") as stream:
                    np.save(stream, pixels, allow_pickle=False)
                os.replace(temporary, entry)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError as error:
            with self._lock:
                if self.write_failed is None:
                    self.write_failed = error.strerror or str(error)
                    print(f"warning: the frame cache {self.folder} cannot be written ({self.write_failed}); training "
                          "goes on, decoding the frames that are not in it", file=sys.stderr)
