"""QAM-EDIT (QAM Eq. (30)): QAM plus a tanh-Gaussian edit policy that refines the QAM flow action within an L_inf ball
of radius sigma_a, with SAC entropy tuning. Everything but the config and the preset lives in agents/qam.py."""

from agents.qam import get_config as _get_config
from agents.qam import loss, networks, sample_actions, target_networks, validate  # noqa: F401
from configs.presets import qam_rho, qam_table4, with_discount


def get_config():
    return _get_config('edit')


def paper_preset(env_name):
    """QAM Table 4 (tau, sigma_a) of the domain; sigma_a = 0 is plain QAM (Table 5)."""
    values = qam_table4(env_name, {'inv_temp': 'qam_edit_tau', 'sigma_a': 'qam_edit_sigma_a'})
    return with_discount(env_name, {**values, 'rho': qam_rho(env_name)})
