"""The local identity on disk: created once, mode 0600, clear errors when unreadable."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path

from p2pos.proto import Identity, LocalProtocolError

DEFAULT_HOME_ENV = "P2POS_HOME"
KEY_FILE_NAME = "identity.key"


class KeyStoreError(Exception):
    """A problem with the identity file, explained in one line for the user."""


def load_identity(path: Path) -> Identity:
    """Read an identity file; raises KeyStoreError with the reason."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyStoreError(f"{path}: no identity file (run 'p2pos id' to create one)") from None
    except OSError as exc:
        raise KeyStoreError(f"{path}: cannot read: {exc.strerror}") from None
    try:
        return Identity.from_key_file(data)
    except LocalProtocolError as exc:
        raise KeyStoreError(f"{path}: {exc}") from None


def insecure_permissions(path: Path) -> bool:
    """True when group or others can read the key file."""
    return bool(path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO))


def create_identity(path: Path) -> Identity:
    """Create a new identity file, mode 0600, atomically; refuses to overwrite."""
    identity = Identity.generate()
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(identity.to_key_file())
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.link(tmp, path)  # fails if someone created the file meanwhile: never overwrite a key
    except FileExistsError:
        raise KeyStoreError(f"{path}: already exists; not overwriting an identity") from None
    except OSError as exc:
        raise KeyStoreError(f"{path}: cannot write: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return identity


def load_or_create(path: Path) -> tuple[Identity, bool]:
    """The identity at ``path``, creating it if absent; (identity, created)."""
    if path.exists():
        return load_identity(path), False
    return create_identity(path), True
