"""train.py --data_service: a real tf.data service on 127.0.0.1, a dispatcher and two worker processes (data_service.py).

- The service's batches are the local pipeline's batches (make_dataset(training=True, repeat=True)), by name and in
  order, from any first batch, with the waveforms bit for bit; each pass's audit counts every pair once.
- A worker killed (SIGKILL) mid-stream and restarted at its address: the stream goes on, every batch once, in order.
- A worker killed for good: the one left makes the lost batches, and the stream ends, every batch once, in order; a
  service without workers ends in an error, not a hang, and train.py then in one error line.
- A frame that fails to decode on a worker is named, and the later batches move up as the local pipeline's do.
- train.py runs to the end with the service, and its data_service.log shows every pair once a pass (by the sha256 of
  the names, computed here from the pair list).
- Wrong flags, an unreachable dispatcher and audio the workers cannot decode end in one error line.
"""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io.wavfile
import tensorflow as tf

from benchmarks import pipeline_speed
from pipeline import preprocessing, service_dataset

PROJECT = Path(__file__).resolve().parents[1]
SETTINGS = {"image_size": 64, "sample_rate": 16000, "audio_seconds": 1.0}
START_SECONDS = 60  # a worker process imports TensorFlow before it listens


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_port(port, process, seconds=START_SECONDS):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"nothing listens on {port} after {seconds} s")


class Service:
    """A dispatcher and two workers, each a data_service.py process, on 127.0.0.1."""

    def __init__(self, folder):
        self.folder = folder
        self.port = free_port()
        self.address = f"grpc://127.0.0.1:{self.port}"
        self.dispatcher = self.start(["--dispatcher", "--port", str(self.port)], self.port)
        self.workers = {}
        for _ in range(2):
            port = free_port()
            self.workers[port] = self.start_worker(port)

    def start(self, arguments, port):
        environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
        process = subprocess.Popen([sys.executable, str(PROJECT / "data_service.py"), *arguments], cwd=self.folder,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment)
        wait_for_port(port, process)
        return process

    def start_worker(self, port):
        return self.start(["--worker", "--dispatcher", f"127.0.0.1:{self.port}", "--port", str(port),
                           "--host", "127.0.0.1"], port)

    def stop(self):
        for process in [*self.workers.values(), self.dispatcher]:
            process.terminate()
        for process in [*self.workers.values(), self.dispatcher]:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def pair_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("service_pairs")
    pipeline_speed.write_vggss_like_pairs(str(folder), 24, seed=5)
    return folder


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    running = Service(tmp_path_factory.mktemp("service_cwd"))  # the workers run elsewhere than the pairs' folder
    yield running
    running.stop()


def names_of(batch):
    return [name.decode() for name in batch.numpy()]


def local_batches(pairs, count, **options):
    dataset = preprocessing.make_dataset(pairs, SETTINGS, training=True, batch_size=4, seed=3, repeat=True,
                                         with_names=True, **options)
    return [(inputs, names_of(names)) for inputs, names in dataset.take(count)]


def digest(names):
    return hashlib.sha256("\n".join(sorted(names)).encode()).hexdigest()


def test_batches_are_the_local_ones_in_order(service, pair_folder):
    pairs, _ = preprocessing.find_pairs(str(pair_folder))
    lines = []
    dataset = service_dataset.service_batches(pairs, SETTINGS, 4, service.address, seed=3, first_batch=2,
                                              last_batch=10, with_names=True, audit=lines.append)
    got = [(inputs, names_of(names)) for inputs, names in dataset]
    expected = local_batches(pairs, 100, first_batch=2, last_batch=10)
    assert len(got) == len(expected) == 16  # from batch 2 to the end of the spare pass: 3 passes of 6, less 2
    assert [names for _, names in got] == [names for _, names in expected]
    for (inputs, _), (local, _) in zip(got, expected):
        assert inputs["frame"].dtype.name == "uint8" and inputs["frame"].shape == (4, 64, 64, 3)
        assert inputs["waveform"].dtype.name == "int16"
        np.testing.assert_array_equal(inputs["waveform"].numpy() / preprocessing.PCM16_SCALE, local["waveform"])
        assert inputs["sample_rate"].numpy().tolist() == [16000] * 4
    all_names = [pair.name for pair in pairs]
    assert len(lines) == 3
    assert lines[0].startswith("pass 0: batches 3..6 of 6: 16 pairs, each once; 0 failed")
    for line in lines[1:]:
        assert ": 24 pairs, each once; 0 failed to decode; 0 batch(es) asked for again" in line
        assert line.endswith(digest(all_names))


def test_a_worker_killed_and_restarted_loses_nothing(service, pair_folder):
    pairs, _ = preprocessing.find_pairs(str(pair_folder))
    lines = []
    dataset = service_dataset.service_batches(pairs, SETTINGS, 4, service.address, seed=3, with_names=True,
                                              audit=lines.append)
    stream = iter(dataset)
    got = [names_of(next(stream)[1]) for _ in range(4)]
    port, victim = next(iter(service.workers.items()))
    victim.send_signal(signal.SIGKILL)
    victim.wait()

    restarted = []

    def restart():  # while the stream goes on with the other worker
        time.sleep(2)
        service.workers[port] = service.start_worker(port)
        restarted.append(port)

    restarting = threading.Thread(target=restart, daemon=True)
    restarting.start()
    restarting.join(START_SECONDS + 10)
    assert restarted, "the worker did not start again at its address"
    got += [names_of(next(stream)[1]) for _ in range(32)]
    assert got == [names for _, names in local_batches(pairs, 36)]
    assert len(lines) >= 5  # passes 0..4 ended (6 batches each), and more the stream prepared ahead
    assert all(": 24 pairs, each once; 0 failed to decode" in line for line in lines)


def read_all(stream, seconds):
    """The names of the rest of a stream's batches, read in a thread: a hang fails the test instead of stopping it."""
    names = []
    reader = threading.Thread(target=lambda: names.extend(names_of(batch[1]) for batch in stream), daemon=True)
    reader.start()
    reader.join(seconds)
    assert not reader.is_alive(), f"the stream hung after {len(names)} batches"
    return names


def test_a_worker_stopped_for_good_loses_nothing(service, pair_folder):
    pairs, _ = preprocessing.find_pairs(str(pair_folder))
    lines = []
    dataset = service_dataset.service_batches(pairs, SETTINGS, 4, service.address, seed=3, last_batch=12,
                                              with_names=True, audit=lines.append, stall_seconds=5)
    stream = iter(dataset)
    got = [names_of(next(stream)[1]) for _ in range(4)]
    port, victim = next(iter(service.workers.items()))
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    try:
        got += read_all(stream, 120)  # from the one worker left: its job never ends, the lost batches are re-asked
    finally:
        service.workers[port] = service.start_worker(port)  # two workers again for the tests after this one
    assert got == [names for _, names in local_batches(pairs, 100, last_batch=12)]  # 3 passes of 6 batches
    assert len(lines) == 3 and all(": 24 pairs, each once; 0 failed to decode" in line for line in lines)


def test_a_service_without_workers_ends_in_an_error_not_a_hang(pair_folder):
    dispatcher = tf.data.experimental.service.DispatchServer(tf.data.experimental.service.DispatcherConfig())
    pairs, _ = preprocessing.find_pairs(str(pair_folder))
    dataset = service_dataset.service_batches(pairs, SETTINGS, 4, dispatcher.target, seed=3, last_batch=5,
                                              stall_seconds=2)
    errors = []

    def read():
        try:
            list(dataset)
        except tf.errors.OpError as error:
            errors.append(error)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(60)  # a first wait of 2 s, then the batches asked for again MAX_REQUESTS times, 2 s each
    assert not reader.is_alive(), "the stream hung"
    assert errors, "the stream ended without an error"
    assert service_dataset.error_cause(errors[0]) == (  # what train.py's error line says
        "ServiceLost: the data service lost batch 0 3 times: are its workers running and able to read the files?")
    dispatcher.stop()


def test_a_frame_that_fails_on_a_worker_is_named_and_later_batches_move_up(service, pair_folder, tmp_path):
    folder = tmp_path / "pairs"
    shutil.copytree(pair_folder, folder)
    frame = folder / "pair_0007.jpg"
    frame.write_bytes(frame.read_bytes()[:3000])  # its header reads (find_pairs keeps it), its pixels do not
    pairs, _ = preprocessing.find_pairs(str(folder))
    assert len(pairs) == 24
    preprocessing.SKIPPED_WHILE_LOADING.clear()
    dataset = service_dataset.service_batches(pairs, SETTINGS, 4, service.address, seed=3, last_batch=5,
                                              with_names=True)
    got = [names_of(names) for _, names in dataset]
    named = list(preprocessing.SKIPPED_WHILE_LOADING)
    preprocessing.SKIPPED_WHILE_LOADING.clear()
    expected = [names for _, names in local_batches(pairs, 100, last_batch=5)]  # the local pipeline skips it too
    preprocessing.SKIPPED_WHILE_LOADING.clear()
    assert got == expected
    assert all("pair_0007" not in names for names in got)
    assert named and all("pair_0007.jpg" in line and "failed to decode on a data service worker" in line
                         for line in named)


def run_train(arguments, timeout=600):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.run([sys.executable, str(PROJECT / "train.py"), *arguments], cwd=PROJECT, capture_output=True,
                          text=True, timeout=timeout, env=environment)


TINY = ["--image_size", "32", "--sample_rate", "16000", "--audio_seconds", "0.5", "--image_weights", "none",
        "--batch_size", "8", "--no_tensorboard"]


def test_train_runs_to_the_end_seeing_every_pair_once_a_pass(service, pair_folder, tmp_path):
    out = tmp_path / "run"
    result = run_train(["--data_dir", str(pair_folder), "--out_dir", str(out), "--epochs", "2", *TINY,
                        "--data_service", service.address])
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "model.keras").is_file()
    lines = (out / "data_service.log").read_text().splitlines()
    names = [pair.name for pair in preprocessing.find_pairs(str(pair_folder))[0]]
    assert len(lines) >= 2  # epochs 1 and 2 (3 batches of 8 each), then the spare pass if it was read
    for line in lines[:2]:
        assert ": 24 pairs, each once; 0 failed to decode" in line and line.endswith(digest(names))


def test_train_without_workers_ends_in_one_error_line(pair_folder, tmp_path):
    dispatcher = tf.data.experimental.service.DispatchServer(tf.data.experimental.service.DispatcherConfig())
    out = tmp_path / "run"
    result = run_train(["--data_dir", str(pair_folder), "--out_dir", str(out), *TINY, "--data_service",
                        dispatcher.target, "--data_service_timeout", "1"], timeout=300)
    dispatcher.stop()
    assert result.returncode == 1, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "error: the data service lost batch 0 3 times: are its workers running and able to read the files?; no "
        "checkpoint was written. Start the data service's workers (data_service.py) and rerun to resume")
    assert "Traceback" not in result.stderr and not (out / "model.keras").exists()


@pytest.mark.parametrize("arguments,message", [
    (["--data_service", "127.0.0.1:5050"], "--data_service must be grpc://HOST:PORT"),
    (["--data_service", "grpc://127.0.0.1:5050", "--cache", "somewhere"], "with --data_service the workers decode"),
    (["--data_service", "grpc://127.0.0.1:5050", "--sample_rate", "native"], "not native"),
    (["--data_service", "grpc://127.0.0.1:5050", "--strategy", "multi_worker"], "not multi_worker"),
    (["--data_service_timeout", "5"], "--data_service_timeout is for --data_service"),
    (["--data_service", "grpc://127.0.0.1:5050", "--data_service_timeout", "0"], "--data_service_timeout"),
    (["--data_service", "grpc://127.0.0.1:5050", "--data_service_timeout", "1e300"], "at most 604800 seconds"),
])
def test_bad_data_service_flags_end_in_one_line(arguments, message):
    result = run_train(arguments)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_an_unreachable_dispatcher_or_undecodable_audio_is_refused_before_training(service, pair_folder, tmp_path):
    out = tmp_path / "run"
    result = run_train(["--data_dir", str(pair_folder), "--out_dir", str(out), *TINY,
                        "--data_service", f"grpc://127.0.0.1:{free_port()}"])
    assert result.returncode == 1 and "error: cannot reach the data service dispatcher" in result.stderr
    assert "Traceback" not in result.stderr
    folder = tmp_path / "pairs"
    shutil.copytree(pair_folder, folder)
    scipy.io.wavfile.write(folder / "pair_0003.wav", 8000, np.zeros(8000, np.int16))  # another rate
    result = run_train(["--data_dir", str(folder), "--out_dir", str(out), *TINY, "--data_service", service.address])
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "1 audio file(s) cannot be decoded by the data service's workers" in result.stderr
    assert "pair_0003.wav: 8000 Hz, not the run's 16000" in result.stderr and "ffmpeg -i IN" in result.stderr


@pytest.mark.parametrize("arguments,message", [
    ([], "give --dispatcher"),
    (["--worker"], "--worker needs --dispatcher HOST:PORT"),
    (["--worker", "--dispatcher", "nohost"], "expected HOST:PORT"),
    (["--dispatcher", "127.0.0.1:5050"], "takes no address when it runs the dispatcher"),
    (["--dispatcher", "--port", "70000"], "a port is 0..65535"),
])
def test_data_service_script_refuses_wrong_flags_in_one_line(arguments, message):
    result = subprocess.run([sys.executable, str(PROJECT / "data_service.py"), *arguments], cwd=PROJECT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr


def test_a_worker_without_its_dispatcher_or_a_busy_port_ends_in_one_line(service):
    environment = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    worker = subprocess.run([sys.executable, str(PROJECT / "data_service.py"), "--worker", "--dispatcher",
                             f"127.0.0.1:{free_port()}"], cwd=PROJECT, capture_output=True, text=True, timeout=120,
                            env=environment)
    assert worker.returncode == 1 and "error: cannot reach the data service dispatcher at 127.0.0.1:" in worker.stderr
    busy = subprocess.run([sys.executable, str(PROJECT / "data_service.py"), "--dispatcher", "--port",
                           str(service.port)], cwd=PROJECT, capture_output=True, text=True, timeout=120, env=environment)
    assert busy.returncode == 1 and f"error: port {service.port} is in use" in busy.stderr
    assert "Traceback" not in worker.stderr + busy.stderr


def test_data_service_help_explains_every_flag():
    result = subprocess.run([sys.executable, str(PROJECT / "data_service.py"), "--help"], cwd=PROJECT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--dispatcher", "--worker", "--port", "--host", "--work_dir"):
        assert flag in result.stdout
