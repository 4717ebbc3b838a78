r"""Run a tf.data service dispatcher or worker: CPU hosts decode and augment the training batches of a GPU host.

The training run sends the dataset to the service when it starts (train.py --data_service grpc://HOST:PORT): the
pair list, the image size, the sample rate and the audio length travel with it, so a worker takes no flags of the
run. Each worker must read the pairs at the paths the training host names (a shared or copied folder), and their
audio must be mono 16-bit PCM wavs at the run's rate (what vggss_dl.py writes; the run checks before it starts).
A worker can be stopped at any time, for good or to start again: the training run asks the workers that answer for
the batches it was making. A worker started again (give it a fixed --port to keep its address) takes its share of the
batches again. A run whose workers have all stopped ends with an error after a few minutes.

Usage (the dispatcher on one host, a worker on each CPU host, then the run):
    python data_service.py --dispatcher --port 5050
    python data_service.py --worker --dispatcher gpu-host:5050 --port 5051
    python train.py --data_dir data/vggss --data_service grpc://gpu-host:5050
"""

import safeguards.quiet_tensorflow  # noqa: F401  (first: imports TensorFlow with its C++ start-up lines off the terminal)

import argparse
import os
import signal
import socket

import tensorflow as tf  # noqa: E402

from pipeline import service_dataset  # noqa: E402
from safeguards.arguments import host_and_port, port_number  # noqa: E402

DEFAULT_DISPATCHER_PORT = 5050


def free_port():
    """A TCP port no one listens on now (the worker's, when --port is not given)."""
    with socket.socket() as probe:
        probe.bind(("", 0))
        return probe.getsockname()[1]


def parse_arguments(argv=None):
    """The role (dispatcher or worker) and its flags; parser.error (one line, exit 2) for a wrong combination."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dispatcher", nargs="?", const=True, default=None, type=host_and_port, metavar="HOST:PORT",
                        help="alone: run the dispatcher (one per run, on any host; the run's --data_service names "
                             "it). With --worker: the dispatcher this worker registers with")
    parser.add_argument("--worker", action="store_true", help="run a worker, which decodes and augments batches; "
                        "start one on each CPU host (needs --dispatcher HOST:PORT)")
    parser.add_argument("--port", type=port_number, default=None,
                        help="port to listen on (dispatcher default: 5050; worker default: any free port; give a "
                             "worker a fixed one to restart it at the same address)")
    parser.add_argument("--host", default=None,
                        help="worker: the name or address the training host reaches this worker at (default: this "
                             "host's name, socket.gethostname())")
    parser.add_argument("--work_dir", default=None,
                        help="dispatcher: keep its state (registered datasets, jobs) in this folder, so that a "
                             "restarted dispatcher carries on the run's jobs (default: in memory only)")
    arguments = parser.parse_args(argv)
    if arguments.worker:
        if not isinstance(arguments.dispatcher, str):
            parser.error("--worker needs --dispatcher HOST:PORT (the dispatcher's address)")
        if arguments.work_dir is not None:
            parser.error("--work_dir is the dispatcher's")
        arguments.role = "worker"
    elif arguments.dispatcher is True:
        if arguments.host is not None:
            parser.error("--host is a worker's")
        arguments.role = "dispatcher"
    elif arguments.dispatcher is None:
        parser.error("give --dispatcher (run the dispatcher) or --worker --dispatcher HOST:PORT (run a worker)")
    else:
        parser.error("--dispatcher takes no address when it runs the dispatcher (use --port); with --worker it "
                     "names the dispatcher")
    return arguments


def run_dispatcher(port, work_dir):
    """Start the dispatcher (it serves until the process ends).

    Args:
        port: the port to listen on.
        work_dir: a folder for its journal (a restarted dispatcher resumes from it), or None.
    """
    if work_dir is not None:
        os.makedirs(work_dir, exist_ok=True)
    config = tf.data.experimental.service.DispatcherConfig(
        port=port, work_dir=work_dir, fault_tolerant_mode=work_dir is not None)
    server = tf.data.experimental.service.DispatchServer(config)
    print(f"dispatcher listening on port {port}: train with --data_service grpc://{socket.gethostname()}:{port}",
          flush=True)
    return server


def run_worker(dispatcher, port, host):
    """Start a worker registered with the dispatcher (it serves until the process ends).

    Args:
        dispatcher: HOST:PORT of the dispatcher.
        port: the port to listen on.
        host: the name the training host reaches this one at (None: socket.gethostname()).
    """
    host = host or socket.gethostname()
    config = tf.data.experimental.service.WorkerConfig(dispatcher_address=dispatcher, worker_address=f"{host}:{port}",
                                                       port=port)
    server = tf.data.experimental.service.WorkerServer(config)
    print(f"worker serving at {host}:{port}, registered with {dispatcher}", flush=True)
    return server


def check_port_free(port):
    """Refuse a port something already listens on (TensorFlow's server would fail later, less clearly)."""
    with socket.socket() as probe:
        # as servers bind: a port left by a stopped server (its connections in TIME_WAIT) is free, a listening one not
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("", port))
        except OSError as error:
            raise SystemExit(f"error: port {port} is in use ({error.strerror}); choose another with --port") from None


def main(argv=None):
    arguments = parse_arguments(argv)
    # The servers keep nothing in memory that a stop would lose (a --work_dir journal is written before each answer):
    # SIGTERM and Ctrl-C end the process at once, also while TensorFlow's start-up holds the main thread.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    if arguments.role == "dispatcher":
        port = DEFAULT_DISPATCHER_PORT if arguments.port is None else arguments.port
        check_port_free(port)
    else:
        host, _, dispatcher_port = arguments.dispatcher.rpartition(":")
        try:
            service_dataset.check_dispatcher(host, dispatcher_port)
        except ValueError as error:
            raise SystemExit(f"error: {error}") from None
        port = arguments.port or free_port()
        check_port_free(port)
    try:
        if arguments.role == "dispatcher":
            server = run_dispatcher(port, arguments.work_dir)
        else:
            server = run_worker(arguments.dispatcher, port, arguments.host)
    except (tf.errors.OpError, RuntimeError, OSError) as error:
        raise SystemExit(f"error: the {arguments.role} could not start: {str(error).splitlines()[0][:300]}") from None
    while server is not None:  # serve until the process is stopped
        signal.pause()


if __name__ == "__main__":
    main()
