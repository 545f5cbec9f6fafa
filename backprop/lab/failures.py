"""A failure of the machine rather than of the input, in one line: a full disk, no memory, a
broken or unreachable MLflow store; and no secret of the store's URI in any message."""

from __future__ import annotations

import errno

from backprop.lab.store import CORRUPT_STORE, STORE_PROBLEMS, MachineError, redact, secrets, tracking_uri

# errno -> what to tell the user about the file it names.
OS_PROBLEMS = {
    errno.ENOSPC: "no space left on the device (disk full)",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EIO: "input/output error (failing disk or network file system?)",
}


def _store_uri() -> str:
    return redact(tracking_uri())


def scrub(text: str) -> str:
    """``text`` with the tracking URI's secrets (password, token query values) replaced."""
    uri = tracking_uri()
    for secret in sorted(filter(None, [uri, *secrets(uri)]), key=len, reverse=True):
        text = text.replace(secret, redact(uri) if secret == uri else "***")
    return text


def environment_message(error: BaseException) -> str | None:
    """One line for a failure of the machine rather than of the input, or None for anything else."""
    first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
    if isinstance(error, MemoryError):
        return f"out of memory: {first_line or 'an allocation failed'}; use fewer rows, epochs or hidden units"
    if isinstance(error, OSError) and error.errno in OS_PROBLEMS:
        where = error.filename or "a file"
        return f"{where}: {OS_PROBLEMS[error.errno]}"
    if isinstance(error, MachineError):
        return str(error)
    text = " ".join(str(e) for e in (error, error.__cause__, error.__context__) if e is not None)
    if any(sign in text for sign in CORRUPT_STORE):
        uri = _store_uri()
        path = uri.removeprefix("sqlite:///")
        return (
            f"the MLflow store {uri} is corrupt ({next(s for s in CORRUPT_STORE if s in text)}); nothing is "
            f"deleted: move it aside with `mv {path} {path}.broken` and run again (a new store is created), "
            f"and salvage the old runs with `sqlite3 {path}.broken .recover | sqlite3 {path}.recovered`"
        )
    if type(error).__module__.split(".")[0] in ("mlflow", "sqlalchemy", "sqlite3"):
        problem = next((text for sign, text in STORE_PROBLEMS.items() if sign in _chain_text(error)), None)
        if problem and problem.startswith("no space"):
            return f"{_store_uri().removeprefix('sqlite:///')}: {problem}"
        return f"the MLflow store {_store_uri()} failed: {problem or _first_meaningful_line(error)}"
    if isinstance(error, OSError):
        return f"{error.filename or 'a file'}: {error.strerror or first_line}"
    return None


def _chain_text(error: BaseException) -> str:
    """Every message in ``error``'s chain: its causes, contexts and a SQLAlchemy error's DBAPI one."""
    texts, seen = [], set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        texts.append(str(link))
        if (orig := getattr(link, "orig", None)) is not None:
            texts.append(str(orig))
        link = link.__cause__ or link.__context__
    return "\n".join(texts)


def _first_meaningful_line(error: BaseException) -> str:
    """The first line that says something: SQLAlchemy puts its autoflush hint first."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("(raised as a result of")] or lines
    return lines[0][:500] if lines else type(error).__name__
