"""The ZeroMQ service: one ROUTER socket, one I/O thread, the job engine behind it.

Only the I/O thread touches the socket. Workers hand their messages to an outbox and wake the
I/O thread through a pipe, so a long job never delays a ping. Request validation (image decoding,
prompt tokenising) runs on a helper thread for the same reason.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import zmq

import backend
from backend import protocol
from backend.auth import load_server_keys, start_authenticator
from backend.config import ServerConfig, is_loopback
from backend.jobs import EngineError, Job, JobEngine
from backend.pipeline_process import PipelineProcess
from backend.pipelines.base import PipelineRegistry
from backend.protocol import ErrorCode, Limits, Message, ProtocolError
from backend.requests import parse_submit

log = logging.getLogger("stepstone.server")


class ServerConfigError(RuntimeError):
    pass


class Server:
    def __init__(self, config: ServerConfig, registry: PipelineRegistry, devices: list[str],
                 process_factory: Callable[..., Any] = PipelineProcess, ray: dict[str, Any] | None = None):
        """``process_factory`` and ``ray``: run the workers on a Ray cluster (``backend.scale``),
        described by ``ray`` in the server's info."""
        if not is_loopback(config.host) and config.auth_dir is None and not config.allow_remote_without_auth:
            raise ServerConfigError(
                f"refusing to listen on {config.host} without authentication: create keys with "
                "`python -m backend keys DIR` and pass --auth-dir DIR (see docs/remote.md)"
            )
        self.config = config
        self.devices = devices
        self._wire_limits = Limits(max_message_bytes=config.limits.max_message_bytes)
        self._outbox: queue.SimpleQueue[tuple[Any, list]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._clients: dict[bytes, float] = {}
        self._lost_clients = 0
        self._stop = threading.Event()
        self._validator = ThreadPoolExecutor(max_workers=1, thread_name_prefix="stepstone-validate")
        self.ray = ray
        self.engine = JobEngine(registry, config, devices, self._deliver, process_factory)
        self._context = zmq.Context()
        self._authenticator = None
        self.socket = self._context.socket(zmq.ROUTER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.setsockopt(zmq.MAXMSGSIZE, config.limits.zmq_maxmsgsize)
        self.socket.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnecting client may reuse its identity
        if config.auth_dir is not None:
            public, secret = load_server_keys(Path(config.auth_dir))
            self._authenticator = start_authenticator(self._context, Path(config.auth_dir))
            self.socket.curve_server = True
            self.socket.curve_publickey = public
            self.socket.curve_secretkey = secret
        if config.port == 0:
            host = f"[{config.host}]" if ":" in config.host else config.host
            self.socket.setsockopt(zmq.IPV6, 1 if ":" in config.host else 0)
            port = self.socket.bind_to_random_port(f"tcp://{host}")
            self.address = f"tcp://{host}:{port}"
        else:
            self.socket.bind(config.address)
            self.address = config.address

    # ------------------------------------------------------------------------------ running
    def serve_forever(self) -> None:
        self.engine.start()
        # The first prompt check loads CLIP's tokenizer (and torch): do it now, not in a user's job.
        self._validator.submit(_warm_up_tokenizer)
        poller = zmq.Poller()
        poller.register(self.socket, zmq.POLLIN)
        poller.register(self._wake_r, zmq.POLLIN)
        last_sweep = time.monotonic()
        log.info("Stepstone backend %s listening on %s (devices: %s, auth: %s)", backend.__version__,
                 self.address, ", ".join(self.devices), "CURVE" if self._authenticator else "off")
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(200))
                if self._wake_r in events:
                    os.read(self._wake_r, 4096)
                if self.socket in events:
                    for _ in range(64):  # bounded batch so the outbox is never starved
                        try:
                            frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        self._handle(frames[0].bytes, frames[1:])
                self._flush_outbox()
                if time.monotonic() - last_sweep > 1.0:
                    self._sweep_clients()
                    last_sweep = time.monotonic()
        finally:
            self._shutdown()

    def stop(self) -> None:
        """Thread-safe request to leave ``serve_forever``."""
        self._stop.set()
        self._wake()

    def _shutdown(self) -> None:
        self.engine.stop()
        self._flush_outbox()
        self._validator.shutdown(wait=False, cancel_futures=True)
        self.socket.close(linger=0)
        if self._authenticator is not None:
            self._authenticator.stop()
        self._context.term()
        os.close(self._wake_r)
        os.close(self._wake_w)

    # ------------------------------------------------------------------------------ outgoing
    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass  # the pipe is full (a wake-up is pending anyway) or closed on shutdown

    def _send(self, identity: Any, message: Message) -> None:
        self._outbox.put((identity, protocol.encode(message)))
        self._wake()

    def _deliver(self, job: Job, message: Message) -> None:
        """Engine callback (any thread): route a job's message to the client that owns it."""
        if job.owner is not None:
            self._send(job.owner, message)

    def _flush_outbox(self) -> None:
        while True:
            try:
                identity, frames = self._outbox.get_nowait()
            except queue.Empty:
                return
            try:
                self.socket.send_multipart([identity, *frames], copy=False)
            except zmq.ZMQError as exc:
                log.warning("could not send to a client: %s", exc)

    # ------------------------------------------------------------------------------ incoming
    def _handle(self, identity: bytes, frames: list) -> None:
        self._clients[identity] = time.monotonic()
        try:
            message = protocol.decode(frames, self._wire_limits)
        except Exception as exc:  # noqa: BLE001 - a peer's bytes must never stop the server
            if not isinstance(exc, ProtocolError):
                log.exception("undecodable message (answered BAD_MESSAGE)")
                exc = ProtocolError(ErrorCode.BAD_MESSAGE, f"message could not be decoded ({type(exc).__name__})")
            header = protocol.peek_header(frames) if frames else None
            job = header.get("job") if header else None
            job = job if isinstance(job, str) and protocol.JOB_ID_PATTERN.match(job) else None
            # "rejected" ends a job for its client: only a submit of a job the server does not
            # have can be rejected; a bad status or cancel about a running job leaves it running
            rejected = job is not None and header.get("type") == "submit" and self.engine.get(job) is None
            self._send(identity, protocol.error(exc.code, exc.message, job, "rejected" if rejected else None))
            return
        try:
            handler = getattr(self, f"_on_{message.type}", None)
            if handler is None:
                raise ProtocolError(ErrorCode.UNKNOWN_TYPE, f"a client may not send {message.type!r} messages")
            handler(identity, message)
        except (ProtocolError, EngineError) as exc:
            self._send(identity, protocol.error(exc.code, exc.message, message.job))
        except Exception as exc:  # noqa: BLE001 - one request's failure must not stop the server
            log.exception("handling a %s message failed", message.type)
            self._send(identity, protocol.error(ErrorCode.BAD_MESSAGE,
                                                f"the server could not handle this {message.type} message "
                                                f"({type(exc).__name__})", message.job))

    def server_info(self) -> dict[str, Any]:
        return {
            "name": "stepstone-backend",
            "version": backend.__version__,
            "protocol": protocol.PROTOCOL_VERSION,
            "devices": self.devices,
            "ray": self.ray,
            "auth": self._authenticator is not None,
            "clients": len(self._clients),
            "clients_lost": self._lost_clients,
            "limits": {
                "max_message_bytes": self.config.limits.max_message_bytes,
                "max_image_pixels": self.config.limits.max_image_pixels,
                "max_images": self.config.limits.max_images,
                "max_prompt_chars": self.config.limits.max_prompt_chars,
                "max_mesh_triangles": self.config.limits.max_mesh_triangles,
            },
            "text_path": _text_path_status(),
            **self.engine.summary(),
        }

    def _on_ping(self, identity: bytes, message: Message) -> None:
        self._send(identity, protocol.pong(self.server_info(), message.get("t")))

    def _on_submit(self, identity: bytes, message: Message) -> None:
        if self.engine.get(message.job) is not None:
            raise EngineError(ErrorCode.DUPLICATE_JOB, f"a job with id {message.job!r} already exists")
        self._validator.submit(self._validate_and_queue, identity, message)

    def _validate_and_queue(self, identity: bytes, message: Message) -> None:
        try:
            request = parse_submit(message, self.config.limits)
            self.engine.submit(message.job, request, identity)
        except (ProtocolError, EngineError) as exc:
            self._send(identity, protocol.error(exc.code, exc.message, message.job, "rejected"))
        except Exception as exc:  # noqa: BLE001 - validation bugs must not go unanswered
            log.exception("validating job %s failed", message.job)
            self._send(identity, protocol.error(ErrorCode.INVALID_FIELD, f"could not read the request: {exc}",
                                                message.job, "rejected"))

    def _on_cancel(self, identity: bytes, message: Message) -> None:
        self._check_owner(self.engine.get(message.job), identity, message)
        job = self.engine.cancel(message.job)
        self._send(identity, self._status_message(job))

    def _on_status(self, identity: bytes, message: Message) -> None:
        job = self.engine.get(message.job)
        if job is None:
            self._send(identity, protocol.job_status(message.job, "unknown"))
            return
        self._check_owner(job, identity, message)
        if message.get("resend"):
            # A reconnected client (a new identity with the job's token) takes the job back: later
            # messages go to it, and it gets the final message again if the job ended meanwhile.
            self.engine.set_owner(job.id, identity)
        self._send(identity, self._status_message(job))
        if message.get("resend") and job.final:
            if job.result is not None:
                self._send(identity, job.result)
            elif job.error is not None:
                self._send(identity, protocol.error(ErrorCode(job.error["code"]), job.error["message"], job.id,
                                                    job.state))

    @staticmethod
    def _check_owner(job: Job | None, identity: bytes, message: Message) -> None:
        """Only the client that submitted a job, or one holding its token, may ask about it or cancel it."""
        if job is not None and not job.is_owned_by(identity, message.get("token")):
            raise EngineError(ErrorCode.NOT_OWNER, f"job {message.job!r} belongs to another client; "
                                                   "send the token its 'accepted' message carried")

    def _status_message(self, job: Job) -> Message:
        return protocol.job_status(job.id, job.state, self.engine.queue_position(job), job.stage,
                                   job.fraction, job.error)

    def _sweep_clients(self) -> None:
        now = time.monotonic()
        for identity, seen in list(self._clients.items()):
            if now - seen > self.config.client_timeout_s:
                del self._clients[identity]
                self._lost_clients += 1
                running = [j.id for j in self.engine.jobs_of(identity)]
                log.info("client %s went silent; its jobs %s go on and their results are kept", identity.hex(),
                         running or "(none)")


def _warm_up_tokenizer() -> None:
    try:
        from backend.models.clip_tokens import count_clip_tokens

        count_clip_tokens("warm up")
    except Exception:  # noqa: BLE001 - a missing tokenizer shows up, with its reason, at the first prompt
        log.exception("could not load CLIP's tokenizer")


def _text_path_status() -> dict | None:
    """The CLIP text path's first-use preparation on this machine, for the add-on's panel (None:
    never started). Read from its status file: the server loads no model for it."""
    from backend.pipelines.clip_mapper_prep import latest_preparation

    found = latest_preparation()
    return None if found is None else found.as_dict()
