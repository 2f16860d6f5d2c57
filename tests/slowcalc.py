"""A real calculator made slow, for tests that need a job to outlive its SLURM
time limit: ASE's EMT, sleeping ``delay`` seconds per calculation."""
import time

from ase.calculators.emt import EMT


class SlowEMT(EMT):
    def __init__(self, delay: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.delay = delay

    def calculate(self, *args, **kwargs):
        time.sleep(self.delay)
        super().calculate(*args, **kwargs)
