"""A simulated Asterisk speaking real AMI and FastAGI over TCP.

Public API: :func:`makeSimulatorService` (the service tree) and
:class:`SimulatorSettings`; see docs/pbxsim.md.
"""

from .service import makeSimulatorService
from .settings import SimulatorSettings

__all__ = ["SimulatorSettings", "makeSimulatorService"]
