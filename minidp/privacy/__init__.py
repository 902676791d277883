"""Privacy machinery: sampling, the Gaussian mechanism, and the RDP accountant."""
from minidp.privacy.accountant import (  # noqa: F401
    DEFAULT_ORDERS,
    OrderAtGridEdgeWarning,
    RDPAccountant,
    compute_rdp,
    epsilon_from_rdp,
    get_noise_multiplier,
)
