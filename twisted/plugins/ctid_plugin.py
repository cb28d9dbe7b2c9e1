"""twistd plugins: ``twistd ctid`` (the daemon) and ``twistd ctid-pbxsim`` (the simulated switch)."""

from twisted.application.service import ServiceMaker

ctid = ServiceMaker("ctid", "ctid.tap", "CTI middleware for bank call centers", "ctid")
ctid_pbxsim = ServiceMaker(
    "ctid-pbxsim", "ctid.adapters.pbxsim.tap", "Simulated Asterisk (AMI + FastAGI) for ctid", "ctid-pbxsim"
)
