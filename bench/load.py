"""Many members signing in with MFA at once, over real HTTP, against the running local stack.

``python -m devstack run`` is started on free ports (chalice local serving each request on a
thread of its own, moto's DynamoDB, the organizations table's stream pump), as the tests that
drive the local stack start it. An organization of its own gets ``users`` members, each with a
software security key registered through the API (setup, not timed). Then a pool of ``threads``
clients runs every member's MFA sign-in ``rounds`` times: ``POST /auth/login`` with a fresh ID
token, ``POST /auth/mfa/options``, the key signs, ``POST /auth/mfa/verify``, and ``GET /me``
with the new token. A member's rounds run one after another (a key's signature counter must
reach keyward in order); different members' run at once.

Every answer is checked: a sign-in that does not end in an active session counts as an error,
and so does any status other than the expected one. Each client thread keeps one keep-alive
connection (``requests.Session``) and opens it before the timed phase: chalice local listens
with a backlog of 5, and a burst of new connections beyond it is reset by the kernel.

moto handles one request at a time, in Python: these are figures for the local stack, to
compare runs of it with each other, not a prediction of keyward on Lambda and DynamoDB.
"""

from __future__ import annotations

import json
import secrets
import statistics
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

USERS = 50
ROUNDS = 3
THREADS = 16
REQUEST_TIMEOUT_SECONDS = 60.0
CONNECT_ATTEMPTS = 10

LOGIN = "POST /auth/login"
OPTIONS = "POST /auth/mfa/options"
VERIFY = "POST /auth/mfa/verify"
ME = "GET /me"
ENDPOINTS = (LOGIN, OPTIONS, VERIFY, ME)


@dataclass
class LoadFigures:
    users: int
    rounds: int
    threads: int
    seconds: float  # the timed phase, wall clock
    setup_seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)  # seconds, by endpoint
    errors: Counter[str] = field(default_factory=Counter)  # "<endpoint>: <status> <code>"
    sign_ins: int = 0  # MFA sign-ins that ended in an active session

    @property
    def requests(self) -> int:
        return sum(len(samples) for samples in self.latencies.values())

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


class _Client:
    """keyward over HTTP; each thread has its own keep-alive connection."""

    def __init__(self, api: str) -> None:
        self.api = api
        self._local = threading.local()

    def _http(self) -> Any:
        import requests

        http = getattr(self._local, "http", None)
        if http is None:
            http = requests.Session()
            http.trust_env = False  # no proxy between us and localhost
            self._local.http = http
        return http

    def connect(self) -> None:
        """Open this thread's connection: an anonymous GET /me is refused without touching DynamoDB."""
        import requests

        for attempt in range(CONNECT_ATTEMPTS):
            try:
                self._http().get(f"{self.api}/me", timeout=REQUEST_TIMEOUT_SECONDS)
                return
            except requests.ConnectionError:
                if attempt == CONNECT_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def call(self, method: str, path: str, *, token: str | None = None, body: Any = None) -> tuple[int, Any, float]:
        """The status, the parsed body and the seconds the request took."""
        headers = {"content-type": "application/json"}
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        started = time.perf_counter()
        response = self._http().request(
            method,
            f"{self.api}{path}",
            headers=headers,
            data=json.dumps(body) if body is not None else None,
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
        elapsed = time.perf_counter() - started
        try:
            parsed = response.json() if response.content else None
        except ValueError:
            parsed = response.text
        return response.status_code, parsed, elapsed


class _Refused(Exception):
    def __init__(self, endpoint: str, status: int, body: Any) -> None:
        code = body.get("Code") if isinstance(body, dict) else None
        super().__init__(f"{endpoint}: {status} {code or ''}".strip())


@dataclass
class _User:
    org: str
    user: str
    authenticator: Any


def measure_load(*, users: int = USERS, rounds: int = ROUNDS, threads: int = THREADS) -> LoadFigures:
    """Start the local stack, register the members' keys, then time their MFA sign-ins."""
    from devstack.idp import DevIdentityProvider
    from tests.support.local_stack import running_local_stack

    with tempfile.TemporaryDirectory(prefix="keyward-load-") as logs, running_local_stack(Path(logs)) as stack:
        # The stack trusts the dev IdP whose key is kept in .devstack/ (it created it if missing).
        idp = DevIdentityProvider.load_or_create()
        client = _Client(stack.api)
        try:
            return _run(client=client, idp=idp, users=users, rounds=rounds, threads=threads)
        except Exception:
            print(f"--- devstack log ---\n{stack.log.read_text(errors='replace')[-4000:]}")
            raise


def _run(*, client: _Client, idp: Any, users: int, rounds: int, threads: int) -> LoadFigures:
    from tests.support.authenticator import SoftwareAuthenticator

    org = f"load-{secrets.token_hex(4)}"
    members = [_User(org=org, user=f"user{i:03d}", authenticator=SoftwareAuthenticator()) for i in range(users)]
    latencies: dict[str, list[float]] = defaultdict(list)
    errors: Counter[str] = Counter()
    lock = threading.Lock()

    def expect(endpoint: str, answer: tuple[int, Any, float], status: int, *, timed: bool = True) -> Any:
        code, body, elapsed = answer
        if timed:
            with lock:
                latencies[endpoint].append(elapsed)
        if code != status:
            raise _Refused(endpoint, code, body)
        return body

    def login(member: _User, *, timed: bool) -> dict[str, Any]:
        id_token = idp.mint(
            org=member.org, user=member.user, name=member.user.title(), email=f"{member.user}@{member.org}.example"
        )
        return expect(LOGIN, client.call("POST", "/auth/login", body={"id_token": id_token}), 200, timed=timed)

    def register(member: _User) -> None:
        token = login(member, timed=False)["token"]
        options = expect(
            "POST /me/mfa/keys/options", client.call("POST", "/me/mfa/keys/options", token=token), 200, timed=False
        )
        credential = member.authenticator.register(options["publicKey"], origin=client.api)
        expect(
            "POST /me/mfa/keys",
            client.call(
                "POST",
                "/me/mfa/keys",
                token=token,
                body={"challenge_id": options["challenge_id"], "name": "Load key", "credential": credential},
            ),
            201,
            timed=False,
        )

    sign_ins = 0

    def sign_in(member: _User) -> None:
        nonlocal sign_ins
        for _ in range(rounds):
            try:
                signed = login(member, timed=True)
                if signed["state"] != "mfa_required":
                    raise _Refused(LOGIN, 200, {"Code": f"state {signed['state']}"})
                options = expect(OPTIONS, client.call("POST", "/auth/mfa/options", token=signed["token"]), 200)
                assertion = member.authenticator.authenticate(options["publicKey"], origin=client.api)
                verified = expect(
                    VERIFY,
                    client.call(
                        "POST",
                        "/auth/mfa/verify",
                        token=signed["token"],
                        body={"challenge_id": options["challenge_id"], "credential": assertion},
                    ),
                    200,
                )
                me = expect(ME, client.call("GET", "/me", token=verified["token"]), 200)
                if verified["token"] == signed["token"] or me["session"]["state"] != "active":
                    raise _Refused(ME, 200, {"Code": "session not active under a new token"})
                with lock:
                    sign_ins += 1
            except _Refused as refused:
                with lock:
                    errors[str(refused)] += 1
            except Exception as error:  # a connection reset, a timeout: counted, the run goes on
                with lock:
                    errors[type(error).__name__] += 1

    with ThreadPoolExecutor(max_workers=threads) as pool:
        # Every thread opens its connection before any work, released together by a barrier.
        barrier = threading.Barrier(threads)
        list(pool.map(lambda _: (client.connect(), barrier.wait(timeout=60)), range(threads)))
        started = time.perf_counter()
        list(pool.map(register, members))  # a failure here ends the run: there is nothing to measure
        setup_seconds = time.perf_counter() - started
        started = time.perf_counter()
        list(pool.map(sign_in, members))
        seconds = time.perf_counter() - started
    return LoadFigures(
        users=users,
        rounds=rounds,
        threads=threads,
        seconds=seconds,
        setup_seconds=setup_seconds,
        latencies=dict(latencies),
        errors=errors,
        sign_ins=sign_ins,
    )


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    """p50, p90 and p99 (inclusive method: within the samples' range)."""
    if len(samples) == 1:
        return samples[0], samples[0], samples[0]
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[89], cuts[98]


def report(figures: LoadFigures) -> list[str]:
    expected = figures.users * figures.rounds
    lines = [
        f"## Load: {figures.users} members × {figures.rounds} MFA sign-in(s) each, {figures.threads} client thread(s)",
        "",
        f"{figures.requests} requests in {figures.seconds:.1f} s: "
        f"**{figures.requests / figures.seconds:.1f} requests/s**, "
        f"{figures.sign_ins / figures.seconds:.1f} MFA sign-ins/s "
        f"({figures.sign_ins} of {expected} sign-ins completed; setup, not timed: {figures.setup_seconds:.1f} s "
        f"to register {figures.users} keys).",
        "",
        "| Endpoint | Requests | p50 | p90 | p99 | Max |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    every: list[float] = []
    for endpoint in ENDPOINTS:
        samples = figures.latencies.get(endpoint, [])
        every += samples
        if samples:
            p50, p90, p99 = percentiles(samples)
            lines.append(
                f"| `{endpoint}` | {len(samples)} | {_ms(p50)} | {_ms(p90)} | {_ms(p99)} | {_ms(max(samples))} |"
            )
    if every:
        p50, p90, p99 = percentiles(every)
        lines.append(f"| all | {len(every)} | {_ms(p50)} | {_ms(p90)} | {_ms(p99)} | {_ms(max(every))} |")
    lines.append("")
    if figures.errors:
        lines.append(
            f"FAIL: {figures.error_count} error(s): "
            + ", ".join(f"{what} ×{count}" for what, count in figures.errors.most_common())
        )
    else:
        lines.append(
            f"PASS: no errors ({figures.sign_ins} sign-ins, each ending in an active session under a new token)"
        )
    return lines
