"""QAM-FQL (QAM Eq. (29)): QAM plus a one-step policy distilled toward the QAM flow with -Q + alpha ||.||^2, used for
acting and for the critic targets. Everything but the config and the preset lives in agents/qam.py."""

import math

from agents.qam import get_config as _get_config
from agents.qam import loss, networks, sample_actions, target_networks, validate  # noqa: F401
from configs.presets import qam_rho, qam_table4, with_discount


def get_config():
    return _get_config('fql')


def paper_preset(env_name):
    """QAM Table 4 (tau, alpha) of the domain. The table's alpha = inf and alpha = 0 (cube-double) both mean plain QAM
    (Table 5; the QAM code disables the one-step policy at fql_alpha = 0), i.e. alpha = inf here."""
    values = qam_table4(env_name, {'inv_temp': 'qam_fql_tau', 'alpha': 'qam_fql_alpha'})
    if values['alpha'] == 0.0:
        values['alpha'] = math.inf
    return with_discount(env_name, {**values, 'rho': qam_rho(env_name)})
