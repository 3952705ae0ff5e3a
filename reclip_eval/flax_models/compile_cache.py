"""jax's persistent compilation cache, on by default for everything this project jits: the second process that
compiles the same function (the next evaluation, the next CI run) reads the executable from disk instead of
compiling it again.

The cache holds compiled XLA executables keyed by the program, the jax version and the device, so a stale entry is
never used for another program; it lives under the project's cache folder (RECLIP_CACHE) and can be deleted at any
time. It must be set before jax compiles anything in the process, which is why callers import jax through
`import_jax`, which turns it on.
"""

from __future__ import annotations

from pathlib import Path

from reclip_eval.errors import ReclipError
from reclip_eval.paths import cache_dir

# Entries for compilations shorter than this are not written: they cost more to store than to redo.
MIN_COMPILE_SECONDS = 0.2


class JaxUnavailableError(ReclipError):
    """`--backend jax` without jax and flax installed, or on a device jax has no backend for."""


def import_jax():
    """jax, with the compilation cache on; a one-line error naming the extra when jax or flax is missing."""
    try:
        import flax  # noqa: F401
        import jax
    except ImportError as e:
        raise JaxUnavailableError(f"--backend jax needs jax and flax ({e.name} is not installed): "
                                  "pip install 'reclip-eval[jax]'") from None
    enable_compilation_cache()
    return jax


def compilation_cache_dir() -> Path:
    return cache_dir() / "jax-compilation"


def enable_compilation_cache(directory: str | Path | None = None) -> Path:
    """Point jax's persistent compilation cache at `directory` (default: compilation_cache_dir()) and return the
    folder in use. A cache already set (by the user's JAX_COMPILATION_CACHE_DIR, or an earlier call: jax reads the
    setting once per process) is kept."""
    import jax

    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    folder = Path(directory) if directory is not None else compilation_cache_dir()
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return folder
