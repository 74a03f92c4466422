"""Orbax checkpoints of a (stacked) train state, taken at device-call boundaries.

States are saved as they are (device arrays, PRNG keys already raw `key_data`) and restored as host
numpy arrays, so a restored run continues bit for bit. Saves are asynchronous (`Checkpoints.save`):
training goes on while a checkpoint is written. The step number of a checkpoint is the number of
D updates done.

A run resumes from the latest checkpoint that can be read (`restore_latest`): one whose files are
damaged (a truncated or emptied file, a missing item folder: a disk filled up, a copy cut short)
is set aside, moved whole into the `damaged` folder, out of orbax's view and never deleted, with a
warning naming it, and the one before is tried. So is an empty step folder (a kill between orbax's
creating it and writing its first file, a stray `checkpoints/9999`) or one without its item
folder (`default/`): its structure cannot be read, which is damage, not another model.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from gancmp import storage
from gancmp.runtime import is_main_process


class Checkpoints:
    """A `CheckpointManager` over `directory`; `keep` = how many to keep (None: all); damaged
    checkpoints go to `damaged` (default: `<directory>-damaged`)."""

    def __init__(self, directory: str, keep: int | None = None, damaged: str | None = None):
        self.directory = storage.absolute(directory)  # a gs:// URL goes to orbax as it is
        self.damaged = storage.absolute(damaged or f"{self.directory}-damaged")
        storage.makedirs(self.directory)  # a gs:// bucket checked: one line if unusable
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True)
        # one unnamed item (`<step>/default/`), said here: left to orbax, the first step folder
        # it reads decides, and an empty one (or one without `default/`) would make it read
        # every checkpoint as a multi-item one, none of which then restores. Quiet: a damaged
        # step folder is said once, when `restore_latest` sets it aside
        with _quiet_orbax():
            self._manager = ocp.CheckpointManager(self.directory, options=options,
                                                  item_handlers=ocp.StandardCheckpointHandler())
        self._pending: int | None = None  # the step of a save still being written

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def latest(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any) -> None:
        """Starts saving `state` (device or host arrays) as checkpoint `step`, asynchronously
        (orbax's async checkpointing): it returns once the arrays are copied off the devices, so
        the next device call (which donates `state`) starts at once, while the files are written
        in the background. The save before it is waited for first (`wait`); so is this one
        by `wait` or `close`. Arrays sharded over the devices of several processes are written
        by the processes that hold them (a collective save). A directory that cannot take it
        (`storage.WRITE_ERRORS`: full, read-only, not writable) raises that OSError, naming the
        directory, once the partial checkpoint is removed: here or from the `wait` that finds
        it."""
        self.wait()
        tree = jax.tree.map(lambda x: x if isinstance(x, jax.Array) else np.asarray(x), state)
        _BACKGROUND_ERRORS.hold()  # until `wait` (orbax's threads log a failure as it happens)
        try:
            with self._errors(step):
                self._manager.save(step, args=ocp.args.StandardSave(tree))
                self._pending = step
        finally:
            if self._pending is None:
                _BACKGROUND_ERRORS.release()

    def delete(self, step: int) -> None:
        """Deletes checkpoint `step` (a collective in a multi-process job: every process calls
        it); a step that is not there is left alone."""
        if step in self.steps():
            with _quiet_orbax():
                self._manager.delete(step)

    def wait(self) -> None:
        """Waits until the checkpoint being written (if any) is complete; raises its error."""
        if self._pending is None:
            return
        step, self._pending = self._pending, None
        try:
            with self._errors(step):
                self._manager.wait_until_finished()
        finally:
            _BACKGROUND_ERRORS.release()

    @contextlib.contextmanager
    def _errors(self, step: int):
        """Orbax's failure of checkpoint `step` as the one-line OSError of a write error."""
        _quiet_late_callbacks()
        try:
            # orbax logs a failed save's traceback from each of its threads, and tensorstore
            # reports its pending writes into orbax's closed event loop: the error raised here
            # says it once
            with _quiet_orbax():
                yield
        except Exception as e:
            error = storage.write_error(e, self.directory)
            if error is None:
                raise
            # a full disk or a read-only directory: leave no half-written checkpoint behind
            for partial in storage.glob(os.path.join(self.directory,
                                                     f"{step}.orbax-checkpoint-tmp*")):
                storage.rmtree(partial)
            raise error from None

    def restore(self, step: int, like: Any) -> Any:
        """The checkpoint `step` as host arrays with the structure of `like`. A train state
        saved by gancmp before each method carried only its own hyperparameters holds every
        hyperparameter declared then (`state.hparams`): those that `like` lacks are read and
        dropped."""
        saved = self._saved_tree(step)  # None: unreadable, which the restore reports
        abstract = _abstract(saved, like)
        extra = _extra_hparams(saved, like)
        if extra:
            abstract = abstract.replace(hparams={**abstract.hparams, **extra})
        restored = self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
        if extra:
            restored = restored.replace(hparams={k: restored.hparams[k] for k in like.hparams})
        return restored

    def restore_latest(self, like: Any) -> tuple[int, Any]:
        """(step, state as host arrays shaped like `like`) of the latest checkpoint that can be
        read; (0, None) when there is none. Each damaged checkpoint on the way is set aside into
        `damaged` as `<step>.damaged-<UTC time>` with a warning (by the main process; every
        process then skips it), and when none is left the warning says the run starts over.

        A checkpoint whose files read but hold another structure than `like` (another model) is
        not damaged: its error propagates and nothing is moved. One whose structure cannot be
        read (an empty step folder, no `default/`) is damaged (`_saved_tree`)."""
        skipped = []
        _quiet_late_callbacks()
        for step in reversed(self.steps()):
            try:
                with _quiet_orbax():  # a damaged one's "metadata file does not exist" and such
                    return step, self.restore(step, like)
            except Exception as error:  # orbax and tensorstore raise many kinds
                with _quiet_orbax():
                    if self._other_structure(step, like):
                        raise
                    skipped.append(step)
                    self._set_aside(step, error)
        if skipped:
            storage.warning(f"{self.directory}: no readable checkpoint left; starting over from "
                            "step 0")
        return 0, None

    def _set_aside(self, step: int, error: Exception) -> None:
        source = os.path.join(self.directory, str(step))
        reason = (str(error).splitlines() or [type(error).__name__])[0][:200]
        target = "(left in place: not the main process)"
        if is_main_process() and storage.exists(source):
            target = storage.set_aside(source, self.damaged)
        storage.warning(f"checkpoint {step} in {self.directory} is damaged ({reason}); set aside "
                        f"as {target}; trying the checkpoint before it")
        self._manager.reload()

    def _other_structure(self, step: int, like: Any) -> bool:
        """Whether checkpoint `step`'s recorded tree structure reads and differs from `like`'s
        (unreadable metadata is damage, not another structure)."""
        tree = self._saved_tree(step)
        return tree is not None and _paths(tree) != _paths(like)

    def _saved_tree(self, step: int) -> Any:
        """The tree structure checkpoint `step` records (orbax's metadata of its one item);
        None when it cannot be read: no metadata, or no item at all (an empty step folder: a
        kill between orbax's creating it and its first file, a stray folder; a missing
        `default/`), whose metadata orbax gives as an empty `Composite` that raises KeyError
        ("Unknown key: tree") when asked for the tree."""
        try:
            saved = self._manager.item_metadata(step)
            tree = getattr(saved, "tree", saved)
        except Exception:  # orbax and tensorstore raise many kinds
            return None
        if tree is None or (isinstance(tree, Mapping) and not tree):
            return None
        return tree

    def close(self) -> None:
        """Waits for the save in flight (`wait`), then releases the manager."""
        try:
            self.wait()
        finally:
            self._manager.close()


def _abstract(saved: Any, like: Any) -> Any:
    """The restore target, for a tree shaped like `like`, of a checkpoint whose recorded tree
    is `saved` (`Checkpoints._saved_tree`; None: unknown): per leaf an unwritten host array
    (`np.empty`: no memory is touched until orbax fills it) of the leaf's shape and dtype:
    its `dtype` attribute (device and host arrays, `jax.ShapeDtypeStruct`), else the dtype the
    checkpoint records for it (orbax's metadata), else that of the value (a Python number).
    An array of `like` is never copied or read (it may be sharded over devices of other
    processes): the previous target, `np.zeros(x.shape, np.asarray(x).dtype)`, copied every
    device array to the host to learn its dtype."""
    dtypes = {} if saved is None else {
        path: leaf.dtype for path, leaf in _leaves(saved) if hasattr(leaf, "dtype")}

    def target(path, x):
        dtype = getattr(x, "dtype", None) or dtypes.get(_names(path))
        return np.empty(np.shape(x), dtype if dtype is not None else np.result_type(x))

    return jax.tree_util.tree_map_with_path(target, like)


def _extra_hparams(saved: Any, like: Any) -> dict[str, np.ndarray]:
    """{name: float32 zeros of its saved shape} of the `hparams` leaves that a checkpoint whose
    recorded tree is `saved` holds and the train state `like` does not ({} for anything
    else)."""
    if not isinstance(getattr(like, "hparams", None), Mapping):
        return {}
    saved = saved.get("hparams") if isinstance(saved, Mapping) else None
    if not isinstance(saved, Mapping):
        return {}
    return {k: np.zeros(tuple(getattr(v, "shape", ())), np.float32)
            for k, v in saved.items() if k not in like.hparams}


@contextlib.contextmanager
def _quiet_orbax():
    """Orbax's (absl) log lines held back for the block: what failed is said once, by the
    error raised or the warning that sets a checkpoint aside."""
    absl_logger = logging.getLogger("absl")
    level = absl_logger.level
    absl_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        absl_logger.setLevel(level)


class _BackgroundErrors(logging.Filter):
    """While a save is in flight (from `Checkpoints.save` to the `wait` that ends it: `hold`,
    `release`), drops the error reports orbax logs through absl from its background threads —
    one traceback per thread when a disk fills up, hundreds of lines while training goes on —
    as the `wait` raises that failure itself, once (a write error as one line)."""

    def __init__(self):
        super().__init__()
        self.holds = 0

    def hold(self) -> None:
        if not self.holds:
            logging.getLogger("absl").addFilter(self)
        self.holds += 1

    def release(self) -> None:
        self.holds = max(0, self.holds - 1)
        if not self.holds:
            logging.getLogger("absl").removeFilter(self)

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR or _ORBAX not in record.pathname


_ORBAX = os.path.dirname(os.path.abspath(ocp.__file__))  # orbax.checkpoint's own files
_BACKGROUND_ERRORS = _BackgroundErrors()


def _quiet_late_callbacks() -> None:
    """When a restore or a save fails, tensorstore still completes the reads or writes orbax gave
    up on, and each completion reports "RuntimeError: Event loop is closed" (orbax's event loop
    has ended)
    through `sys.unraisablehook`: screenfuls of tracebacks around the one-line warning. This
    drops exactly those reports, for the rest of the process (installed once, before the first
    restore or save; every other report goes on to the previous hook)."""
    previous = sys.unraisablehook
    if getattr(previous, "gancmp_quiet", False):
        return

    def hook(unraisable) -> None:
        error = unraisable.exc_value
        if not (isinstance(error, RuntimeError) and str(error) == "Event loop is closed"):
            previous(unraisable)

    hook.gancmp_quiet = True
    sys.unraisablehook = hook


def _names(path: Sequence[Any]) -> tuple[str, ...]:
    """A key path by name: the same for a state dataclass (attribute keys) and the dict orbax
    records of it (dict keys)."""
    def name(key: Any) -> str:
        for attr in ("key", "name", "idx"):
            if hasattr(key, attr):
                return str(getattr(key, attr))
        return str(key)

    return tuple(name(k) for k in path)


def _leaves(tree: Any) -> list[tuple[tuple[str, ...], Any]]:
    """(key path by name, leaf) of every leaf of `tree`."""
    return [(_names(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _paths(tree: Any) -> list[tuple[tuple[str, ...], tuple[int, ...]]]:
    """Each leaf's key path by name and its shape, sorted: the same for a state dataclass and
    the dict orbax records of it (whose leaves are array metadata with a `shape`)."""
    return sorted((path, tuple(np.shape(leaf) if not hasattr(leaf, "shape") else leaf.shape))
                  for path, leaf in _leaves(tree))
