"""The dialplan contexts ctid sends callers to (conf/asterisk/extensions_ctid.conf), and its own variables.

``HIDDEN_VARIABLES`` are the ``CTID_*`` channel variables ctid sets for the
dialplan's sake; they are not call data and never reach a screen pop.
"""

DELIVER_CONTEXT = "ctid-deliver"
OUT_CONTEXT = "ctid-out"
WAIT_CONTEXT = "ctid-wait"
ANNOUNCE_CONTEXT = "ctid-announce"
IVR_CONTEXT = "ctid-ivr"
VOICEMAIL_CONTEXT = "ctid-voicemail"
HIDDEN_VARIABLES = frozenset({"CTID_PARKED", "CTID_TARGET", "CTID_RING", "CTID_FLOW", "CTID_MAILBOX",
                              "CTID_CALLBACK", "CTID_SURVEY"})
