"""Training batches prepared by a tf.data service (train.py --data_service): CPU hosts decode, the GPU host trains.

The dispatcher and the workers are data_service.py. The training process registers a dataset whose graph holds
everything the workers need (the pair list and the run's settings), so a worker needs no flags of the run:
- Its source is the run's global batch numbers. Batch g is batch g % P of pass g // P (P batches a pass), and holds
  the pairs that the local pipeline's batch g holds (preprocessing.pass_permutation: the same per-pass shuffle).
- A worker decodes a batch with TensorFlow ops (tensorflow_decode.py: workers cannot run the client's Python), and
  drops an item whose file fails to decode (ignore_errors, logged by the worker).
- The job runs in "distributed_epoch" mode: the dispatcher hands each batch number to one worker.
On the training side, the batches arrive in any order; they are put back in order, so a run reads the batches the
local pipeline would, in its order (a resumed run too). A batch that has not arrived while REORDER_WINDOW later ones
wait (its worker was stopped or restarted: the service does not hand a lost split to another worker), by the end of
the stream, or when no batch at all has come for STALL_SECONDS (a worker stopped for good leaves a job that never
ends), is asked for again as a job of its own, read until its batches are in; a copy that arrives late is dropped.
Each batch is read once.
A pair that failed to decode is named on the training side and the later batches move up, as the local pipeline
does. With an audit function, the end of each pass is reported: how many pairs it read, each once, and the sha256 of
their sorted names (train.py writes these lines to OUT_DIR/data_service.log).

Usage:
    from pipeline.service_dataset import service_batches
    batches = service_batches(pairs, settings, batch_size=256, service="grpc://dispatcher:5050", seed=0)
"""

import hashlib
import os
import queue
import re
import socket
import threading

import numpy as np
import tensorflow as tf
from tqdm import tqdm

from pipeline.audio import audio_info
from pipeline.frames import RESIZE_MODES
from pipeline.preprocessing import NATIVE, PROGRESS_FROM, check_settings, pass_permutation, printable, report_skip
from pipeline.tensorflow_decode import decode_training_frame, decode_training_waveform

REORDER_WINDOW = 16  # batches held while an earlier one is missing; then it is asked for again
STALL_SECONDS = 120  # no batch at all for this long: the batches awaited are lost (their worker stopped for good)
MAX_STALL_SECONDS = 7 * 24 * 3600  # the longest wait accepted (a queue's timeout has a ceiling)
MAX_REQUESTS = 3  # times a lost batch is asked for before the run stops
DISPATCHER_TIMEOUT_SECONDS = 10  # a dispatcher that does not accept a connection by then is down or elsewhere
ARRIVALS_HELD = 2  # batches a job's reader holds for the training side (memory stays bounded)
ADDRESS = re.compile(r"^grpc://([A-Za-z0-9.\-_]+|\[[0-9A-Fa-f:]+\]):([0-9]{1,5})$")
PYTHON_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Lost): ")  # "RuntimeError: why", last of a traceback
CONVERT_HINT = "convert with: ffmpeg -i IN -ac 1 -ar RATE -c:a pcm_s16le OUT.wav"


def check_address(address):
    """Check a data service address: grpc://HOST:PORT.

    Args:
        address: the --data_service value.

    Returns:
        (host, port).

    Raises:
        ValueError naming the expected form.
    """
    match = ADDRESS.match(address)
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise ValueError(f"--data_service must be grpc://HOST:PORT (the dispatcher's), got {address!r}")
    return match.group(1).strip("[]"), int(match.group(2))


def check_dispatcher(host, port, timeout=DISPATCHER_TIMEOUT_SECONDS):
    """Refuse a dispatcher that does not accept a connection (a worker or a run would wait for it without a word).

    Args:
        host, port: the dispatcher's address.
        timeout: seconds to wait for the connection.

    Raises:
        ValueError naming the address, why, and the command that starts a dispatcher.
    """
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as error:
        raise ValueError(f"cannot reach the data service dispatcher at {host}:{port} ({error}); start it first: "
                         f"python data_service.py --dispatcher --port {port}") from None


def error_cause(error):
    """The line that says why reading the service's batches failed.

    Args:
        error: the tf.errors.OpError the training loop got (a Python error raised in a dataset arrives wrapped in
            one, its traceback included).

    Returns:
        The last Python error line in it ("ServiceLost: ...", without the module path), else its first line other
        than "Graph execution error:", TensorFlow's "{{function_node ...}} " prefix removed (the error's class name
        if it has no text).
    """
    lines = [re.sub(r"^\{\{[^}]*\}\}\s*", "", line.strip()) for line in str(error).splitlines()]
    lines = [line for line in lines if line and line != "Graph execution error:"]
    python_errors = [re.sub(r"^[\w.]*\.(?=\w+: )", "", line) for line in lines if PYTHON_ERROR_LINE.match(line)]
    return python_errors[-1] if python_errors else (lines or [type(error).__name__])[0]


def check_service_pairs(pairs, settings):
    """Refuse, before the run, what the workers' TensorFlow decoders cannot read.

    Args:
        pairs: list of preprocessing.Pair.
        settings: preprocessing dict; sample_rate must be a number (not "native").

    Raises:
        ValueError: "native" rates, or audio that is not a mono 16-bit PCM wav at the run's rate (counted, the first
        named, with the ffmpeg command that converts it).
    """
    settings = check_settings(settings)
    if settings["sample_rate"] == NATIVE:
        raise ValueError("--data_service needs one --sample_rate (its workers decode wavs at the run's rate), "
                         "not native")
    rate = settings["sample_rate"]
    unusable = []
    for pair in tqdm(pairs, desc="checking the audio for the data service", unit="file",
                     disable=len(pairs) < PROGRESS_FROM):
        try:
            info = audio_info(pair.audio_path)
            problem = None
            if not pair.audio_path.lower().endswith(".wav") or info.subtype != "PCM_16":
                problem = f"not a 16-bit PCM wav ({info.subtype or 'another format'})"
            elif info.channels != 1:
                problem = f"{info.channels} channels, not mono"
            elif info.rate != rate:
                problem = f"{info.rate} Hz, not the run's {rate}"
        except ValueError as error:
            problem = str(error)
        if problem:
            unusable.append(f"{printable(pair.audio_path)}: {problem}")
    if unusable:
        raise ValueError(f"{len(unusable)} audio file(s) cannot be decoded by the data service's workers, which read "
                         f"mono 16-bit PCM wavs at {rate} Hz (first: {unusable[0]}); {CONVERT_HINT.replace('RATE', str(rate))}")


def worker_dataset(batch_numbers, pairs, settings, batch_size, seed, resize):
    """The graph a worker runs: global batch numbers -> decoded batches (what the service distributes).

    Args:
        batch_numbers: a dataset of int64 global batch numbers (its split source).
        pairs, settings, batch_size, seed, resize: as service_batches.

    Returns:
        A dataset of {"frame": n x S x S x 3 uint8, "waveform": n x samples int16, "name": n string, "batch": int64}
        with n <= batch_size (the items that decoded; 0 if none did).
    """
    size, rate, seconds = settings["image_size"], settings["sample_rate"], settings["audio_seconds"]
    length = int(round(rate * seconds))
    per_pass = len(pairs) // batch_size
    # absolute: a worker runs in a folder of its own and reads the files at the paths this host sees
    image_paths = tf.constant([os.path.abspath(pair.image_path) for pair in pairs])
    audio_paths = tf.constant([os.path.abspath(pair.audio_path) for pair in pairs])
    names = tf.constant([pair.name for pair in pairs])

    def one_batch(batch_number):
        pass_number = batch_number // per_pass
        first = (batch_number % per_pass) * batch_size
        indices = pass_permutation(len(pairs), seed, 0, pass_number)[first:first + batch_size]  # batch_size
        positions = first + tf.range(batch_size, dtype=tf.int64)

        def item(index, position):
            item_seed = tf.stack([tf.constant(seed, tf.int64), tf.constant(0, tf.int64), pass_number, position])
            return {"frame": decode_training_frame(tf.gather(image_paths, index), item_seed, size, resize),
                    "waveform": decode_training_waveform(tf.gather(audio_paths, index), rate, seconds),
                    "name": tf.gather(names, index)}

        decoded = tf.data.Dataset.from_tensor_slices((indices, positions)).map(
            item, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        decoded = decoded.ignore_errors(log_warning=True).batch(batch_size)
        nothing = tf.data.Dataset.from_tensors({"frame": tf.zeros([0, size, size, 3], tf.uint8),
                                                "waveform": tf.zeros([0, length], tf.int16),
                                                "name": tf.zeros([0], tf.string)})
        # the batch, or an empty one when no item decoded: every batch number gets an answer
        return decoded.concatenate(nothing).take(1).map(lambda batch: dict(batch, batch=batch_number))

    return batch_numbers.flat_map(one_batch).prefetch(1)


class _Stalled(Exception):
    """No batch came from a job for the stall time."""


class ServiceLost(RuntimeError):
    """The service did not make a batch however often it was asked: its workers are gone or cannot read the files."""


class _Arrivals:
    """A service job's batches, read by a thread of their own, so that the training side can stop waiting for them.

    A job whose worker stopped for good never ends (the service waits for that worker's part of it), so a read from
    it can block for ever; get() gives up after a timeout instead. The thread holds at most ARRIVALS_HELD batches.
    After close() it lets go of the job (and the service ends it) once its read in progress returns; one blocked on
    a job that never ends stays blocked (a daemon: it ends with the process).
    """

    _END = object()

    def __init__(self, iterator):
        self.queue = queue.Queue(maxsize=ARRIVALS_HELD)
        self.closed = threading.Event()
        threading.Thread(target=self._read, args=(iterator,), daemon=True).start()

    def _read(self, iterator):
        try:
            for batch in iterator:
                if not self._put(batch):
                    return
            self._put(self._END)
        except Exception as error:  # noqa: BLE001  (handed to the training side, which raises it)
            self._put(error)

    def _put(self, item):
        """Hand item to the training side; False once closed."""
        while not self.closed.is_set():
            try:
                self.queue.put(item, timeout=1)
                return True
            except queue.Full:
                pass
        return False

    def close(self):
        """Stop reading the job."""
        self.closed.set()

    def get(self, timeout):
        """The job's next batch, or None at its end.

        Args:
            timeout: seconds to wait for it.

        Raises:
            _Stalled: nothing came in `timeout` seconds.
            The job's own error (the dispatcher went away, for example).
        """
        try:
            item = self.queue.get(timeout=timeout)
        except queue.Empty:
            raise _Stalled from None
        if isinstance(item, Exception):
            raise item
        return None if item is self._END else item


class _Stream:
    """The service's batches back in the order of their numbers, each once; failed items named; passes audited."""

    def __init__(self, pairs, settings, batch_size, service, seed, resize, first_batch, end_batch, audit,
                 stall_seconds, on_failure):
        self.pairs, self.settings, self.batch_size = pairs, settings, batch_size
        self.service, self.seed, self.resize = service, seed, resize
        self.first_batch, self.end_batch, self.audit = first_batch, end_batch, audit
        self.stall_seconds, self.on_failure = stall_seconds, on_failure
        self.per_pass = len(pairs) // batch_size
        self.permutations = {}
        self.passes = {}  # pass -> {"names": [...], "failed": n, "asked": n, "first": batch, "last": batch}

    def job(self, batch_numbers):
        """A new service job over the given batch numbers, read as _Arrivals."""
        dataset = worker_dataset(batch_numbers, self.pairs, self.settings, self.batch_size, self.seed, self.resize)
        return _Arrivals(iter(dataset.apply(tf.data.experimental.service.distribute(
            processing_mode="distributed_epoch", service=self.service, compression=None))))

    def expected_names(self, batch_number):
        """The names the local pipeline's batch batch_number holds."""
        pass_number, index = divmod(batch_number, self.per_pass)
        if pass_number not in self.permutations:
            self.permutations = {pass_number: pass_permutation(len(self.pairs), self.seed, 0, pass_number).numpy()}
        indices = self.permutations[pass_number][index * self.batch_size:(index + 1) * self.batch_size]
        return [self.pairs[position].name for position in indices]

    def ask_again(self, numbers, pending):
        """Ask for lost batches in a job of their own (up to MAX_REQUESTS times); they go to pending.

        The job is read until its batches are all in, not to its end: a worker that stops for good leaves a job that
        never ends. A job that gives nothing for the stall time is given up and asked again.
        """
        for _ in range(MAX_REQUESTS):
            arrivals = self.job(tf.data.Dataset.from_tensor_slices(np.array(numbers, np.int64)))
            awaited = set(numbers)
            while awaited:
                try:
                    batch = arrivals.get(self.stall_seconds)
                except _Stalled:
                    break
                if batch is None:
                    break
                number = int(batch["batch"])
                pending.setdefault(number, batch)
                self.passes_entry(number)["asked"] += 1
                awaited.discard(number)
            arrivals.close()
            numbers = [number for number in numbers if number not in pending]
            if not numbers:
                return
        raise ServiceLost(f"the data service lost batch {numbers[0]} {MAX_REQUESTS} times: are its workers "
                          "running and able to read the files?")

    def passes_entry(self, number):
        """The audit record of the pass holding batch `number`."""
        return self.passes.setdefault(number // self.per_pass, {"names": [], "failed": 0, "asked": 0, "first": None})

    def check(self, number, batch):
        """Name the items of batch `number` that did not decode; record the pass's names; end a pass's audit."""
        names = [name.decode() for name in batch["name"].numpy()]
        entry = self.passes_entry(number)
        if len(names) < self.batch_size:
            by_name = {pair.name: pair for pair in self.pairs}
            for name in sorted(set(self.expected_names(number)) - set(names)):
                pair = by_name[name]
                report_skip(f"{printable(pair.image_path)} or {printable(pair.audio_path)}: failed to decode on a "
                            "data service worker (its log says why)")
                entry["failed"] += 1
        entry["names"].extend(names)
        entry["first"] = number if entry["first"] is None else entry["first"]
        entry["last"] = number
        if (number + 1) % self.per_pass == 0 or number + 1 == self.end_batch:
            self.close_pass(number // self.per_pass)

    def close_pass(self, pass_number):
        entry = self.passes.pop(pass_number, None)
        if entry is None or self.audit is None:
            return
        names = sorted(entry["names"])
        once = len(names) == len(set(names))
        first, last = entry["first"] % self.per_pass, entry["last"] % self.per_pass
        digest = hashlib.sha256("\n".join(names).encode()).hexdigest()
        self.audit(f"pass {pass_number}: batches {first + 1}..{last + 1} of {self.per_pass}: {len(names)} pairs, "
                   f"{'each once' if once else 'SOME TWICE'}; {entry['failed']} failed to decode; "
                   f"{entry['asked']} batch(es) asked for again; sha256 of the sorted names {digest}")

    def batches(self):
        """Yield the batches in order: dicts of numpy arrays, frame / waveform / name (batch_size each)."""
        stream = self.job(tf.data.Dataset.range(self.first_batch, self.end_batch))
        try:
            yield from self.in_order(stream)
        except ServiceLost as error:
            if self.on_failure is None:
                raise
            # on_failure tells the run to stop at the end of its step and save nothing more; a batch of zeros
            # answers the training loop if it is waiting for one. (An error raised here would reach the run wrapped
            # in TensorFlow's, after TensorFlow has logged it with its traceback.)
            self.on_failure(str(error))
            size = self.settings["image_size"]
            length = int(round(self.settings["sample_rate"] * self.settings["audio_seconds"]))
            yield {"frame": np.zeros([self.batch_size, size, size, 3], np.uint8),
                   "waveform": np.zeros([self.batch_size, length], np.int16),
                   "name": np.array([b""] * self.batch_size)}
        finally:  # the run is done with the stream: let go of its job
            stream.close()

    def in_order(self, stream):
        """The batches of stream (_Arrivals) in the order of their numbers, lost ones asked for again."""
        pending = {}
        wanted = self.first_batch
        carry = None  # items of a short batch, waiting for the next to fill a whole one
        ended = False
        while wanted < self.end_batch:
            if wanted not in pending:
                stalled = False
                if not ended and len(pending) < REORDER_WINDOW:
                    try:
                        batch = stream.get(self.stall_seconds)
                    except _Stalled:  # nothing for a long time: the batches awaited are lost
                        stalled = True
                    else:
                        if batch is None:
                            ended = True
                        elif int(batch["batch"]) >= wanted:  # an earlier one is a late copy of a batch asked again
                            pending.setdefault(int(batch["batch"]), batch)
                        continue
                if ended:
                    last = self.end_batch
                elif stalled:
                    last = min(self.end_batch, wanted + REORDER_WINDOW)
                else:
                    last = max(pending) + 1  # the latest arrival
                self.ask_again([number for number in range(wanted, last) if number not in pending][:REORDER_WINDOW],
                               pending)
                continue
            batch = pending.pop(wanted)
            self.check(wanted, batch)
            wanted += 1
            arrays = {key: batch[key].numpy() for key in ("frame", "waveform", "name")}
            if carry is not None:
                arrays = {key: np.concatenate([carry[key], arrays[key]]) for key in arrays}
                carry = None
            while len(arrays["name"]) >= self.batch_size:
                yield {key: value[:self.batch_size] for key, value in arrays.items()}
                arrays = {key: value[self.batch_size:] for key, value in arrays.items()}
            if len(arrays["name"]):
                carry = arrays


def service_batches(pairs, settings, batch_size, service, seed=0, resize="crop", first_batch=0, last_batch=None,
                    with_names=False, audit=None, stall_seconds=STALL_SECONDS, on_failure=None):
    """Training batches from a tf.data service: make_dataset(training=True, repeat=True)'s batches, decoded there.

    Args:
        pairs: list of preprocessing.Pair; every audio file a mono 16-bit PCM wav at settings' rate
            (check_service_pairs).
        settings: preprocessing dict with a numeric sample_rate.
        batch_size: items per batch.
        service: the dispatcher, grpc://HOST:PORT.
        seed: the shuffle's and the augmentation's seed.
        resize: "crop" or "squash".
        first_batch: start at this global batch (a resumed run).
        last_batch: the stream ends after the pass after the one holding this batch (as make_dataset); None: endless.
        with_names: yield (inputs, names).
        audit: None, or a function called with one line at the end of each pass (see the module docstring).
        stall_seconds: when no batch has come for this long, the batches awaited are asked for again (their worker
            stopped for good); after MAX_REQUESTS more such waits for one batch, the service is lost.
        on_failure: None: a lost service raises ServiceLost (wrapped in a tf.errors.OpError by the dataset). Else a
            function called with the reason, after which the stream gives one batch of zeros and ends: the training
            loop, which is waiting for a batch, must stop at that step without saving (train.py's RunGuard.stop).

    Returns:
        A dataset of {"frame": batch x S x S x 3 uint8, "waveform": batch x samples int16, "sample_rate": batch
        int32} (preprocessing.model_inputs turns them into the model's inputs on the device).
    """
    settings = check_settings(settings)
    check_address(service)
    if resize not in RESIZE_MODES:
        raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, got {resize!r}")
    if settings["sample_rate"] == NATIVE:
        raise ValueError("--data_service needs one --sample_rate, not native")
    per_pass = len(pairs) // batch_size
    if not per_pass:
        raise ValueError(f"batch_size {batch_size} is more than the {len(pairs)} pairs")
    if first_batch < 0:
        raise ValueError(f"first_batch must be at least 0, got {first_batch}")
    if not 0 < stall_seconds <= MAX_STALL_SECONDS:
        raise ValueError(f"the data service's stall time must be 0 to {MAX_STALL_SECONDS} seconds, got {stall_seconds}")
    first_pass = first_batch // per_pass
    end_batch = np.iinfo(np.int64).max
    if last_batch is not None:
        passes = max(1, -(-last_batch // per_pass) - first_pass + 1)  # one pass to spare, as make_dataset
        end_batch = (first_pass + passes) * per_pass
    stream = _Stream(pairs, settings, batch_size, service, seed, resize, first_batch, end_batch, audit,
                     stall_seconds, on_failure)
    size, length = settings["image_size"], int(round(settings["sample_rate"] * settings["audio_seconds"]))
    signature = {"frame": tf.TensorSpec([batch_size, size, size, 3], tf.uint8),
                 "waveform": tf.TensorSpec([batch_size, length], tf.int16),
                 "name": tf.TensorSpec([batch_size], tf.string)}
    dataset = tf.data.Dataset.from_generator(stream.batches, output_signature=signature)
    rate = settings["sample_rate"]

    def to_inputs(batch):
        inputs = {"frame": batch["frame"], "waveform": batch["waveform"],
                  "sample_rate": tf.fill([batch_size], tf.constant(rate, tf.int32))}
        return (inputs, batch["name"]) if with_names else inputs

    return dataset.map(to_inputs).prefetch(tf.data.AUTOTUNE)
