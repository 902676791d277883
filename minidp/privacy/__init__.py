"""Privacy machinery: sampling, the Gaussian mechanism, and the accountants (RDP and PLD)."""
from minidp.privacy.accountant import (  # noqa: F401
    ACCOUNTANTS,
    DEFAULT_ORDERS,
    OrderAtGridEdgeWarning,
    RDPAccountant,
    compute_rdp,
    epsilon_from_rdp,
    get_noise_multiplier,
    make_accountant,
)
from minidp.privacy.pld import PLDAccountant  # noqa: F401
