"""Real PostgreSQL and Redis servers for the test suite.

Tests never mock PostgreSQL or Redis. The harness uses, in order:
1. `TEST_DATABASE_URL` / `TEST_REDIS_URL` when set (a failure to connect then fails the run);
2. the servers on 127.0.0.1:5432 (user postgres) and 127.0.0.1:6379 when they answer;
3. throwaway servers started in a temporary directory from the installed server programs.
If none of these works the run fails with a message naming what to install: never a silent skip.

Each test gets its own uniquely named database / Redis key prefix, removed when the test ends.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg2
import redis
from sqlalchemy.engine import make_url

DEFAULT_POSTGRES_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
RUN_ID = uuid.uuid4().hex[:10]


class ServerUnavailable(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _postgres_answers(url: str) -> bool:
    try:
        psycopg2.connect(_libpq_dsn(url), connect_timeout=3).close()
        return True
    except psycopg2.OperationalError:
        return False


def _libpq_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=2).ping())
    except redis.RedisError:
        return False


def _find_postgres_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _unprivileged_user() -> str | None:
    """PostgreSQL refuses to run as root: pick an account to run the throwaway cluster as."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    raise ServerUnavailable("running as root and neither a 'postgres' nor a 'nobody' account exists")


@dataclass
class ThrowawayServer:
    url: str
    process: subprocess.Popen | None
    stop_command: list[str] | None
    directory: str

    def stop(self) -> None:
        if self.stop_command:
            subprocess.run(self.stop_command, check=False, capture_output=True)
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_throwaway_postgres() -> ThrowawayServer:
    initdb, pg_ctl = _find_postgres_bin("initdb"), _find_postgres_bin("pg_ctl")
    if not (initdb and pg_ctl):
        raise ServerUnavailable(
            "PostgreSQL does not answer on 127.0.0.1:5432 and its server programs (initdb, pg_ctl) are not "
            "installed: install PostgreSQL (Debian: apt-get install postgresql) or set TEST_DATABASE_URL"
        )
    directory = tempfile.mkdtemp(prefix="spt-pg-")
    user = _unprivileged_user()
    run_as = ["runuser", "-u", user, "--"] if user else []
    if user:
        shutil.chown(directory, user=user)
        os.chmod(directory, 0o700)
    data, port = os.path.join(directory, "data"), free_port()
    subprocess.run(
        [*run_as, initdb, "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C.UTF-8"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*run_as, pg_ctl, "-D", data, "-w", "-l", os.path.join(directory, "log"),
         "-o", f"-p {port} -k {directory} -c listen_addresses=127.0.0.1", "start"],
        check=True,
        capture_output=True,
    )
    return ThrowawayServer(
        url=f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres",
        process=None,
        stop_command=[*run_as, pg_ctl, "-D", data, "-m", "immediate", "stop"],
        directory=directory,
    )


def start_throwaway_redis() -> ThrowawayServer:
    server = shutil.which("redis-server")
    if not server:
        raise ServerUnavailable(
            "Redis does not answer on 127.0.0.1:6379 and redis-server is not installed: install Redis "
            "(Debian: apt-get install redis-server) or set TEST_REDIS_URL"
        )
    directory = tempfile.mkdtemp(prefix="spt-redis-")
    port = free_port()
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", directory],
        stdout=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while not _redis_answers(url):
        if time.monotonic() > deadline:
            process.kill()
            raise ServerUnavailable(f"throwaway redis-server did not start on port {port}")
        time.sleep(0.05)
    return ThrowawayServer(url=url, process=process, stop_command=None, directory=directory)


def resolve_server(env_name: str, default_url: str, answers, start_throwaway) -> tuple[str, ThrowawayServer | None]:
    explicit = os.environ.get(env_name)
    if explicit:
        if not answers(explicit):
            raise ServerUnavailable(f"{env_name}={make_url(explicit).render_as_string()} does not answer")
        return explicit, None
    if answers(default_url):
        return default_url, None
    server = start_throwaway()
    return server.url, server


class PostgresDatabases:
    """Creates uniquely named databases on one server and drops them again."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self._counter = 0

    def _admin(self):
        conn = psycopg2.connect(_libpq_dsn(self.server_url))
        conn.autocommit = True
        return conn

    @contextmanager
    def database(self) -> Iterator[str]:
        self._counter += 1
        name = f"spt_{RUN_ID}_{os.getpid()}_{self._counter}"
        conn = self._admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}" TEMPLATE template0 ENCODING \'UTF8\'')
        finally:
            conn.close()
        try:
            yield make_url(self.server_url).set(database=name).render_as_string(hide_password=False)
        finally:
            conn = self._admin()
            try:
                with conn.cursor() as cur:
                    cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                conn.close()


def delete_redis_prefix(url: str, prefix: str) -> None:
    client = redis.Redis.from_url(url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
