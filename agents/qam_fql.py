"""QAM-FQL (QAM Eq. (29)): QAM plus a one-step policy distilled toward the QAM flow with -Q + alpha ||.||^2, used for
acting and for the critic targets. Everything but the config and the preset lives in agents/qam.py."""

import math

from agents.qam import get_config as _get_config
from agents.qam import loss, networks, released_preset, sample_actions, target_networks, validate  # noqa: F401


def get_config():
    return _get_config('fql')


def paper_preset(env_name):
    """(tau, alpha) of the domain: QAM Table 4, replaced by the released experiments/reproduce.py where it differs
    (agents/qam.py REPRODUCE_PY). alpha = inf (Table 4) and alpha = 0 (Table 4's cube-double, reproduce.py's
    fql_alpha=0) both mean plain QAM (Table 5; the released code disables the one-step policy at fql_alpha = 0), i.e.
    alpha = inf here."""
    values = released_preset('qam_fql', env_name, {'inv_temp': 'qam_fql_tau', 'alpha': 'qam_fql_alpha'})
    if values['alpha'] == 0.0:
        values['alpha'] = math.inf
    return values


PAPER = 'qam'
PRESETS = {'qam': paper_preset}
