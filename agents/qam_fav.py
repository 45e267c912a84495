"""QAM as reproduced in the FAV paper (Sec. 5.1 / Appendix): the QAM code base with a 2-head critic and no action
chunking, inverse temperature per task from FAV Table 6 (column qam_tau). Everything else is agents/qam.py."""

from agents.qam import get_config as _get_config
from agents.qam import loss, networks, sample_actions, target_networks, validate  # noqa: F401
from configs.presets import fav_table6, qam_rho, with_discount


def get_config():
    return _get_config('fav')


def paper_preset(env_name):
    """FAV Table 6 tau; the paper discount; QAM's critic pessimism (0 for humanoidmaze), which FAV leaves unchanged."""
    return with_discount(env_name, {**fav_table6(env_name, {'inv_temp': 'qam_tau'}), 'rho': qam_rho(env_name)})
