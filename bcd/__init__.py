"""bcd — block coordinate descent for deep networks (Zeng, Lau, Lin, Yao, ICML 2019)."""

from bcd.config import BCDConfig, DataConfig, RunConfig, load_config
from bcd.engine import TrainResult, run, sweep, train
from bcd.inputs import make_problem
from bcd.objective import objective, objective_terms, predict
from bcd.problem import BCDState, Problem, initial_state
from bcd.schedule import Step, schedule_for, three_splitting

__all__ = [
    "BCDConfig", "BCDState", "DataConfig", "Problem", "RunConfig", "Step", "TrainResult",
    "initial_state", "load_config", "make_problem", "objective", "objective_terms", "predict",
    "run", "schedule_for", "sweep", "three_splitting", "train",
]
