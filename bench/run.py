"""Benchmark of the service against a bare FastAPI endpoint measured in the same run.

    .venv/bin/pip install -e ".[bench]" && .venv/bin/python bench/run.py [--quick] [--write]

Installs wrk (Debian) when missing, pins every server to core 0 and wrk to core 1
(when `taskset` exists), and reports each figure as the median of three runs, the
apps alternating, as a ratio to the bare endpoint (or to the argon2 ceiling). It
prints its expected duration first. Only with --write do the results go to
bench/results/<date>.json and .md, the chart to bench/results/benchmark.png, and the
table into README.md; otherwise the table is printed and nothing is written.
"""

import argparse
import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
LUA = BENCH / "lua"
RESULTS = BENCH / "results"
SERVER_CORE, LOAD_CORE = "0", "1"
EMAIL = "bench@example.com"
# The account whose hash has the peers' argon2 cost, logged in to by the M3 peers' storm.
PEERS_EMAIL = "peers@example.com"
# Argon2 as the apps we compare with configure it: 64 MiB, t=3, p=4.
PEERS_ARGON2 = {
    "PASSWORD_HASH_MEMORY_KIB": str(64 * 1024),
    "PASSWORD_HASH_TIME_COST": "3",
    "PASSWORD_HASH_PARALLELISM": "4",
}
PASSWORD = "a long load-testing passphrase"
POSTGRES_SERVER = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
# wrk runs per database and repetition (M1: 6, M2: 3, M3: 2, M5: 1), and the set-up of one
# database (migrate, create the accounts, start five servers, mint refresh tokens), in s.
RUNS_PER_REPETITION = 12
SETUP_SECONDS = 40
PROTECTED_CONNECTIONS = 32
LOGIN_CONNECTIONS = 8
REPETITIONS = 3

TARGETS = {
    "M1 memory": 0.85,
    "M1 redis": 0.60,
    # /metrics and JSON logs may cost at most 5 % of M1.
    "M1 metrics on / off": 0.95,
    "M2 login / argon2 ceiling": 0.90,
    "M3 p99 x of M1": 2.0,
    "M3 req/s of M1": 0.60,
    "M3 peers' argon2 p99 x of M1": 2.0,
    "M3 peers' argon2 req/s of M1": 0.60,
    "M4 forged": 0.70,
    "M4 forged, same token": 0.70,
    "M5 refresh": 0.10,
}
# Lower is better for these.
AT_MOST = frozenset({"M3 p99 x of M1", "M3 peers' argon2 p99 x of M1"})


def pinned(core: str, command: list[str]) -> list[str]:
    return ["taskset", "-c", core, *command] if shutil.which("taskset") else command


def ensure_wrk() -> None:
    if shutil.which("wrk"):
        return
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    apt = [*sudo, "apt-get", "-o", "DPkg::Lock::Timeout=600", "-y", "-q"]
    if subprocess.run([*apt, "install", "wrk"], check=False).returncode != 0:
        subprocess.run([*apt, "update"], check=True)
        subprocess.run([*apt, "install", "wrk"], check=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    name: str
    app: str
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Server":
        command = [sys.executable, "-m", "uvicorn", self.app, "--port", str(self.port)]
        self.process = subprocess.Popen(
            pinned(SERVER_CORE, [*command, "--no-access-log", "--log-level", "warning"]),
            cwd=ROOT,
            env={**os.environ, **self.env},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx2.get(f"{self.url}/test", timeout=1)
                return self
            except httpx2.HTTPError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)


@dataclass
class Run:
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int


def wrk(url: str, script: str, connections: int, seconds: int, **env: str) -> Run:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    result = subprocess.run(
        pinned(LOAD_CORE, [*command, "-s", str(LUA / script), url]),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "BENCH_LUA": str(LUA), **env},
    )
    line = next(x for x in result.stdout.splitlines() if x.startswith("RESULT "))
    data = json.loads(line.removeprefix("RESULT "))
    return Run(
        rps=data["requests"] / (data["duration_us"] / 1e6),
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        non_2xx=data["non_2xx"],
    )


def median_run(runs: list[Run]) -> Run:
    return Run(
        rps=statistics.median(r.rps for r in runs),
        p50_ms=statistics.median(r.p50_ms for r in runs),
        p99_ms=statistics.median(r.p99_ms for r in runs),
        non_2xx=sum(r.non_2xx for r in runs),
    )


def alternate(measures: dict[str, Callable[[], Run]]) -> dict[str, Run]:
    """Each measure REPETITIONS times, in turn, so drift hits every app alike; the medians."""
    runs: dict[str, list[Run]] = {name: [] for name in measures}
    for _ in range(REPETITIONS):
        for name, measure in measures.items():
            runs[name].append(measure())
    return {name: median_run(r) for name, r in runs.items()}


def argon2_verify_seconds() -> float:
    """One verification at the configured (default) parameters, on the server's core."""
    code = (
        "import time, statistics\n"
        "from app.config import Settings\n"
        "from pwdlib import PasswordHash\n"
        "from pwdlib.hashers.argon2 import Argon2Hasher\n"
        "s = Settings(TOKEN_SECRET_KEY='x' * 32)\n"
        "h = PasswordHash((Argon2Hasher(time_cost=s.PASSWORD_HASH_TIME_COST, "
        "memory_cost=s.PASSWORD_HASH_MEMORY_KIB, parallelism=s.PASSWORD_HASH_PARALLELISM),))\n"
        "digest = h.hash('p' * 20)\n"
        "times = []\n"
        "for _ in range(15):\n"
        "    t = time.perf_counter()\n"
        "    h.verify('p' * 20, digest)\n"
        "    times.append(time.perf_counter() - t)\n"
        "print(statistics.median(times))\n"
    )
    out = subprocess.run(
        pinned(SERVER_CORE, [sys.executable, "-c", code]),
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


def affinity_count() -> int:
    return 1 if shutil.which("taskset") else len(os.sched_getaffinity(0))


@contextmanager
def database(kind: str, workdir: Path, postgres_url: str) -> Iterator[str]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    if kind == "sqlite":
        yield f"sqlite:///{workdir / 'bench.db'}"
        return
    name = f"jwt_auth_bench_{secrets.token_hex(4)}"
    admin = create_engine(make_url(postgres_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def prepare(env: dict[str, str]) -> None:
    """Migrate and create the benchmark accounts (one at the peers' argon2 cost), as an
    operator would."""
    full_env = {**os.environ, **env}
    command = str(Path(sys.executable).parent / "jwt-auth-api")
    subprocess.run([command, "migrate"], cwd=ROOT, env=full_env, check=True)
    for email, extra in ((EMAIL, {}), (PEERS_EMAIL, PEERS_ARGON2)):
        subprocess.run(
            [command, "create-user", "--email", email],
            cwd=ROOT,
            env={**full_env, **extra},
            input=PASSWORD + "\n",
            text=True,
            check=True,
            capture_output=True,
        )


def login(url: str) -> dict[str, Any]:
    response = httpx2.post(
        f"{url}/account/login", json={"email": EMAIL, "password": PASSWORD}, timeout=30
    )
    response.raise_for_status()
    pair: dict[str, Any] = response.json()
    return pair


@dataclass
class Options:
    seconds: int
    postgres_url: str
    redis_url: str
    port_base: int | None


def bench_database(kind: str, options: Options, workdir: Path) -> dict[str, Any]:
    ports: Iterator[int] = (
        iter(range(options.port_base, options.port_base + 5))
        if (options.port_base is not None)
        else iter(free_port, None)
    )
    seconds = options.seconds
    with database(kind, workdir, options.postgres_url) as url:
        env = {
            "DATABASE_URL": url,
            "TOKEN_SECRET_KEY": secrets.token_urlsafe(48),
            "IP_RATE_LIMIT": "",
            # Wrong-password logins are measured too: the account throttle must not answer them.
            "LOGIN_MAX_FAILURES": str(10**9),
            "RATE_LIMIT_STORAGE_URL": "memory://",
        }
        prepare(env)
        servers = {
            "bare": Server("bare", "bench.bare_app:app", {}, next(ports)),
            "memory": Server("service (memory://)", "app.main:app", env, next(ports)),
            "redis": Server(
                "service (redis://)",
                "app.main:app",
                {**env, "RATE_LIMIT_STORAGE_URL": options.redis_url},
                next(ports),
            ),
            # The same service without /metrics: what the request metrics cost M1.
            "no metrics": Server(
                "service (memory://, METRICS_ENABLED=false)",
                "app.main:app",
                {**env, "METRICS_ENABLED": "false"},
                next(ports),
            ),
            "peers": Server(
                "service (memory://, peers' argon2)",
                "app.main:app",
                {**env, **PEERS_ARGON2},
                next(ports),
            ),
        }
        for server in servers.values():
            server.start()
        try:
            return measure(servers, seconds)
        finally:
            for server in servers.values():
                server.stop()


def measure(servers: dict[str, Server], seconds: int) -> dict[str, Any]:
    bare, memory, redis = servers["bare"], servers["memory"], servers["redis"]
    token = login(memory.url)["access_token"]

    def get(server: Server) -> Callable[[], Run]:
        return lambda: wrk(
            f"{server.url}/test", "get.lua", PROTECTED_CONNECTIONS, seconds, TOKEN=token
        )

    m1 = alternate(
        {
            "bare": get(bare),
            "memory": get(memory),
            "redis": get(redis),
            "no metrics": get(servers["no metrics"]),
            "forged": lambda: wrk(
                f"{memory.url}/test", "forged.lua", PROTECTED_CONNECTIONS, seconds, TOKEN=token
            ),
            "forged same": lambda: wrk(
                f"{memory.url}/test",
                "forged_same.lua",
                PROTECTED_CONNECTIONS,
                seconds,
                TOKEN=token,
            ),
        }
    )

    def logins(password: str, email: str = EMAIL) -> Callable[[], Run]:
        return lambda: wrk(
            memory.url, "login.lua", LOGIN_CONNECTIONS, seconds, EMAIL=email, PASSWORD=password
        )

    m2 = alternate(
        {
            "login": logins(PASSWORD),
            "wrong": logins("not the benchmark password"),
            "unknown": logins("not the benchmark password", "nobody@example.com"),
        }
    )
    ceiling = affinity_count() / argon2_verify_seconds()

    def under_storm(server: Server, email: str) -> Run:
        storm = subprocess.Popen(
            pinned(
                LOAD_CORE,
                [
                    "wrk",
                    "-t1",
                    f"-c{LOGIN_CONNECTIONS}",
                    f"-d{seconds + 2}s",
                    "-s",
                    str(LUA / "login.lua"),
                    server.url,
                ],
            ),
            env={**os.environ, "BENCH_LUA": str(LUA), "EMAIL": email, "PASSWORD": PASSWORD},
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(1)
            return get(server)()
        finally:
            storm.wait()

    m3 = alternate(
        {
            "storm": lambda: under_storm(memory, EMAIL),
            "peers storm": lambda: under_storm(servers["peers"], PEERS_EMAIL),
        }
    )

    def refreshes() -> Run:
        with tempfile.NamedTemporaryFile("w", suffix=".tokens", delete=False) as tokens:
            for _ in range(PROTECTED_CONNECTIONS * 2):
                tokens.write(login(memory.url)["refresh_token"] + "\n")
        try:
            return wrk(
                f"{memory.url}/account/refresh",
                "refresh.lua",
                PROTECTED_CONNECTIONS,
                seconds,
                TOKENS=tokens.name,
            )
        finally:
            os.unlink(tokens.name)

    m5 = alternate({"refresh": refreshes})["refresh"]

    runs = {
        "bare": m1["bare"],
        "memory": m1["memory"],
        "redis": m1["redis"],
        "no metrics": m1["no metrics"],
        "forged": m1["forged"],
        "forged same": m1["forged same"],
        "login": m2["login"],
        "wrong": m2["wrong"],
        "unknown": m2["unknown"],
        "storm": m3["storm"],
        "peers storm": m3["peers storm"],
        "refresh": m5,
    }
    ratios = {
        "M1 memory": m1["memory"].rps / m1["bare"].rps,
        "M1 redis": m1["redis"].rps / m1["bare"].rps,
        "M1 metrics on / off": m1["memory"].rps / m1["no metrics"].rps,
        "M2 login / argon2 ceiling": m2["login"].rps / ceiling,
        "M2 wrong / unknown p50": m2["wrong"].p50_ms / m2["unknown"].p50_ms,
        "M3 p99 x of M1": m3["storm"].p99_ms / m1["memory"].p99_ms,
        "M3 req/s of M1": m3["storm"].rps / m1["memory"].rps,
        "M3 peers' argon2 p99 x of M1": m3["peers storm"].p99_ms / m1["memory"].p99_ms,
        "M3 peers' argon2 req/s of M1": m3["peers storm"].rps / m1["memory"].rps,
        "M4 forged": m1["forged"].rps / m1["bare"].rps,
        "M4 forged, same token": m1["forged same"].rps / m1["bare"].rps,
        "M5 refresh": m5.rps / m1["bare"].rps,
    }
    return {
        "argon2_ceiling_per_s": ceiling,
        "runs": {name: vars(run) for name, run in runs.items()},
        "ratios": ratios,
    }


def machine() -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {cpu}, Python {sys.version.split()[0]}"


def target_text(name: str) -> str:
    if name not in TARGETS:
        return "0.9 to 1.1"
    return f"<= {TARGETS[name]}" if name in AT_MOST else f">= {TARGETS[name]}"


def met(name: str, value: float) -> bool:
    if name == "M2 wrong / unknown p50":
        return 0.9 <= value <= 1.1
    if name in AT_MOST:
        return value <= TARGETS[name]
    return value >= TARGETS[name]


def previous_results(before: str) -> dict[str, Any] | None:
    """The latest results written before the date `before`, for the table's last column."""
    dates = sorted(p for p in RESULTS.glob("*.json") if p.stem < before)
    if not dates:
        return None
    data: dict[str, Any] = json.loads(dates[-1].read_text())
    return data


def markdown(results: dict[str, Any], previous: dict[str, Any] | None = None) -> str:
    kinds = list(results["databases"])
    before = (previous or {}).get("databases", {})
    lines = [
        f"Run {results['date']} on {results['machine']}; one uvicorn process pinned to one core,"
        f" wrk on the other; median of {REPETITIONS} runs of {results['seconds']} s each.",
        "",
        "| ratio | target | "
        + " | ".join(kinds)
        + " | "
        + " | ".join(f"{k} before" for k in kinds)
        + " |",
        "|---|---|" + "---|---|" * len(kinds),
    ]
    for name in results["databases"][kinds[0]]["ratios"]:
        cells = []
        for kind in kinds:
            value = results["databases"][kind]["ratios"][name]
            cells.append(f"{value:.2f}" + ("" if met(name, value) else " (missed)"))
        for kind in kinds:
            earlier = before.get(kind, {}).get("ratios", {}).get(name)
            cells.append("-" if earlier is None else f"{earlier:.2f}")
        lines.append(f"| {name} | {target_text(name)} | " + " | ".join(cells) + " |")
    if previous is not None:
        lines += ["", f"Before: the run of {previous['date']}."]
    lines += ["", "| run | " + " | ".join(f"{k} req/s | {k} p99 ms" for k in kinds) + " |"]
    lines.append("|---|" + "---|---|" * len(kinds))
    for run in results["databases"][kinds[0]]["runs"]:
        cells = []
        for kind in kinds:
            data = results["databases"][kind]["runs"][run]
            cells += [f"{data['rps']:.0f}", f"{data['p99_ms']:.1f}"]
        lines.append(f"| {run} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(results["databases"])
    names = [n for n in results["databases"][kinds[0]]["ratios"] if n not in AT_MOST]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / (len(kinds) + 1)
    for i, kind in enumerate(kinds):
        values = [results["databases"][kind]["ratios"][n] for n in names]
        ax.bar([x + i * width for x in range(len(names))], values, width, label=kind)
    targets = [TARGETS.get(n, 1.0) for n in names]
    ax.bar(
        [x + len(kinds) * width for x in range(len(names))],
        targets,
        width,
        label="target",
        color="lightgrey",
    )
    ax.set_xticks([x + width for x in range(len(names))], names, rotation=20, ha="right")
    ax.set_ylabel("ratio")
    ax.set_title(f"jwt-auth-api benchmark, {results['date']}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def update_readme(table: str) -> None:
    readme = ROOT / "README.md"
    text = readme.read_text()
    start, end = "<!-- bench:start -->", "<!-- bench:end -->"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        readme.write_text(f"{before}{start}\n{table}{end}{after}")


def expected_seconds(databases: int, seconds: int, repetitions: int) -> int:
    # M3 waits one second for its login storm before measuring.
    per_database = repetitions * (RUNS_PER_REPETITION * seconds + 1) + SETUP_SECONDS
    return databases * per_database


def main() -> int:
    global REPETITIONS  # --quick lowers it for the whole run
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of one wrk run")
    parser.add_argument(
        "--databases", default="sqlite,postgres", help="comma-separated: sqlite, postgres"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: SQLite only, one repetition of 2 s runs (figures are rough)",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        metavar="PORT",
        help="serve the five apps on PORT to PORT+4 (default: free ports)",
    )
    parser.add_argument(
        "--postgres-url",
        default=POSTGRES_SERVER,
        help="PostgreSQL server for a database of the run's own (default: $BENCH_POSTGRES_URL "
        "or postgres@127.0.0.1:5432)",
    )
    parser.add_argument(
        "--redis-url",
        default=REDIS_URL,
        help="Redis database for the redis:// service (default: $BENCH_REDIS_URL or /14)",
    )
    parser.add_argument(
        "--write",
        action="store_true",
        help="write bench/results/<date>.json, .md, the chart and the README table",
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.databases, REPETITIONS = 2, "sqlite", 1
    if args.port_base is not None and not 1 <= args.port_base <= 65531:
        parser.error("--port-base must leave five ports below 65536")
    kinds = args.databases.split(",")
    estimate = expected_seconds(len(kinds), args.seconds, REPETITIONS)
    print(f"expected duration: about {estimate // 60} min {estimate % 60} s", flush=True)
    options = Options(args.seconds, args.postgres_url, args.redis_url, args.port_base)
    ensure_wrk()
    date = datetime.now(UTC).strftime("%Y-%m-%d")
    results: dict[str, Any] = {
        "date": date,
        "machine": machine(),
        "seconds": args.seconds,
        "databases": {},
    }
    with tempfile.TemporaryDirectory() as workdir:
        for kind in kinds:
            print(f"== {kind}", flush=True)
            results["databases"][kind] = bench_database(kind, options, Path(workdir))
            for name, value in results["databases"][kind]["ratios"].items():
                print(f"   {name}: {value:.2f}", flush=True)
    table = markdown(results, previous_results(date))
    print(table)
    if not args.write:
        print("nothing written (pass --write to keep these results in bench/results/ and README)")
        return 0
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{date}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{date}.md").write_text(table)
    chart(results, RESULTS / "benchmark.png")
    update_readme(table)
    print(f"written: bench/results/{date}.json, .md, benchmark.png and README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
