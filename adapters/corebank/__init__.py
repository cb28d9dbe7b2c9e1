"""The core-banking gateway (GW-1): the sandbox bank, the ISO 8583 host client and simulator, and the guard.

See docs/corebank.md.  Everything here implements or wraps
:class:`ctid.banking.ICoreBanking`; :func:`ctid.adapters.corebank.factory.make_corebank`
builds the configured one.
"""
