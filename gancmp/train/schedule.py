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
updates left for MNIST, 5 for CIFAR-10, 2 for CelebA). Where the iterations are a loop whose
count is an argument of the program (`step.make_train_fn`; TPU, GPU, CPU MLPs) that last stretch
runs on the same program, in calls of at most `main`: one program per group. Where each program
runs a fixed count (CPU conv nets, unrolled; `config.loop_count="fixed"`) the last stretch is
calls of `main` and one of `tail`, the remainder: a second program.
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
      main: iterations per call (with a fixed count per program, a divisor of `interval //
        disc_iters`, so that intervals are whole calls).
      tail: with a fixed count per program, the last call's iterations: the remainder of the
        last stretch, `(total - tail_start) // disc_iters`, modulo `main` (`main` when none);
        with the count an argument, `main`.
      tail_start: the last interval checkpoint (`checkpoint_steps`; 0 when there is none).
      unroll: whether a call's iterations are unrolled in its program, else a rolled loop.
      count_argument: whether the rolled loop's iteration count is an argument of the program
        (a trip count XLA does not know): one program runs every call, the short ones too.
        Else each program runs a fixed count, and the last stretch needs one of its own.
    """

    total: int
    interval: int
    disc_iters: int
    main: int
    tail: int
    tail_start: int
    unroll: bool
    count_argument: bool

    def is_checkpoint(self, step: int) -> bool:
        """Whether the run checkpoints after `step` D updates (`checkpoint_steps`)."""
        return step == self.total or (0 < step <= self.tail_start and step % self.interval == 0)

    def next_checkpoint(self, step: int) -> int:
        """The first checkpoint step after `step`."""
        if step >= self.tail_start:
            return self.total
        return (step // self.interval + 1) * self.interval

    def iterations_at(self, step: int) -> int:
        """Iterations of the call that starts after `step` D updates: `main`, or fewer when the
        next checkpoint is nearer (with a fixed count per program: `tail`, at the end of the
        last stretch; a step off the plan's grid, a run resumed with another budget, may need
        a program of another count, made when first called)."""
        return min(self.main, (self.next_checkpoint(step) - step) // self.disc_iters)


def plan(total: int, every: int, disc_iters: int, target: int, unroll: bool,
         fixed: int = 0, count_argument: bool = True) -> CallPlan:
    """The call plan of a run of `total` D updates checkpointing every `every`, up to `target`
    iterations per call, or `fixed` (> 0: a user's `config.steps_per_call`). Calls run `main`
    iterations, or up to the next checkpoint when it is nearer (`CallPlan.iterations_at`).

    A rolled loop (`unroll` False) whose count is an argument (`count_argument`): `main` =
    `fixed`, else `target` or the longest stretch between checkpoints if shorter; `tail` =
    `main`. A fixed count per program (unrolled, or `count_argument` False): `main` = `fixed`,
    which must then divide the interval when the run has interval checkpoints (ValueError
    otherwise), else the largest divisor of the interval (in iterations) up to `target`, so
    that every interval is whole calls; the last stretch is calls of `main` and one of `tail`,
    the remainder (a second program)."""
    interval = checkpoint_interval(every, disc_iters)
    steps = checkpoint_steps(total, every, disc_iters)
    tail_start = steps[-2] if len(steps) > 1 else 0
    interval_it, tail_it = interval // disc_iters, (total - tail_start) // disc_iters
    fields = dict(total=total, interval=interval, disc_iters=disc_iters, tail_start=tail_start,
                  unroll=unroll, count_argument=count_argument and not unroll)
    if fields["count_argument"] or not tail_start:
        main = fixed or min(target, interval_it if tail_start else tail_it)
    elif fixed:
        if interval_it % fixed:
            raise ValueError(
                f"{fixed} iterations ({fixed * disc_iters} D updates) per call must divide the "
                f"checkpoint interval of {interval} D updates ({interval_it} iterations)")
        main = fixed
    else:
        main = largest_divisor(interval_it, target)
    tail = main if fields["count_argument"] else tail_it % main or main
    return CallPlan(main=main, tail=tail, **fields)
