"""Routing by customer value: who is calling decides the queue priority, an account manager
rung first, or the senior agents (see ``domain``)."""
