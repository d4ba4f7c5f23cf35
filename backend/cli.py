"""``python -m backend …``: serve, run a pipeline on files, talk to a running server, make keys.

Running a pipeline on files goes through the same path as a job sent by Blender: the CLI builds
a protocol ``submit`` message, decodes and validates it like the server does, and runs it on the
same job engine.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NoReturn

from backend import protocol
from backend.config import DEFAULT_PORT, ServerConfig
from backend.errors import UsageError
from backend.protocol import ErrorCode, Message

if TYPE_CHECKING:
    from backend.client import BackendClient

# Exit codes (docs/cli.md): a bad argument is refused before any model loads or job runs.
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_JOB_LOST, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

WEIGHTS_HELP = ("shape model checkpoint for reconstruction instead of the shipped one: NAME (NAME.json + "
                "NAME.safetensors) or a folder holding one, e.g. what scripts/train.py exports")


# ------------------------------------------------------------------------------------ progress
class ProgressPrinter:
    """Progress on a terminal (a bar) or in a log (one line per stage change)."""

    def __init__(self, stream=None):
        # sys.stderr when called, not when this module was imported: it may have been replaced since
        self.stream = sys.stderr if stream is None else stream
        self.tty = self.stream.isatty()
        self._bar = None
        self._stage = None

    def __call__(self, message: Message) -> None:
        if message.type == "accepted" and message.get("queue_position"):
            self._line(f"queued (position {message.get('queue_position')})")
        elif message.type == "progress":
            self._progress(message)
        elif message.type == "preview":
            pass
        elif message.type == "error" and message.get("state") is None:
            self._line(f"error: {message.get('code')}: {message.get('message')}")

    def _progress(self, message: Message) -> None:
        stage, fraction = message.get("stage"), message.get("fraction")
        text = message.get("message") or ""
        if self.tty:
            from tqdm import tqdm

            if self._bar is None:
                self._bar = tqdm(total=100, file=self.stream, bar_format="{l_bar}{bar}| {elapsed}<{remaining}")
            self._bar.set_description_str(f"{stage}: {text}"[:40])
            self._bar.n = int(round(fraction * 100))
            self._bar.refresh()
        elif stage != self._stage:
            self._line(f"[{fraction:4.0%}] {stage}: {text}")
        self._stage = stage

    def _line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


# ------------------------------------------------------------------------------------ local runs
def run_local(message: Message, device: str, on_message: Callable[[Message], None] | None = None,
              config: ServerConfig | None = None, shape_weights: str | Path | None = None) -> Message:
    """Run one submit message in-process through the engine; returns the final message.
    ``shape_weights``: the reconstruct model's checkpoint instead of the shipped one."""
    from backend.devices import resolve_device
    from backend.errors import InputError
    from backend.jobs import EngineError, JobEngine
    from backend.pipelines.registry import default_registry
    from backend.protocol import ProtocolError
    from backend.requests import parse_local_submit

    config = config or ServerConfig()
    try:
        request = parse_local_submit(message, config.limits)
    except (ProtocolError, InputError) as exc:
        return protocol.error(exc.code, exc.message, message.job, "rejected")
    final: list[Message] = []
    done = threading.Event()

    def sink(job, out: Message) -> None:
        if on_message is not None:
            on_message(out)
        if out.type == "result" or (out.type == "error" and out.get("state")):
            final.append(out)
            done.set()

    engine = JobEngine(default_registry(shape_weights), config, [resolve_device(device)], sink)
    engine.start()
    try:
        engine.submit(message.job, request, owner="cli")
        while not done.wait(0.2):
            pass
    except EngineError as exc:
        return protocol.error(exc.code, exc.message, message.job, "rejected")
    except KeyboardInterrupt:
        engine.cancel(message.job)
        done.wait(5)
        raise
    finally:
        engine.stop()
    return final[0]


def _write_result(final: Message, output: Path) -> int:
    from backend.geometry.mesh_files import MeshFileError
    from backend.result_files import write_result_files

    if final.type != "result":
        return _report_failure(final)
    try:
        mesh, path, meta_path = write_result_files(final, output)
    except MeshFileError as exc:
        print(f"error: -o {output}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    meta = final.get("metadata")
    for warning in meta.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    timings = meta.get("timings", {})
    size = (f"{len(mesh.vertices)} points" if mesh.is_points
            else f"{mesh.n_triangles} triangles, {len(mesh.vertices)} vertices")
    print(f"wrote {path} and {meta_path.name} ({size}, "
          f"method: {meta.get('method', '?')}, {timings.get('run_s', 0):.1f} s)")
    return EXIT_OK


def _report_failure(final: Message) -> int:
    """One line on stderr for a job's final error; the exit code tells the kinds apart."""
    code, text = final.get("code"), final.get("message")
    if code == ErrorCode.INVALID_FIELD.value and final.get("state") == "rejected":
        # a parameter out of the protocol's range: refused before the job ran, so a usage error
        print(f"error: {text}", file=sys.stderr)
        return EXIT_USAGE
    print(f"failed: {code}: {text}", file=sys.stderr)
    # the backend restarted under the job: nothing is wrong with it, submitting again may work
    return EXIT_JOB_LOST if code == ErrorCode.JOB_LOST.value else EXIT_FAILED


def _job_id() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


def _common_params(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {"quality": args.quality, "seed": args.seed, "texture": args.texture}
    if args.face_budget is not None:
        params["face_budget"] = args.face_budget
    if args.timeout is not None:
        params["timeout_s"] = args.timeout
    return params


def _submit_message(args: argparse.Namespace) -> Message:
    from backend.geometry.mesh_files import MeshFileError, load_mesh

    params = _common_params(args)
    max_bytes = ServerConfig().limits.max_message_bytes
    if args.command == "reconstruct" or getattr(args, "task", None) == "reconstruct":
        images = [_read_input(path, "image", max_bytes) for path in args.images]
        if args.method != "auto":
            params["method"] = args.method
        if args.points:
            params["output"] = "points"
        return protocol.submit_reconstruct(_job_id(), images, params)
    if args.command == "generate" or getattr(args, "task", None) == "generate":
        if args.negative:
            params["negative_prompt"] = args.negative
        if args.stylize:
            params["stylize"] = True
        if args.candidates != 1:
            params["candidates"] = args.candidates
        return protocol.submit_generate(_job_id(), args.prompt, params)
    params["mode"] = args.mode
    _checked_file(args.mesh, "mesh")
    try:
        mesh = load_mesh(Path(args.mesh), ServerConfig().limits.max_mesh_triangles)
    except MeshFileError as exc:
        raise UsageError(str(exc)) from None
    return protocol.submit_stylize(_job_id(), mesh, args.prompt, params)


def _checked_file(path: str, what: str) -> Path:
    """``path`` as a regular file: a folder or a device (/dev/zero) is named as such, not read."""
    file = Path(path)
    if file.is_dir():
        raise UsageError(f"{what} {path} is a folder, not a file")
    if not file.exists():
        raise UsageError(f"{what} {path} does not exist")
    if not file.is_file():
        raise UsageError(f"{what} {path} is not a regular file")
    return file


def _read_input(path: str, what: str, max_bytes: int) -> bytes:
    file = _checked_file(path, what)
    size = file.stat().st_size
    if size > max_bytes:
        raise UsageError(f"{what} {path} is {size} bytes; a job takes at most {max_bytes}")
    try:
        return file.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None


def _default_output(args: argparse.Namespace) -> Path:
    if args.output:
        return Path(args.output)
    stem = Path(args.images[0]).stem if getattr(args, "images", None) else "stepstone"
    return Path("out") / f"{stem}{'.ply' if getattr(args, 'points', False) else '.glb'}"


def _checked_output(output: Path, points: bool = False) -> Path:
    """Checked before the job runs, so that a typo does not throw away minutes of work."""
    from backend.geometry.mesh_files import FORMATS

    if points and output.suffix.lower() != ".ply":
        raise UsageError(f"-o {output}: a point cloud (--points) is written as .ply")
    if output.suffix.lower() not in FORMATS:
        raise UsageError(f"-o {output}: cannot write {output.suffix or 'extension-less'} files; "
                         f"use one of {', '.join(FORMATS)}")
    if output.is_dir():
        raise UsageError(f"-o {output} is a folder; give a file name such as {output / 'result.glb'}")
    _check_creatable_folder(output.parent, f"-o {output}")
    return output


def _check_creatable_folder(folder: Path, what: str) -> None:
    """``folder`` exists as a writable folder or can be made: its nearest existing ancestor is one."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if existing is None:
        raise UsageError(f"{what}: the current folder no longer exists")
    if not existing.is_dir():
        raise UsageError(f"{what}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{what}: cannot write in {existing}")


def _checked_device(name: str) -> str:
    from backend.devices import DeviceUnavailable, resolve_device

    try:
        return resolve_device(name)
    except DeviceUnavailable as exc:
        raise UsageError(f"--device {name}: {exc}") from None


def _checked_weights(args: argparse.Namespace) -> Path | None:
    """``--weights`` resolved and checked: an explicit checkpoint that cannot load is an error
    here, not a silent fall-back to another method."""
    given = getattr(args, "weights", None)
    if not given:
        return None
    from backend.pipelines.reconstruct.weights import WeightsUnavailable, check_weights, resolve_weights

    try:
        weights = resolve_weights(given)
        check_weights(weights)
    except WeightsUnavailable as exc:
        raise UsageError(f"--weights {given}: {exc}") from None
    return weights


def _checked_keys(args: argparse.Namespace) -> dict[str, str]:
    """The CURVE key files, loaded once here so that a bad one is named before connecting."""
    from backend.auth import AuthKeyError, load_client_keys

    if not args.client_key and not args.server_key:
        return {}
    if not (args.client_key and args.server_key):
        raise UsageError("--client-key and --server-key go together (CURVE needs both files)")
    client_key = _checked_file(args.client_key, "--client-key")
    server_key = _checked_file(args.server_key, "--server-key")
    try:
        load_client_keys(client_key, server_key)
    except (AuthKeyError, ValueError, OSError) as exc:
        raise UsageError(f"unusable key file: {exc}") from None
    return {"client_secret_file": args.client_key, "server_public_file": args.server_key}


def _checked_job_id(job: str) -> str:
    if not protocol.JOB_ID_PATTERN.match(job):
        raise UsageError(f"{job!r} is not a job id (1-64 letters, digits, '_', '.', '-', "
                         "starting with a letter or digit)")
    return job


def cmd_run(args: argparse.Namespace) -> int:
    output = _checked_output(_default_output(args), getattr(args, "points", False))
    message = _submit_message(args)
    weights = _checked_weights(args)
    device = _checked_device(args.device)
    printer = ProgressPrinter()
    try:
        final = run_local(message, device, printer, shape_weights=weights)
    finally:
        printer.close()
    return _write_result(final, output)


def cmd_client(args: argparse.Namespace) -> int:
    from backend.client import BackendUnavailable

    action = _client_action(args)
    with _connected_client(args) as client:
        try:
            return action(client)
        except TimeoutError:
            print(f"failed: no answer from {args.address} within {args.wait:g} s", file=sys.stderr)
            return EXIT_FAILED
        except BackendUnavailable as exc:
            print(f"failed: {exc}", file=sys.stderr)
            return EXIT_FAILED


def _client_action(args: argparse.Namespace) -> Callable[[BackendClient], int]:
    """The work of ``client TASK``, its arguments all checked before anything connects."""
    if args.task == "ping":
        return lambda client: _client_ping(client, args.wait)
    if args.task == "status":
        job = _checked_job_id(args.job)
        output = _checked_output(Path(args.output)) if args.output else None
        return lambda client: _client_status(client, job, args.token, args.wait, output)
    output = _checked_output(_default_output(args), getattr(args, "points", False))
    message = _submit_message(args)
    return lambda client: _client_job(client, message, args.wait, output)


def _connected_client(args: argparse.Namespace) -> BackendClient:
    import zmq

    from backend.client import BackendClient

    keys = _checked_keys(args)
    try:
        return BackendClient(args.address, **keys)
    except zmq.ZMQError as exc:
        raise UsageError(f"--address {args.address}: {exc}") from None


def _client_ping(client: BackendClient, wait_s: float) -> int:
    pong = client.request_pong(timeout_s=wait_s)
    print(json.dumps(pong.fields, indent=2))
    return EXIT_OK if pong.type == "pong" else EXIT_FAILED


def _client_status(client: BackendClient, job: str, token: str | None, wait_s: float, output: Path | None) -> int:
    client.send(protocol.status(job, resend=output is not None, token=token))
    reply = client.wait_for(lambda m: m.job == job and m.type in ("job_status", "error"), wait_s)
    print(json.dumps(reply.fields, indent=2))
    if reply.type == "error":
        return _report_failure(reply)
    if output is not None and reply.get("state") == "done":
        final = client.wait_for(lambda m: m.job == job and m.type == "result", wait_s)
        return _write_result(final, output)
    return EXIT_OK


def _client_job(client: BackendClient, message: Message, wait_s: float, output: Path) -> int:
    printer = ProgressPrinter()
    token: list[str] = []

    def on_message(reply: Message) -> None:
        if reply.job == message.job and reply.type == "accepted":
            token.append(reply.get("token"))
        printer(reply)

    try:
        final = client.run_job(message, wait_s, on_message)
    except KeyboardInterrupt:
        client.cancel(message.job)
        raise
    except TimeoutError:
        # another process is another client: the job's token proves it is this user's job
        fetch = f"client status {message.job} --token {token[0]} -o FILE" if token else "(it was never accepted)"
        print(f"failed: no result within {wait_s:g} s; job id {message.job}; fetch it later with `{fetch}`",
              file=sys.stderr)
        return EXIT_FAILED
    finally:
        printer.close()
    return _write_result(final, output)


def cmd_serve(args: argparse.Namespace) -> int:
    from backend.pipelines.registry import default_registry

    _checked_device(args.device)
    _ray_options(args)
    return run_server(args, default_registry(_checked_weights(args)))


def run_server(args: argparse.Namespace, registry) -> int:
    """Serve ``registry`` with the options of ``serve`` until stopped (SIGTERM, Ctrl-C, stdin EOF)."""
    import signal

    from backend.server import Server, ServerConfigError

    ray = _ray_options(args)
    try:
        device = _checked_device(args.device)
        config = ServerConfig(host=args.host, port=args.port, device=device,
                              auth_dir=Path(args.auth_dir) if args.auth_dir else None,
                              job_timeout_s=args.job_timeout)
        if ray is None:
            server = Server(config, registry, [device])
        else:
            from backend.scale.cluster import connect
            from backend.scale.process import ray_process_factory

            server = Server(config, registry, ray.worker_names(), ray_process_factory(ray), connect(ray))
    except (UsageError, ServerConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - e.g. the port is taken: say so plainly
        print(f"error: could not start the backend: {exc}", file=sys.stderr)
        return EXIT_FAILED
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    if args.exit_on_stdin_eof:
        # A supervisor (Blender) keeps our stdin open; if it dies without stopping us, EOF arrives.
        threading.Thread(target=_stop_on_eof, args=(server,), name="stepstone-stdin", daemon=True).start()
    # Supervisors (the Blender add-on) wait for this exact line before connecting.
    print(f"STEPSTONE READY {server.address}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if ray is not None:
            from backend.scale.cluster import shutdown

            shutdown()
    return EXIT_OK


def _ray_options(args: argparse.Namespace):
    """``RayOptions`` from --ray/--workers/...; None without --ray (then Ray options are refused)."""
    if args.ray is None:
        if args.workers is not None or args.gpus_per_worker:
            raise UsageError("--workers and --gpus-per-worker need --ray (local or a cluster address)")
        return None
    from backend.scale.cluster import RayOptions

    if getattr(args, "device", "auto") != "auto":
        raise UsageError("with --ray the device follows --gpus-per-worker (CUDA above 0); leave --device out")
    return RayOptions(args.ray, 2 if args.workers is None else args.workers, args.cpus_per_worker,
                      args.gpus_per_worker)


def cmd_batch(args: argparse.Namespace, registry=None) -> int:
    """``registry``: the pipelines to run instead of the shipped ones (tests run doubles)."""
    from backend.batch.items import expand_inputs
    from backend.batch.runner import BatchSettings, run_batch
    from backend.jobs import JobEngine
    from backend.pipelines.registry import default_registry

    ray = _ray_options(args)
    items = expand_inputs(args.inputs)
    folder = Path(args.out)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--out {folder} is a file; give a folder")
    _check_creatable_folder(folder, f"--out {folder}")
    if args.max_attempts < 1:
        raise UsageError(f"--max-attempts must be at least 1, not {args.max_attempts}")
    if args.points and args.format not in (None, "ply"):
        raise UsageError(f"--points writes point clouds as .ply, not .{args.format}")
    file_format = args.format or ("ply" if args.points else "glb")
    settings = BatchSettings(_common_params(args), args.method, args.stylize, f".{file_format}", args.max_attempts,
                             args.points)
    registry = (registry or default_registry(_checked_weights(args))).only({item.task for item in items})
    if ray is None:
        from backend.devices import resolve_device

        device = resolve_device(_checked_device(args.device))
        make_engine = lambda sink: JobEngine(registry, ServerConfig(), [device], sink)  # noqa: E731
    else:
        from backend.scale.cluster import connect
        from backend.scale.process import ray_process_factory

        info = connect(ray)
        print(f"Ray cluster {ray.address}: {info['nodes']} node(s), {info['cpus']:g} CPUs, {info['gpus']:g} GPUs; "
              f"{ray.workers} worker(s)", file=sys.stderr)
        factory = ray_process_factory(ray)
        make_engine = lambda sink: JobEngine(registry, ServerConfig(), ray.worker_names(), sink, factory)  # noqa: E731
    try:
        summary = run_batch(items, folder, settings, make_engine,
                            report=lambda line: print(line, file=sys.stderr, flush=True))
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume (progress is in {folder / 'manifest.json'})",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if ray is not None:
            from backend.scale.cluster import shutdown

            shutdown()
    print(f"{summary.done} done, {summary.failed} failed, {summary.skipped} already done, of {summary.total} "
          f"in {summary.seconds:.1f} s ({summary.items_per_minute:.1f} items/min); results in {folder}")
    return EXIT_OK if summary.failed == 0 else EXIT_FAILED


def cmd_mine(args: argparse.Namespace) -> int:
    """A folder of photos -> DIR/cluster_NN.glb per object found, and DIR/clusters.json."""
    from addon.core.images import IMAGE_SUFFIXES, folder_hint
    from backend.geometry.mesh_files import MeshFileError
    from backend.requests import MAX_MINE_IMAGES
    from backend.result_files import write_mined_files

    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"{args.folder} is not a folder" if folder.exists() else f"{args.folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    photos = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
    skipped = [p.name for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
    if not photos:
        raise UsageError(f"{args.folder} holds no photos ({', '.join(IMAGE_SUFFIXES)}){folder_hint(files)}")
    if len(photos) > MAX_MINE_IMAGES:
        raise UsageError(f"{args.folder} holds {len(photos)} photos; a mine job takes at most {MAX_MINE_IMAGES}: "
                         "split the folder")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    _check_creatable_folder(out, f"--out {out}")
    max_bytes = ServerConfig().limits.max_message_bytes
    data = [_read_input(str(p), "photo", max_bytes) for p in photos]
    if sum(len(d) for d in data) > max_bytes:
        raise UsageError(f"the photos of {args.folder} add up to more than {max_bytes} bytes: use fewer or smaller ones")
    params = _common_params(args)
    if args.min_photos != 2:
        params["min_photos"] = args.min_photos
    message = protocol.submit_mine(_job_id(), data, [p.name for p in photos], params)
    device = _checked_device(args.device)
    printer = ProgressPrinter()
    try:
        final = run_local(message, device, printer)
    finally:
        printer.close()
    if final.type != "result":
        return _report_failure(final)
    if skipped:
        print(f"skipped {len(skipped)} file(s) that are not photos: {', '.join(skipped[:5])}"
              f"{', ...' if len(skipped) > 5 else ''}", file=sys.stderr)
    try:
        index, meshes = write_mined_files(final, out, f".{args.format}", {"skipped": skipped})
    except MeshFileError as exc:
        print(f"error: --out {out}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    meta = final.get("metadata")
    for warning in meta.get("warnings", []):
        print(f"warning: {warning}", file=sys.stderr)
    for cluster in meta["clusters"]:
        print(f"{cluster['name']}: {len(cluster['images'])} photos -> {out / (cluster['name'] + '.' + args.format)}")
    aside = len(meta.get("outliers", [])) + len(meta.get("rejected", []))
    print(f"wrote {len(meshes)} mesh(es) and {index} ({aside} photo(s) set apart, "
          f"{meta.get('timings', {}).get('run_s', 0):.1f} s)")
    return EXIT_OK


def _stop_on_eof(server) -> None:
    while sys.stdin.buffer.read(4096):
        pass
    server.stop()


def cmd_keys(args: argparse.Namespace) -> int:
    from backend.auth import AuthKeyError, generate_keys

    directory = Path(args.directory)
    _check_creatable_folder(directory, f"keys {directory}")
    try:
        made = generate_keys(directory, args.client)
    except (AuthKeyError, OSError) as exc:
        raise UsageError(str(exc)) from None
    print(f"server keys in {args.directory} (start with: python -m backend serve --host 0.0.0.0 --auth-dir {args.directory})")
    print(f"give the artist these two files: {made['server_public']} and {made['client_secret']}")
    return EXIT_OK


def cmd_info(args: argparse.Namespace) -> int:
    import platform

    import backend

    info: dict[str, Any] = {"backend_version": backend.__version__, "protocol": protocol.PROTOCOL_VERSION,
                            "python": platform.python_version(), "executable": sys.executable}
    try:
        import torch

        info["torch"] = torch.__version__
        info["cuda_available"] = bool(torch.cuda.is_available())
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    except Exception as exc:  # noqa: BLE001 - report a broken environment instead of crashing
        info["torch"] = None
        info["problem"] = f"torch cannot be imported: {exc}"
    from backend.pipelines.registry import default_registry

    info["pipelines"] = default_registry().tasks()
    from backend.pipelines.clip_mapper_prep import latest_preparation

    preparation = latest_preparation()
    info["text_path"] = preparation.describe() if preparation else "offline text model (no CLIP preparation started)"
    if args.json:
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key}: {value}")
    return EXIT_OK if info.get("torch") else EXIT_FAILED


# ------------------------------------------------------------------------------------ parser
class _Parser(argparse.ArgumentParser):
    """A bad argument ends in one ``error: ...`` line and exit code 2, like every usage error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"error: {message} (see `{self.prog} --help`)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0-65535; 0 picks a free one)")
    return port


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(seconds) and seconds > 0):
        raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
    return seconds


def _add_job_options(parser: argparse.ArgumentParser, output: bool = True) -> None:
    if output:
        parser.add_argument("-o", "--output", help="output file: .glb (default), .obj or .ply")
    parser.add_argument("--quality", choices=protocol.QUALITIES, default="default")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--texture", choices=protocol.TEXTURE_MODES, default="uv",
                        help="uv: baked texture; vertex: vertex colours; none")
    parser.add_argument("--face-budget", type=int, help="decimate to at most this many triangles")
    parser.add_argument("--timeout", type=_seconds, help="job deadline in seconds")


def _add_points_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--points", action="store_true",
                        help="a coloured point cloud sampled on the result's surface instead of a mesh "
                             "(written as .ply; faster: no UV unwrap or texture bake)")


def _add_method_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", choices=protocol.RECONSTRUCT_METHODS, default="auto",
                        help="auto: the outline solid when the photo shows a turned object's rim or a box, "
                             "else the learned shape model when its result is clean, else the outline solid; "
                             "outline: a surface of revolution, a box or an inflation of the photo's outline; "
                             "silhouette: the inflation baseline")


def _add_ray_options(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--ray", metavar="ADDRESS",
                        help=f"run {what} on Ray workers: 'local' starts a Ray cluster on this machine; "
                             "otherwise a cluster's address (auto, HOST:6379, ray://HOST:10001). "
                             "Needs the scale extra (pip install '.[scale]'); see docs/scale.md")
    parser.add_argument("--workers", type=int, help="Ray workers (jobs at once), each with warm pipelines; default 2")
    parser.add_argument("--cpus-per-worker", type=float, default=1.0,
                        help="CPUs Ray reserves for each worker, also its torch threads (default 1)")
    parser.add_argument("--gpus-per-worker", type=float, default=0.0,
                        help="GPUs for each worker (0.5 lets two share one); above 0 workers run on CUDA")


def _add_task_parsers(sub) -> None:
    p = sub.add_parser("reconstruct", help="image(s) of one object → mesh")
    p.add_argument("images", nargs="+")
    _add_method_option(p)
    _add_points_option(p)
    _add_job_options(p)
    p = sub.add_parser("generate", help="text prompt → mesh")
    p.add_argument("prompt")
    p.add_argument("--negative", help="negative prompt")
    p.add_argument("--stylize", action="store_true", help="also stylize the texture with the prompt")
    p.add_argument("--candidates", type=int, default=1)
    _add_job_options(p)
    p = sub.add_parser("stylize", help="mesh + text prompt → stylized mesh")
    p.add_argument("mesh")
    p.add_argument("prompt")
    p.add_argument("--mode", choices=protocol.STYLIZE_MODES, default="texture")
    _add_job_options(p)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m backend", description="Stepstone backend")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service Blender connects to")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default: loopback only)")
    serve.add_argument("--port", type=_port, default=DEFAULT_PORT, help="0 picks a free port")
    serve.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    serve.add_argument("--auth-dir", help="CURVE key folder from `keys`; required for non-loopback hosts")
    serve.add_argument("--job-timeout", type=_seconds, default=ServerConfig.job_timeout_s)
    serve.add_argument("--exit-on-stdin-eof", action="store_true",
                       help="stop when standard input closes (for supervisors such as the Blender add-on)")
    serve.add_argument("--weights", help=WEIGHTS_HELP)
    _add_ray_options(serve, "jobs")

    _add_task_parsers(sub)
    for name in ("reconstruct", "generate", "stylize"):
        sub.choices[name].add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    sub.choices["reconstruct"].add_argument("--weights", help=WEIGHTS_HELP)

    client = sub.add_parser("client", help="send a job to a running server")
    client.add_argument("--address", default=f"tcp://127.0.0.1:{DEFAULT_PORT}")
    client.add_argument("--client-key", help="client *.key_secret file (CURVE)")
    client.add_argument("--server-key", help="server.key public key file (CURVE)")
    client.add_argument("--wait", type=_seconds, default=3600.0, help="seconds to wait for the result")
    tasks = client.add_subparsers(dest="task", required=True)
    _add_task_parsers(tasks)
    tasks.add_parser("ping", help="check the server and print its state")
    status = tasks.add_parser("status", help="state of a job; with -o, fetch its result")
    status.add_argument("job")
    status.add_argument("-o", "--output")
    status.add_argument("--token", help="the job's token (printed when a run gives up waiting): needed by any "
                                        "client but the one that submitted the job")

    batch = sub.add_parser("batch", help="many images or prompts → one mesh each, resumable",
                           description="Run every input as its own job and write each result to --out as it "
                                       "finishes (NAME.glb + NAME.json), with manifest.json recording each item. "
                                       "Running the same command again skips finished items.")
    batch.add_argument("inputs", nargs="+", metavar="INPUT",
                       help="an image, a folder of images, or a prompt list (.txt: one per line; .csv with a "
                            "prompt column, optional negative_prompt, seed, name)")
    batch.add_argument("--out", required=True, help="output folder (also holds manifest.json)")
    batch.add_argument("--format", choices=("glb", "obj", "ply"), help="glb (default) or obj or ply; ply with --points")
    batch.add_argument("--device", default="auto", help="without --ray: cpu, cuda, cuda:N or auto")
    batch.add_argument("--weights", help=WEIGHTS_HELP)
    batch.add_argument("--stylize", action="store_true", help="also stylize generated shapes with their prompt")
    batch.add_argument("--max-attempts", type=int, default=3,
                       help="runs of an item whose worker dies under it (default 3)")
    _add_method_option(batch)
    _add_points_option(batch)
    _add_job_options(batch, output=False)
    _add_ray_options(batch, "the items")

    mine = sub.add_parser("mine", help="a folder of photos → one mesh per object found in it",
                          description="Group the photos by the object they show, and reconstruct each group's "
                                      "object from all its photos: --out gets NAME.glb per object and clusters.json "
                                      "(each object's photos, mesh file and per-photo cameras; outliers apart). "
                                      "See docs/mining.md.")
    mine.add_argument("folder", help="a folder of photos (.png, .jpg, .jpeg, .webp; at most 60)")
    mine.add_argument("--out", required=True, help="output folder")
    mine.add_argument("--format", choices=("glb", "obj", "ply"), default="glb")
    mine.add_argument("--min-photos", type=int, default=2,
                      help="photos an object needs to be mined; smaller groups are outliers (default 2)")
    mine.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    _add_job_options(mine, output=False)

    keys = sub.add_parser("keys", help="create CURVE keys for remote use")
    keys.add_argument("directory")
    keys.add_argument("--client", default="blender", help="name of the client key pair to create")

    info = sub.add_parser("info", help="versions, devices and pipelines of this environment")
    info.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one command; returns its exit code (EXIT_*)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    handlers = {"serve": cmd_serve, "reconstruct": cmd_run, "generate": cmd_run, "stylize": cmd_run,
                "batch": cmd_batch, "mine": cmd_mine, "client": cmd_client, "keys": cmd_keys, "info": cmd_info}
    try:
        return handlers[args.command](args)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
