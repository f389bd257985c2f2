# ---------------------------------------------------------------------------------------------
# Pictures of what a model does: training curves of runs (curves.py), the relaxation's trace on
# one batch (trace.py), and their rendering as PNG with matplotlib (figures.py). The data and
# the drawing are kept apart, so that tests check the numbers behind each picture and users
# get them as CSV or JSON too.
# ---------------------------------------------------------------------------------------------
from pcdsl.visual.curves import PlotError, RunCurves, run_curves

__all__ = ["PlotError", "RunCurves", "run_curves"]
