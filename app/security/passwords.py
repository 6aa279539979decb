"""Password rules and argon2id hashing, kept off the event loop."""

import asyncio
import contextlib
import gzip
import os
import re
import secrets
import threading
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib.resources import files
from itertools import pairwise
from typing import TypeVar

from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

T = TypeVar("T")

PASSWORD_MAX_LENGTH = 256


def normalize_password(password: str) -> str:
    # NIST SP 800-63B-4 §3.1.1.2: apply NFKC before hashing, so equal-looking inputs match.
    return unicodedata.normalize("NFKC", password)


@cache
def common_passwords() -> frozenset[str]:
    """The shipped list of common passwords (see the README for its source and licence)."""
    data = files("app.data").joinpath("common-passwords.txt.gz").read_bytes()
    lines = gzip.decompress(data).decode().splitlines()
    return frozenset(line.strip().lower() for line in lines if line.strip())


MIN_DISTINCT_CHARACTERS = 5
MIN_EMAIL_PIECE_LENGTH = 4
DIGITS = "0123456789"
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def has_too_few_distinct_characters(password: str) -> bool:
    """Fewer than 5 different characters, case-folded: 15 spaces, `aaaaaaaaaaaaaaa`."""
    return len(set(password.casefold())) < MIN_DISTINCT_CHARACTERS


def _steps_through(password: str, alphabet: str, *, wraps: bool) -> bool:
    if len(password) < 2 or any(char not in alphabet for char in password):
        return False
    positions = [alphabet.index(char) for char in password]
    size = len(alphabet)
    for step in (1, -1):
        if wraps and all((b - a) % size == step % size for a, b in pairwise(positions)):
            return True
        if not wraps and all(b - a == step for a, b in pairwise(positions)):
            return True
    return False


def is_sequence(password: str) -> bool:
    """Each character the next, or each the previous, in the digits (9 wraps to 0:
    `123456789012345`) or in the alphabet (`abcdefghijklmnop`, any case)."""
    folded = password.casefold()
    return _steps_through(folded, DIGITS, wraps=True) or _steps_through(
        folded, LETTERS, wraps=False
    )


def is_repetition(password: str) -> bool:
    """One shorter string repeated: `passwordpassword`, `abcabcabcabcabc`."""
    # A string is a repetition of a proper prefix exactly when it occurs inside itself
    # doubled at a position other than 0 and its length.
    return len(password) > 1 and (password + password).find(password, 1) < len(password)


def email_pieces(email: str) -> list[str]:
    """The pieces of the email's local part a password must not contain: the part before
    `@`, without a `+tag`, split at `.`, `_` and `-`; pieces of 4 or more characters."""
    local = email.rpartition("@")[0] if "@" in email else email
    local = local.partition("+")[0]
    pieces = re.split(r"[._-]", local.casefold())
    return [piece for piece in pieces if len(piece) >= MIN_EMAIL_PIECE_LENGTH]


def contains_email_piece(password: str, email: str) -> bool:
    folded = password.casefold()
    return any(piece in folded for piece in email_pieces(email))


def password_problem(password: str, *, min_length: int, email: str | None = None) -> str | None:
    """Why a new password is refused, or None. No composition rules: length, the common
    list, and the rules that catch what a list cannot (API.md, "Hardening rules"), each
    with its own message. Every rule judges the whole password, NFKC-normalised."""
    normalized = normalize_password(password)
    if len(normalized) < min_length:
        return f"must be at least {min_length} characters"
    if len(normalized) > PASSWORD_MAX_LENGTH:
        return f"must be at most {PASSWORD_MAX_LENGTH} characters"
    if normalized.lower() in common_passwords():
        return "is too common"
    if has_too_few_distinct_characters(normalized):
        return f"must have at least {MIN_DISTINCT_CHARACTERS} different characters"
    if is_sequence(normalized):
        return "must not be a run of consecutive letters or digits"
    if is_repetition(normalized):
        return "must not be one shorter string repeated"
    if email is not None and contains_email_piece(normalized, email):
        return "must not contain a part of the email address"
    return None


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        return os.cpu_count() or 1


HASHING_NICENESS = 10


def _yield_to_the_loop() -> None:
    """Lower this hashing thread's scheduling priority (Linux: per thread), so that under a
    login flood the event loop thread, serving every other request, still gets the CPU.
    Hashes are not slower when the CPU is otherwise idle."""
    # Not Linux, or not permitted: hash at the normal priority.
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HASHING_NICENESS)


class HashQueueFull(Exception):
    """Too many argon2 operations are waiting already: answer 503 at once instead of queueing."""


class PasswordHasher:
    """argon2id with the configured cost, run in a small executor of its own.

    Argon2 is CPU- and memory-bound (tens of MiB per hash): one thread per core
    bounds both, and a flood of logins queues here instead of occupying the
    event loop or the threadpool every other route shares. At most `queue_limit`
    operations wait for a thread; past that HashQueueFull, so that a flood cannot
    make every other login wait behind it for minutes.
    """

    def __init__(
        self, *, memory_kib: int, time_cost: int, parallelism: int, queue_limit: int = 32
    ) -> None:
        self._hash = PasswordHash(
            (Argon2Hasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=parallelism),)
        )
        self._workers = cpu_count()
        self._executor = ThreadPoolExecutor(
            max_workers=self._workers, thread_name_prefix="argon2", initializer=_yield_to_the_loop
        )
        self._queue_limit = queue_limit
        self._pending = 0
        self._pending_lock = threading.Lock()
        self._dummy_hash: str | None = None
        self.verifications = 0
        # Told the queue depth whenever it changes (the metrics gauge); kept out of this module.
        self.on_depth: Callable[[int], None] | None = None

    @property
    def queue_depth(self) -> int:
        """Operations waiting for an argon2 thread (not those running)."""
        return max(0, self._pending - self._workers)

    def _done(self, _: object) -> None:
        with self._pending_lock:
            self._pending -= 1
        self._report_depth()

    def _report_depth(self) -> None:
        if self.on_depth is not None:
            self.on_depth(self.queue_depth)

    async def _submit(self, fn: Callable[..., T], *args: str) -> T:
        with self._pending_lock:
            if self._pending >= self._workers + self._queue_limit:
                raise HashQueueFull()
            self._pending += 1
        self._report_depth()
        # Counted down when the work ends or is cancelled before it began, also when the
        # request awaiting it was cancelled meanwhile (the thread still runs it to the end).
        future = self._executor.submit(fn, *args)
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    async def _run(self, fn: Callable[[str, str], T], password: str, password_hash: str) -> T:
        return await self._submit(fn, normalize_password(password), password_hash)

    async def hash(self, password: str) -> str:
        return await self._submit(self._hash.hash, normalize_password(password))

    async def prepare(self) -> str:
        """Hash the dummy password once, before the first login can be timed."""
        if self._dummy_hash is None:
            self._dummy_hash = await self.hash(secrets.token_urlsafe(32))
        return self._dummy_hash

    async def verify(self, password: str, password_hash: str | None) -> tuple[bool, str | None]:
        """Whether the password matches, and a new hash when the stored one has other parameters.

        With no stored hash (unknown email) a dummy hash is verified, so the
        answer and its timing do not tell whether the account exists.
        """
        self.verifications += 1
        if password_hash is None:
            await self._run(self._hash.verify, password, await self.prepare())
            return False, None
        return await self._run(self._hash.verify_and_update, password, password_hash)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
