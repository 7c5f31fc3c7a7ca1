"""Call controls on the agent's live card, and the dial pad.

``domain`` decides which control is allowed in which state of the call and which transfer
targets are valid; ``service`` finds the call's two channels from Asterisk's own events (never
from the browser), keeps each call's state (on hold, transferring) and sends the AMI actions of
:mod:`telephony.call_controls`; ``routes`` is its web surface under ``/me`` (the agent page's
``web/static/agent.js``), with every control in the audit log.
"""
