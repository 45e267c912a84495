"""QAM as the FAV paper reran it (FAV Appendix A.2): "the QAM codebase" with "a 2-head Q-function without Q-chunking,
keeping the same policy and critic architectures" as FAV / FQL (4 x 512 GELU MLPs, LayerNorm in the critic only),
tau grid-searched per task (FAV Table 6, column qam_tau). The FAV repository holds no QAM code, so everything else is
the released QAM code's defaults as agents/qam.py reproduces them: sde_scheme='released', residual=False, global-norm
gradient clipping at 1, the pessimistic target mean - rho * std over the two heads (rho = 0.5; 0 on humanoidmaze, as
QAM's reproduce.py runs it), Polyak-target f_beta and target-critic action gradient."""

from agents.qam import get_config as _get_config
from agents.qam import loss, networks, sample_actions, target_networks, validate  # noqa: F401
from configs.presets import fav_table6, qam_rho, with_discount


def get_config():
    return _get_config('fav')


def paper_preset(env_name):
    """FAV Table 6 tau; the FAV paper's discount (0.995 on antmaze-giant, humanoidmaze, antsoccer); QAM's critic
    pessimism (0 for humanoidmaze), which FAV leaves unchanged."""
    return with_discount(env_name, {**fav_table6(env_name, {'inv_temp': 'qam_tau'}), 'rho': qam_rho(env_name)})


PAPER = 'fav'
PRESETS = {'fav': paper_preset}
