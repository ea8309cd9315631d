"""Re-export of :mod:`samplerlab.theory.validation` (the shared input checks) for solvers/."""
from samplerlab.theory.validation import *  # noqa: F401,F403
from samplerlab.theory.validation import __all__  # noqa: F401
