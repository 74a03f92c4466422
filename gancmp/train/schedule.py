"""When a run checkpoints, and how many iterations each device call runs: integer arithmetic only.

Steps count D updates (the budget's unit); an iteration is `disc_iters` D updates and one G
update, so every call, and every checkpoint, ends on an iteration boundary.

Checkpoints follow compare_gan v1: every `save_checkpoint_steps` D updates (v1
`generate_tasks_lib.py` `TuneParams` L145: 5 "epochs" = `5 * epoch // BATCH_SIZE`, 3,906 for
50,000 examples at batch 64) and at the end of the budget (v1 `gans/abstract_gan.py`
`maybe_save_checkpoint` L166–169 and the final `save` L271–272), so the last interval may be
shorter than the others. v1 saves after its loop step `s` has run, i.e. after s + 1 updates,
whereas checkpoint `s` here holds s updates; so v1's interval checkpoint at loop step `total` − 1
(15,624 of 15,625: 4 × 3,906) is its final model, saved twice under two names and scored twice
with the same noise (`eval_gan_lib.py` seeds numpy with 42 per checkpoint): here an interval
checkpoint within one iteration of the end is not taken, the final one is that model (MNIST:
3,906, 7,812, 11,718 and 15,625). One difference, of at most a few D updates: an interval that
is not a multiple of `disc_iters` is rounded down to one (3,905 at `disc_iters` 5).

Device calls (`CallPlan`): `main` iterations per call up to the last interval checkpoint before
the end; the rest of the budget is not always a multiple of that (the paper's budgets: 3,907 D
updates left for MNIST, 5 for CIFAR-10, 2 for CelebA). A rolled plan (the iterations a loop
whose count is an argument of the program, `step.make_train_fn`; TPU, GPU, CPU MLPs) runs that
last stretch on the same program, in calls of at most `main`: one program per group. An
unrolled one (CPU conv nets) needs a second program, of `tail` iterations per call, for it.
"""

from __future__ import annotations

import dataclasses


def checkpoint_interval(every: int, disc_iters: int) -> int:
    """D updates between checkpoints: `every` rounded down to a multiple of `disc_iters`, at
    least one iteration."""
    if every <= 0 or disc_iters <= 0:
        raise ValueError(f"checkpoint_every and disc_iters must be positive, got {every}, "
                         f"{disc_iters}")
    return max(disc_iters, every - every % disc_iters)


def checkpoint_steps(total: int, every: int, disc_iters: int) -> list[int]:
    """The steps a run of `total` D updates checkpoints at, in order: the multiples of
    `checkpoint_interval(every, disc_iters)` more than one iteration (`disc_iters` updates)
    before `total`, then `total`."""
    interval = checkpoint_interval(every, disc_iters)
    return [*range(interval, total - disc_iters, interval), total]


def largest_divisor(n: int, at_most: int) -> int:
    """The largest divisor of `n` (> 0) that is at most `at_most` (≥ 1)."""
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


@dataclasses.dataclass(frozen=True)
class CallPlan:
    """Iterations per device call over a run of `total` D updates.

    Attributes:
      total: the budget in D updates (a multiple of `disc_iters`).
      interval: D updates between checkpoints (`checkpoint_interval`).
      disc_iters: D updates per iteration.
      main: iterations per call before `tail_start`; divides `interval // disc_iters`.
      tail: iterations per call from `tail_start` on; unrolled, it divides `(total -
        tail_start) // disc_iters`; rolled, it is `main` (an upper bound: the calls stop at
        the end).
      tail_start: the last interval checkpoint (`checkpoint_steps`; 0 when there is none).
      unroll: whether a call's iterations are unrolled (a program per count), else a rolled
        loop whose count is an argument (one program for every call).
    """

    total: int
    interval: int
    disc_iters: int
    main: int
    tail: int
    tail_start: int
    unroll: bool

    @property
    def rolled(self) -> bool:
        """Whether every call runs on one program (its iteration count an argument)."""
        return not self.unroll

    def is_checkpoint(self, step: int) -> bool:
        """Whether the run checkpoints after `step` D updates (`checkpoint_steps`)."""
        return step == self.total or (0 < step <= self.tail_start and step % self.interval == 0)

    def next_checkpoint(self, step: int) -> int:
        """The first checkpoint step after `step`."""
        if step >= self.tail_start:
            return self.total
        return (step // self.interval + 1) * self.interval

    def iterations_at(self, step: int) -> int:
        """Iterations of the call that starts after `step` D updates: `main` before
        `tail_start`, `tail` from there on. A step off that grid (a run resumed with another
        budget) gets the largest count up to it that still ends on the next checkpoint. A
        rolled plan's call runs `main` iterations, or fewer when the next checkpoint is
        nearer."""
        if self.rolled:
            return min(self.main, (self.next_checkpoint(step) - step) // self.disc_iters)
        start, span = (0, self.main) if step < self.tail_start else (self.tail_start, self.tail)
        if ((step - start) // self.disc_iters) % span == 0:
            return span
        return largest_divisor((self.next_checkpoint(step) - step) // self.disc_iters, span)


def plan(total: int, every: int, disc_iters: int, target: int, unroll: bool,
         fixed: int = 0) -> CallPlan:
    """The call plan of a run of `total` D updates checkpointing every `every`, up to `target`
    iterations per call, or `fixed` (> 0: a user's `config.steps_per_call`).

    Rolled (`unroll` False): `main` = `fixed`, else `target` or the longest stretch between
    checkpoints if shorter; each call runs `main` iterations or up to the next checkpoint
    (`CallPlan.iterations_at`), and `tail` = `main`. Unrolled: `main` and `tail` are the largest
    divisors of their stretches (in iterations) up to `target`, or `main` = `fixed`, which must
    then divide the interval when the run has interval checkpoints (ValueError otherwise), and
    `tail` the largest divisor of the last stretch up to `fixed`."""
    interval = checkpoint_interval(every, disc_iters)
    steps = checkpoint_steps(total, every, disc_iters)
    tail_start = steps[-2] if len(steps) > 1 else 0
    interval_it, tail_it = interval // disc_iters, (total - tail_start) // disc_iters
    if not unroll:
        main = fixed or min(target, interval_it if tail_start else tail_it)
        return CallPlan(total=total, interval=interval, disc_iters=disc_iters, main=main,
                        tail=main, tail_start=tail_start, unroll=False)
    if fixed:
        if tail_start and interval_it % fixed:
            raise ValueError(
                f"{fixed} iterations ({fixed * disc_iters} D updates) per call must divide the "
                f"checkpoint interval of {interval} D updates ({interval_it} iterations)")
        main = fixed
    else:
        main = largest_divisor(interval_it, target)
    tail = largest_divisor(tail_it, fixed or target)
    if not tail_start:  # no interval checkpoint below the end: one stretch, one program
        main = tail
    return CallPlan(total=total, interval=interval, disc_iters=disc_iters, main=main, tail=tail,
                    tail_start=tail_start, unroll=True)
