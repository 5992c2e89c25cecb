"""The one error type a stage raises for bad input or missing weights.

Its message is a single line naming the subject, the stage, the problem and the remedy,
because that line is what a user sees in the Snakemake log of a failed job.
"""


class StageError(RuntimeError):
    """A user-facing failure of one stage for one subject."""

    def __init__(self, subject: str, stage: str, problem: str, remedy: str):
        self.subject, self.stage, self.problem, self.remedy = subject, stage, problem, remedy
        text = f"[{subject}] {stage}: {problem.rstrip('.')}. {remedy.rstrip('.')}."
        super().__init__(" ".join(text.split()))  # always one line
