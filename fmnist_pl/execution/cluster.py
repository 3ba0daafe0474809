"""``--ray``: where a compare trains when it is not this process - a Ray cluster.

    fmnist-pl sweep --lrs 1e-4:1e0:36 --seeds 10 --ray auto             # the cluster this machine is in
    fmnist-pl compare --seeds 8 --ray ray://head.example:10001           # Ray Client, from a laptop
    fmnist-pl compare --seeds 2 --ray local:2                            # a local Ray instance, 2 CPUs

This module parses the address and connects (checking first, in seconds, that something
answers there: an unreachable cluster is a one-line error, exit 2, with nothing written).
Ray itself is imported only here and in :mod:`fmnist_pl.execution.ray_backend`, and only when
``--ray`` is given, so that start-up and ``--help`` stay fast without it. The backend that
trains there (tasks, the mailbox, retries) is :class:`fmnist_pl.execution.ray_backend.RayCluster`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

from fmnist_pl.config import ConfigError

if TYPE_CHECKING:
    pass

FORMS = (
    "auto (the cluster this machine belongs to, or $RAY_ADDRESS), ray://HOST:10001 (Ray Client), "
    "HOST:6379 (the head's GCS), or local[:N] (a Ray instance started here with N CPUs)"
)
CONNECT_TIMEOUT_S = 3.0  # an address that does not answer a TCP connect in this time is unreachable


@dataclass(frozen=True)
class RayAddress:
    """A parsed ``--ray`` value: ``address`` is what ``ray.init`` gets; ``local_cpus`` for ``local[:N]``."""

    spec: str
    address: str  # "local" starts a new instance here; "auto", "ray://h:p" or "h:p" connect
    local_cpus: int | None = None

    @property
    def local(self) -> bool:
        return self.address == "local"


_HOST_PORT = re.compile(r"^(?:ray://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def parse_address(spec: str) -> RayAddress:
    """``--ray`` text -> :class:`RayAddress`; anything else is a one-line :class:`ConfigError`."""
    text = spec.strip()
    if text == "local":
        return RayAddress(spec, "local")
    if text.startswith("local:"):
        n = text.removeprefix("local:")
        if not n.isdigit() or int(n) < 1:
            raise ConfigError(f"--ray {spec!r}: local:N needs a whole number of CPUs >= 1, like local:2")
        cores = os.cpu_count() or 1
        if int(n) > cores:  # more would only split this machine's memory into slivers no run fits in
            raise ConfigError(f"--ray {spec!r}: this machine has {cores} CPUs; use local:N with N at most {cores}")
        return RayAddress(spec, "local", int(n))
    if text == "auto":
        return RayAddress(spec, "auto")
    match = _HOST_PORT.match(text)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise ConfigError(f"--ray {spec!r} is not a Ray address; use {FORMS}")
    return RayAddress(spec, text)


def _host_port(spec: str, address: str) -> tuple[str, int]:
    match = _HOST_PORT.match(address)
    if match is None:  # only "auto" can get here unchecked: $RAY_ADDRESS or Ray's record of `ray start`
        raise ConfigError(f"--ray {spec} found the address {address!r}, which is not HOST:PORT; use {FORMS}")
    return match.group(1).strip("[]"), int(match.group(2))


def _resolve_auto(spec: str) -> str:
    """The GCS address ``auto`` means ($RAY_ADDRESS, else the last ``ray start`` on this machine)."""
    fix = "start one with `ray start --head` (or pass --ray ray://HOST:10001, or --ray local:N to start Ray here)"
    if os.environ.get("RAY_ADDRESS"):
        return os.environ["RAY_ADDRESS"]
    try:
        from ray._private.services import canonicalize_bootstrap_address  # Ray's own lookup for "auto"

        found = canonicalize_bootstrap_address("auto")
    except Exception:  # noqa: BLE001 - "could not find any running Ray instance", in its several forms
        found = None
    if not found:
        raise ConfigError(f"--ray {spec}: no running Ray cluster found on this machine; {fix}")
    return found


def check_reachable(target: RayAddress) -> str:
    """The address ``ray.init`` gets, after a TCP connect to it answered within a few seconds.

    Ray's own connect retries for a minute or more before it gives up; a typo should not cost that.
    """
    if target.local:
        return "local"
    address = _resolve_auto(target.spec) if target.address == "auto" else target.address
    host, port = _host_port(target.spec, address)
    fix = "check the address and that the cluster is up (`ray status` on its head node)"
    try:
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        why = "no answer" if isinstance(exc, socket.timeout) else (exc.strerror or type(exc).__name__).lower()
        raise ConfigError(f"--ray {target.spec}: cannot reach {host}:{port} ({why}); {fix}") from None
    # Something accepted the connection (a proxy or a firewall may accept any). Ray's GCS and its
    # client server are gRPC servers: one answers an unknown method with UNIMPLEMENTED at once; a
    # plain HTTP server (a proxy) comes back as an HTTP status that gRPC reports the same way.
    import grpc

    channel = grpc.insecure_channel(f"{host}:{port}")
    probe = channel.unary_unary("/fmnist_pl.Probe/Ping", request_serializer=bytes, response_deserializer=bytes)
    try:
        probe(b"", timeout=CONNECT_TIMEOUT_S)
    except grpc.RpcError as exc:
        http = "http2 header with status" in (exc.details() or "")
        if exc.code() != grpc.StatusCode.UNIMPLEMENTED or http:
            what = "an HTTP server, not Ray" if http else exc.code().name.lower()
            raise ConfigError(
                f"--ray {target.spec}: {host}:{port} accepts connections but no Ray answers there ({what}); {fix}"
            ) from None
    finally:
        channel.close()
    return address


@dataclass
class RaySession:
    """A connected Ray cluster, as the compare sees it (what it has, where its dashboard is)."""

    target: RayAddress
    nodes: int
    cpus: float
    gpus: float
    node_memory: list[float]  # bytes per alive node ("memory" resource), for sizing CPU units
    node_cpus: list[float]
    dashboard: str | None
    gpu_bytes: int | None = None  # one GPU's memory, probed when first needed (ray_backend.resources)

    def describe(self) -> str:
        """``Ray cluster (2 nodes, 4 CPUs, 0 GPUs)``: the device line of config.json."""
        n = self.nodes
        return (
            f"Ray cluster ({n} node{'s' if n != 1 else ''}, {self.cpus:g} CPUs, {self.gpus:g} GPUs; "
            f"--ray {self.target.spec})"
        )

    def uses_gpus(self, accelerator: str) -> bool:
        if accelerator in ("gpu", "cuda") and not self.gpus:
            raise ConfigError(
                f"--accelerator {accelerator}, but the Ray cluster at --ray {self.target.spec} has no "
                "GPU; use --accelerator cpu (or auto: GPUs when the cluster has them)"
            )
        if accelerator == "mps":
            raise ConfigError("--accelerator mps trains on this Mac only; use --accelerator cpu or auto with --ray")
        return accelerator in ("auto", "gpu", "cuda") and self.gpus > 0


def _restoring_signals() -> contextlib.AbstractContextManager[None]:
    """``ray.init`` installs its own SIGTERM handler (``sys.exit``); the compare keeps its own."""
    if threading.current_thread() is not threading.main_thread():
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def keep() -> Iterator[None]:
        previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    return keep()


def connect(target: RayAddress) -> RaySession:
    """``ray.init`` for ``target`` (checked reachable first); a failure is one :class:`ConfigError` line."""
    address = check_reachable(target)
    import ray

    # Ray Client (ray://) cannot take node options; a local instance gets its CPUs.
    options: dict[str, Any] = {"num_cpus": target.local_cpus} if target.local else {}
    try:
        with _restoring_signals():
            context = ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False, **options)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - version mismatch, refused handshake, ...: one line each
        ray.shutdown()
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"--ray {target.spec}: Ray could not connect ({first}); check the address, and that "
            f"this machine has the cluster's Ray version ({ray.__version__} here)"
        ) from None
    alive = [n for n in ray.nodes() if n.get("Alive")]
    resources = ray.cluster_resources()
    dashboard = getattr(context, "dashboard_url", None) or None
    return RaySession(
        target=target,
        nodes=len(alive),
        cpus=float(resources.get("CPU", 0)),
        gpus=float(resources.get("GPU", 0)),
        node_memory=[float(n["Resources"].get("memory", 0)) for n in alive],
        node_cpus=[float(n["Resources"].get("CPU", 0)) for n in alive],
        dashboard=f"http://{dashboard}" if dashboard and "://" not in dashboard else dashboard,
    )
