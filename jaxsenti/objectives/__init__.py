"""Training objectives: what one step computes from a model and a batch.

An objective is one small frozen dataclass (hashable, so it rides on the train state as a static
field). ``training.steps`` calls it; nothing in the steps or the epoch loop knows which objective
runs, so adding one (masked-language-model pretraining, a language model, token regression) is a
new module here and nothing else. See :class:`Objective` for the contract.
"""

from jaxsenti.objectives.base import Objective
from jaxsenti.objectives.classification import Classification

__all__ = ["Classification", "Objective"]
