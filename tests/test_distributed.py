"""Training across replicas and machines: the distributed step equals the single-device step; two workers on
127.0.0.1 train together through train.py, and after one is killed and both restarted end as if never stopped."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from checkpoint_arrays import assert_identical
from event_files import event_pids

PROJECT = Path(__file__).resolve().parents[1]
ENVIRONMENT = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")


def run_step_check(dtype):
    result = subprocess.run([sys.executable, str(PROJECT / "tests" / "two_replica_step.py"), dtype], cwd=PROJECT,
                            capture_output=True, text=True, timeout=600, env=ENVIRONMENT)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_two_replicas_equal_one_device_in_float64():
    # float64 shows the arithmetic is the same; the sharp sigmoids (tau 0.03) magnify float32 rounding.
    check = run_step_check("float64")
    assert check["replicas"] == 2
    assert check["distributed_loss"] == pytest.approx(check["single_loss"], abs=1e-10)
    assert check["gradient_scale"] > 1e-3  # the gradients are not trivially zero
    assert check["gradient_difference"] <= 1e-5 * max(1.0, check["gradient_scale"])


def test_two_replicas_equal_one_device_loss_in_float32():
    check = run_step_check("float32")
    assert check["distributed_loss"] == pytest.approx(check["single_loss"], abs=1e-5)


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for handle in sockets:
        handle.bind(("127.0.0.1", 0))
    ports = [handle.getsockname()[1] for handle in sockets]
    for handle in sockets:
        handle.close()
    return ports


def start_workers(arguments, ports, log_dir, tag):
    """One train.py per port as a TF_CONFIG cluster on 127.0.0.1: [(process, stdout file, stderr file)]."""
    workers = []
    for index in range(len(ports)):
        config = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]}, "task": {"type": "worker", "index": index}}
        stdout, stderr = open(log_dir / f"{tag}{index}.out", "w+"), open(log_dir / f"{tag}{index}.err", "w+")
        process = subprocess.Popen(
            [sys.executable, str(PROJECT / "train.py"), *arguments, "--strategy", "multi_worker"], cwd=PROJECT,
            stdout=stdout, stderr=stderr, env=dict(ENVIRONMENT, TF_CONFIG=json.dumps(config)),
        )
        workers.append((process, stdout, stderr))
    return workers


def finish(workers, timeout=600):
    """Wait for every worker (killing what is left at the timeout); return [(exit code, stdout, stderr)]."""
    deadline = time.time() + timeout
    while time.time() < deadline and any(process.poll() is None for process, _, _ in workers):
        time.sleep(0.5)
    results = []
    for process, stdout, stderr in workers:
        if process.poll() is None:
            process.kill()
            process.wait()
        stdout.seek(0)
        stderr.seek(0)
        results.append((process.returncode, stdout.read(), stderr.read()))
    return results


def run_workers(arguments, ports, log_dir, tag):
    """Run the cluster to its end; every worker must succeed. Returns their stdouts."""
    results = finish(start_workers(arguments, ports, log_dir, tag))
    for code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    return [stdout for _, stdout, _ in results]


def test_two_workers_killed_and_restarted_end_as_if_never_stopped(tmp_path):
    """Two workers train together (one checkpoint writer); one is killed with kill -9 inside epoch 2; the other stops
    with one clear line; restarting both resumes from the newest checkpoint and ends with the uninterrupted run's
    weights and optimizer state, bit for bit."""
    data = tmp_path / "pairs"
    data.mkdir()
    for path in sorted((PROJECT / "data" / "demo" / "train").iterdir())[:16]:
        shutil.copy(path, data / path.name)
    arguments = ["--data_dir", str(data), "--image_size", "32", "--sample_rate", "8000", "--audio_seconds", "0.1",
                 "--image_weights", "none", "--batch_size", "4", "--steps_per_epoch", "4", "--checkpoint_every", "2",
                 "--epochs", "2", "--deterministic"]
    reference = tmp_path / "reference"
    outputs = run_workers([*arguments, "--out_dir", str(reference)], free_ports(2), tmp_path, "reference")
    assert all("2 replica(s)" in output for output in outputs)
    assert sorted(path.name for path in (reference / "checkpoints").iterdir()) == \
        ["epoch_0001_step_00000002.json", "epoch_0001_step_00000002.keras", "epoch_0002.keras"]

    out = tmp_path / "run"
    workers = start_workers([*arguments, "--out_dir", str(out)], free_ports(2), tmp_path, "killed")
    mid_epoch = out / "checkpoints" / "epoch_0001_step_00000002.keras"
    deadline = time.time() + 600
    while not mid_epoch.exists() and time.time() < deadline and all(p.poll() is None for p, _, _ in workers):
        time.sleep(0.1)
    assert mid_epoch.exists(), "the mid-epoch checkpoint was never written"
    assert event_pids(out / "tensorboard") == {workers[0][0].pid}  # the chief alone writes TensorBoard's files
    workers[1][0].kill()  # kill -9 of the worker that does not write
    (code, _, stderr), (killed_code, _, _) = finish(workers)
    assert killed_code == -9
    assert code == 1, stderr[-3000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("error: another worker of the cluster stopped or cannot be reached") and \
        "Restart every worker with the same command" in last
    assert not (out / "model.keras").exists()

    outputs = run_workers([*arguments, "--out_dir", str(out)], free_ports(2), tmp_path, "restarted")
    assert all("resuming from" in output for output in outputs)
    assert_identical(reference / "model.keras", out / "model.keras")
    assert not list(out.rglob(".*.partial-*"))
