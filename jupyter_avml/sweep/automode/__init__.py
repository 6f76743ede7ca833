"""AutoMode: the system chooses models and hyperparameters (``iterations > 1`` without a ``search_space``).

* ``hardware``: the GPUs or CPU cores the children will get;
* ``portfolio``: configurations ranked by expected quality per unit of compute on that hardware, models with
  weights at hand first;
* ``plan``: the portfolio, what the refinement may vary and the early termination, recorded in
  ``experiment.yaml`` (``AutoModePlan`` is the experiment's search space);
* ``sampler``: the portfolio in order, then Bayesian refinement (TPE) around the best child so far.

The multi-fidelity early termination it runs with (Hyperband over successive halvings) lives with the other policies
(``sweep.halving``).
"""

from jupyter_avml.sweep.automode.hardware import Hardware, detect_hardware
from jupyter_avml.sweep.automode.plan import AUTOMODE_POLICY, AutoModePlan, make_plan
from jupyter_avml.sweep.automode.sampler import AutoSampler

__all__ = ["Hardware", "detect_hardware", "AutoModePlan", "make_plan", "AutoSampler", "AUTOMODE_POLICY"]
