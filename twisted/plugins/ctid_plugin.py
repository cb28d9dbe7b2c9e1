"""twistd plugins: ``twistd ctid`` (the daemon), ``ctid-pbxsim`` (simulated switch), ``ctid-hostsim`` (bank host)."""

from twisted.application.service import ServiceMaker

ctid = ServiceMaker("ctid", "ctid.tap", "CTI middleware for bank call centers", "ctid")
ctid_pbxsim = ServiceMaker(
    "ctid-pbxsim", "ctid.adapters.pbxsim.tap", "Simulated Asterisk (AMI + FastAGI) for ctid", "ctid-pbxsim"
)
ctid_hostsim = ServiceMaker(
    "ctid-hostsim", "ctid.adapters.corebank.hostsim_tap", "Simulated ISO 8583 core-banking host for ctid",
    "ctid-hostsim"
)
