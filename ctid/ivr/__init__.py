"""The IVR: declarative flows (conf/ivr) run over FastAGI, with the core bank behind them.

:mod:`.loader` reads and :mod:`.validate` checks the flow files (node
fields in :mod:`.schema`); :mod:`.engine` runs a flow per call, node by node
(:mod:`.nodes`), calling the bank through :mod:`.operations`; :mod:`.say`
and :mod:`.prompts` turn amounts and dates into prompt files.  See docs/ivr.md.
"""
