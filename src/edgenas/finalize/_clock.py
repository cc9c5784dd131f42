"""How far a finalize has come: its training epochs, and the time they have left."""

from __future__ import annotations

from collections.abc import Callable

from edgenas._eta import TimeLeft, duration


class EpochClock:
    """Counts the training epochs of a finalize against those planned, and says after each
    one how much training time is left at the pace so far.

    Created when the first training starts. The pace is the time since then per epoch done,
    so the work between trainings done so far (measuring, sensitivity analyses) is spread over
    the epochs; the epochs of different models take different times (a pruned model trains
    faster), and the last steps (quantization, timing side by side) come on top, so the line
    says "of training".
    """

    def __init__(self, say: Callable[[str], None], planned: int = 0) -> None:
        self.say = say
        self.planned = planned
        self.done = 0
        self._pace = TimeLeft()

    def add(self, epochs: int) -> None:
        """Plan more epochs (a step found to need training once it started)."""
        self.planned += epochs

    def reporter(self, label: str, epochs: int) -> Callable[[int, float], bool]:
        """A `fit` ``report`` that tells each epoch of ``label`` (``epochs`` in all)."""

        def report(epoch: int, accuracy: float) -> bool:
            self.done += 1
            left = self._pace.update(self.done, max(self.planned, self.done))
            text = f"{label}: epoch {epoch}/{epochs}, validation {100 * accuracy:.1f}%"
            if left is not None and self.planned > self.done:
                text += (
                    f" · about {duration(left)} of training left "
                    f"({self.planned - self.done} epoch(s))"
                )
            self.say(text)
            return True

        return report
