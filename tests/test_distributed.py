"""Training across replicas and machines: the distributed step equals the single-device step; two workers on
127.0.0.1 train together through train.py, write one checkpoint and resume under the strategy."""

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

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


def run_workers(arguments, ports, log_dir):
    """Run one train.py per port as a TF_CONFIG cluster on 127.0.0.1; return their stdouts."""
    processes, logs = [], []
    for index in range(len(ports)):
        config = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in ports]}, "task": {"type": "worker", "index": index}}
        stdout, stderr = open(log_dir / f"worker{index}.out", "w+"), open(log_dir / f"worker{index}.err", "w+")
        logs.append((stdout, stderr))
        processes.append(subprocess.Popen(
            [sys.executable, str(PROJECT / "train.py"), *arguments, "--strategy", "multi_worker"], cwd=PROJECT,
            stdout=stdout, stderr=stderr, env=dict(ENVIRONMENT, TF_CONFIG=json.dumps(config)),
        ))
    deadline = time.time() + 600
    while time.time() < deadline and any(process.poll() is None for process in processes):
        if any(process.poll() not in (None, 0) for process in processes):
            break  # a worker failed: its peers would wait for it forever
        time.sleep(0.5)
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()
    outputs = []
    for process, (stdout, stderr) in zip(processes, logs):
        stdout.seek(0)
        stderr.seek(0)
        assert process.returncode == 0, stderr.read()[-3000:]
        outputs.append(stdout.read())
    return outputs


def test_two_workers_train_together_and_resume(tmp_path):
    data = tmp_path / "pairs"
    data.mkdir()
    for path in sorted((PROJECT / "data" / "demo" / "train").iterdir())[:16]:
        shutil.copy(path, data / path.name)
    out = tmp_path / "run"
    arguments = ["--data_dir", str(data), "--out_dir", str(out), "--image_size", "32", "--sample_rate", "8000",
                 "--audio_seconds", "0.1", "--image_weights", "none", "--batch_size", "4", "--steps_per_epoch", "2"]
    outputs = run_workers([*arguments, "--epochs", "1"], free_ports(2), tmp_path)
    assert all("2 replica(s)" in output for output in outputs)
    assert sorted(path.name for path in (out / "checkpoints").iterdir()) == ["epoch_0001.keras"]
    assert not list(out.rglob(".*.partial-*"))

    outputs = run_workers([*arguments, "--epochs", "2"], free_ports(2), tmp_path)
    assert all("resuming from" in output and "epoch 1 of 2 done" in output for output in outputs)
    assert (out / "checkpoints" / "epoch_0002.keras").is_file() and (out / "model.keras").is_file()
    rows = (out / "log.csv").read_text().strip().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2"]
