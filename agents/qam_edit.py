"""QAM-EDIT (QAM Eq. (30)): QAM plus a tanh-Gaussian edit policy that refines the QAM flow action within an L_inf ball
of radius sigma_a, with SAC entropy tuning. Everything but the config and the preset lives in agents/qam.py."""

from agents.qam import get_config as _get_config
from agents.qam import loss, networks, released_preset, sample_actions, target_networks, validate  # noqa: F401


def get_config():
    return _get_config('edit')


def paper_preset(env_name):
    """(tau, sigma_a) of the domain: QAM Table 4, replaced by the released experiments/reproduce.py where it differs
    (agents/qam.py REPRODUCE_PY); sigma_a = 0 is plain QAM (Table 5)."""
    return released_preset('qam_edit', env_name, {'inv_temp': 'qam_edit_tau', 'sigma_a': 'qam_edit_sigma_a'})


PAPER = 'qam'
PRESETS = {'qam': paper_preset}
